// Alerts for the outside (issue 18, ADR 037): every alert kind as an OpenTelemetry gauge, so a team with Prometheus,
// Grafana or Alertmanager can alert there instead of (or beside) the desk's rules. Two families:
//   per kind, whatever rules exist:  the measure each kind compares, read at collection from the same index probes
//                                    the evaluation uses (Measures), e.g. meterdesk_reporting_oldest_pending_age_seconds;
//   per rule (rule, kind labels):    meterdesk_alert_firing (1 or 0) and meterdesk_alert_value (the rule's number),
//                                    from the last evaluation pass stored on the rule, whichever process ran it.
// docs/monitoring/ holds Prometheus alert rules and a Grafana dashboard over these names (test/alerts-monitoring.test.ts
// scrapes a real /metrics and checks that every series they name is exported).
import { metrics, type ObservableGauge } from '@opentelemetry/api';
import type { Queryable } from '../db';
import { Measures } from './evaluate';
import type { RuleKind } from './kinds';

/** The number a rule's gauge carries, from its stored values: what the rule compares with its limit. */
export const RULE_VALUE: Record<RuleKind, { key: string; unit: string }> = {
  reporting_lag: { key: 'ageMinutes', unit: 'minutes the oldest pending Stripe event has waited' },
  windows_unpaid: { key: 'unpaidWindows', unit: 'windows unpaid past the limit' },
  failure_rate: { key: 'failed', unit: 'failures in the span' },
  silence: { key: 'quietMinutes', unit: 'minutes since the last usage event of the scope' },
  usage_anomaly: { key: 'customersAbove', unit: 'customers above the factor' },
  budget: { key: 'reachedPercent', unit: 'percent of the budget reached' },
  ops_event: { key: 'opsEvents', unit: 'ops events in the span' },
};

/** Series names as Prometheus shows them (the OpenTelemetry names with dots as underscores). */
export const ALERT_GAUGES = {
  firing: 'meterdesk_alert_firing',
  value: 'meterdesk_alert_value',
  oldestPendingAge: 'meterdesk_reporting_oldest_pending_age_seconds',
  lastEventAge: 'meterdesk_usage_last_event_age_seconds',
  windowsUnpaid: 'meterdesk_windows_unpaid_after_period_end',
  oldestUnpaidAge: 'meterdesk_windows_oldest_unpaid_period_end_age_seconds',
} as const;

const otelName = (prometheusName: string) => prometheusName.replaceAll('_', '.');

/**
 * Registers the gauges on the global meter provider (call after startTelemetry); they are read from `db` at each
 * collection (a scrape of /metrics). Returns a function that unregisters them.
 */
export function registerAlertGauges(db: Queryable): () => void {
  const meter = metrics.getMeter('meterdesk.alerts');
  const gauge = (name: string, description: string): ObservableGauge => meter.createObservableGauge(otelName(name), { description });
  const firing = gauge(ALERT_GAUGES.firing, 'Whether the alert rule held at its last evaluation (1) or not (0); enabled rules only');
  const value = gauge(ALERT_GAUGES.value, 'The number the alert rule compares with its limit, at its last evaluation (RULE_VALUE in app/billing/alerts/gauges.ts)');
  const oldestPending = gauge(ALERT_GAUGES.oldestPendingAge, 'Seconds since the oldest Stripe event still pending was received (0 when none)');
  const lastEvent = gauge(ALERT_GAUGES.lastEventAge, 'Seconds since the newest usage event was received (absent when there is none)');
  const unpaid = gauge(ALERT_GAUGES.windowsUnpaid, 'Braintree windows neither paid nor written off whose period has ended');
  const oldestUnpaid = gauge(ALERT_GAUGES.oldestUnpaidAge, 'Seconds since the period of the oldest unpaid window ended (0 when none)');
  const observables = [firing, value, oldestPending, lastEvent, unpaid, oldestUnpaid];

  const callback = async (observer: Parameters<Parameters<typeof meter.addBatchObservableCallback>[0]>[0]) => {
    const now = new Date();
    const m = new Measures(db, now);
    const [pending, newest, windows, rules] = await Promise.all([
      m.oldestPending(),
      m.newestReceipt(),
      m.unpaidWindows(0),
      db.query<{ name: string; kind: RuleKind; last_firing: boolean | null; last_values: Record<string, unknown> | null }>(
        `SELECT name, kind, last_firing, last_values FROM alert_rules WHERE enabled AND last_evaluated_at IS NOT NULL`,
      ),
    ]);
    observer.observe(oldestPending, pending ? (now.getTime() - pending.receivedAt.getTime()) / 1000 : 0);
    if (newest) observer.observe(lastEvent, (now.getTime() - newest.getTime()) / 1000);
    observer.observe(unpaid, windows.count);
    observer.observe(oldestUnpaid, windows.oldestPeriodEnd ? (now.getTime() - windows.oldestPeriodEnd.getTime()) / 1000 : 0);
    for (const r of rules.rows) {
      if (!(r.kind in RULE_VALUE)) continue;
      const attributes = { rule: r.name, kind: r.kind };
      observer.observe(firing, r.last_firing ? 1 : 0, attributes);
      const v = r.last_values?.[RULE_VALUE[r.kind].key];
      if (typeof v === 'number' && Number.isFinite(v)) observer.observe(value, v, attributes);
    }
  };
  meter.addBatchObservableCallback(callback, observables);
  return () => meter.removeBatchObservableCallback(callback, observables);
}
