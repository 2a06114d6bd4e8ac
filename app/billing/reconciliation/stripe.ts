// Stripe: the ledger's `reported` events per customer × event name × UTC day, aggregated with the meter's formula,
// against Stripe's meter event summaries for those days; a bucket with reports in flight is skipped.
import type { MeterAggregation, MeterEventSource, MeterTotalsResult } from '../processors/types';
import { DAY_MS, stripeDriftKey, utcDay, type Compared, type CustomerInfo, type DriftKind, type LedgerBucket, type OpenDrift, type RunContext } from './model';
import { bucketKey, decimalText, equalValues, ledgerValue, subtract } from './values';

export async function compareStripe(ctx: RunContext, source: MeterEventSource, open: OpenDrift[]): Promise<Compared> {
  const out: Compared = { checked: 0, skipped: 0, errors: 0, findings: [], comparedKeys: new Set(), firstError: null };
  const ledger = await ledgerBuckets(ctx);
  // Per (customer, event name): the days to compare. Open drift in this run's days is compared again even when the
  // ledger no longer has events there, so that it can be resolved.
  const pairs = new Map<string, { customerId: string; eventName: string; days: Set<number>; ledgerBuckets: number }>();
  const pairOf = (customerId: string, eventName: string) => {
    const key = `${customerId}\u0000${eventName}`;
    let pair = pairs.get(key);
    if (!pair) pairs.set(key, (pair = { customerId, eventName, days: new Set(), ledgerBuckets: 0 }));
    return pair;
  };
  for (const b of ledger.values()) {
    const pair = pairOf(b.customerId, b.eventName);
    pair.days.add(b.day.getTime());
    pair.ledgerBuckets += 1;
  }
  for (const o of open) {
    if (o.customerId && o.eventName && o.periodStart && o.periodStart >= ctx.from && o.periodStart < ctx.to) {
      pairOf(o.customerId, o.eventName).days.add(utcDay(o.periodStart).getTime());
    }
  }
  if (pairs.size === 0) return out;
  const customers = await customerInfo(ctx, [...new Set([...pairs.values()].map((p) => p.customerId))]);

  const answers = await Promise.all(
    [...pairs.values()].map((pair) =>
      ctx.gate.run(async (): Promise<{ pair: typeof pair; result: MeterTotalsResult }> => {
        const customer = customers.get(pair.customerId);
        if (!customer) return { pair, result: { outcome: 'error', code: 'unknown_customer', message: `customer ${pair.customerId} is not in the ledger` } };
        return { pair, result: await source.dailyTotals({ processorCustomerId: customer.processorCustomerId, eventName: pair.eventName, from: ctx.from, to: ctx.to }) };
      }),
    ),
  );

  interface Candidate {
    customerId: string;
    eventName: string;
    day: Date;
    aggregation: MeterAggregation | null;
    meterId: string | null;
    processorValue: number;
  }
  const candidates: Candidate[] = [];
  for (const { pair, result } of answers) {
    if (result.outcome === 'error') {
      out.errors += Math.max(1, pair.ledgerBuckets);
      out.firstError ??= `Stripe ${result.code}: ${result.message}`;
      continue;
    }
    const counted = new Map<number, number>();
    for (const d of result.days) {
      const day = utcDay(d.periodStart).getTime();
      counted.set(day, (counted.get(day) ?? 0) + d.value);
    }
    for (const day of new Set([...pair.days, ...counted.keys()])) {
      if (day < ctx.from.getTime() || day >= ctx.to.getTime()) continue;
      candidates.push({
        customerId: pair.customerId,
        eventName: pair.eventName,
        day: new Date(day),
        aggregation: result.aggregation,
        meterId: result.meterId,
        processorValue: counted.get(day) ?? 0,
      });
    }
  }

  // First pass on the ledger as read before Stripe; a difference is confirmed against the ledger read after
  // Stripe answered (a report that landed in between shows up there as in flight, not as drift).
  const differing: Candidate[] = [];
  for (const cand of candidates) {
    const b = ledger.get(bucketKey(cand.customerId, cand.eventName, cand.day));
    if (b && b.inFlight > 0) continue;
    if (!equalValues(ledgerValue(b, cand.aggregation), cand.processorValue)) differing.push(cand);
  }
  const confirmed = differing.length ? await ledgerBuckets(ctx, differing) : new Map<string, LedgerBucket>();
  const differs = new Set(differing.map((d) => bucketKey(d.customerId, d.eventName, d.day)));

  for (const cand of candidates) {
    const key = bucketKey(cand.customerId, cand.eventName, cand.day);
    const b = differs.has(key) ? confirmed.get(key) : ledger.get(key);
    if (b && b.inFlight > 0) {
      out.skipped += 1;
      continue;
    }
    out.checked += 1;
    const dedupeKey = stripeDriftKey(cand.customerId, cand.eventName, cand.day);
    out.comparedKeys.add(dedupeKey);
    const ledgerText = ledgerValue(b, cand.aggregation);
    if (equalValues(ledgerText, cand.processorValue)) continue;
    const processorText = decimalText(cand.processorValue);
    const difference = subtract(processorText, ledgerText);
    const kind: DriftKind =
      cand.meterId === null ? 'no_processor_meter' : cand.aggregation === 'last' ? 'value_mismatch' : difference.startsWith('-') ? 'missing_at_processor' : 'extra_at_processor';
    out.findings.push({
      processor: 'stripe',
      kind,
      customerId: cand.customerId,
      customerLabel: customers.get(cand.customerId)?.label ?? cand.customerId,
      eventName: cand.eventName,
      windowId: null,
      periodStart: cand.day,
      periodEnd: new Date(cand.day.getTime() + DAY_MS),
      ledger: { value: ledgerText, count: b?.reportedCount ?? 0 },
      processorSide: { value: processorText, count: cand.aggregation === 'count' ? Math.round(cand.processorValue) : null },
      difference,
      currency: null,
      detail: {
        meter_id: cand.meterId,
        aggregation: cand.aggregation,
        processor_customer_id: customers.get(cand.customerId)?.processorCustomerId ?? null,
        ledger_pending: b?.pending ?? 0,
        ledger_failed: b?.failed ?? 0,
      },
      dedupeKey,
    });
  }
  return out;
}

/** The ledger's Stripe events in this run's days, per customer, event name and UTC day (only `only`'s buckets when given). */
export async function ledgerBuckets(ctx: RunContext, only?: ReadonlyArray<{ customerId: string; eventName: string; day: Date }>): Promise<Map<string, LedgerBucket>> {
  const params: unknown[] = [ctx.from, ctx.to, ctx.graceSince];
  let filter = '';
  if (only) {
    params.push(only.map((o) => o.customerId), only.map((o) => o.eventName), only.map((o) => o.day));
    filter = `AND (e.customer_id, e.event_name, date_trunc('day', e.occurred_at, 'UTC')) IN (SELECT * FROM unnest($4::uuid[], $5::text[], $6::timestamptz[]))`;
  }
  // In flight: claimed for a report that has not settled, or reported / first sent within the grace period.
  const { rows } = await ctx.client.query<{
    customer_id: string;
    event_name: string;
    day: Date;
    reported_count: number;
    reported_sum: string;
    reported_last: string | null;
    pending: number;
    failed: number;
    in_flight: number;
  }>(
    `SELECT e.customer_id, e.event_name, date_trunc('day', e.occurred_at, 'UTC') AS day,
            count(*) FILTER (WHERE e.status = 'reported')::int AS reported_count,
            COALESCE(sum(e.value) FILTER (WHERE e.status = 'reported'), 0)::text AS reported_sum,
            (array_agg(e.value::text ORDER BY e.occurred_at DESC, e.id DESC) FILTER (WHERE e.status = 'reported'))[1] AS reported_last,
            count(*) FILTER (WHERE e.status = 'pending')::int AS pending,
            count(*) FILTER (WHERE e.status = 'failed')::int AS failed,
            count(*) FILTER (WHERE (e.status = 'pending' AND e.first_attempt_at IS NOT NULL)
                                OR COALESCE(e.reported_at, e.first_attempt_at) >= $3)::int AS in_flight
       FROM meter_events e
      WHERE e.processor = 'stripe' AND e.occurred_at >= $1 AND e.occurred_at < $2 ${filter}
      GROUP BY 1, 2, 3`,
    params,
  );
  const map = new Map<string, LedgerBucket>();
  for (const r of rows) {
    map.set(bucketKey(r.customer_id, r.event_name, r.day), {
      customerId: r.customer_id,
      eventName: r.event_name,
      day: r.day,
      reportedCount: r.reported_count,
      reportedSum: r.reported_sum,
      reportedLast: r.reported_last,
      pending: r.pending,
      failed: r.failed,
      inFlight: r.in_flight,
    });
  }
  return map;
}

export async function customerInfo(ctx: RunContext, ids: string[]): Promise<Map<string, CustomerInfo>> {
  const { rows } = await ctx.client.query<{ id: string; processor_customer_id: string; label: string }>(
    `SELECT id, processor_customer_id, COALESCE(name, external_id) AS label FROM customers WHERE id = ANY($1::uuid[])`,
    [ids],
  );
  return new Map(rows.map((r) => [r.id, { processorCustomerId: r.processor_customer_id, label: r.label }]));
}
