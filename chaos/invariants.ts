// The invariants of PRODUCT.md, checked after a chaos scenario against the ledger and the simulators' own records:
// the Stripe simulator's meter events, and the Braintree simulator's sales (its inspection endpoint, by order id).
// Each check returns readable violations (empty when it holds); test/chaos.test.ts plants a violation of each kind
// and shows that the checker reports it.
import type pg from 'pg';
import { jobsByPayloadField, type JobState } from '../app/db/graphile-jobs';
import { APPROVED_SALE_STATUSES } from '../app/billing/processors/braintree/processor';
import { identifiersSent } from '../app/billing/ledger/sent-identifier';
import { formatMinor } from '../app/billing/windows/invoice-math';
import { amountForUnits, canonicalUnitAmount } from '../app/billing/windows/unit-price';

/** What the API answered 2xx for: the event the host app believes Meterdesk has. */
export interface Accepted {
  identifier: string;
  value: number;
  customer: string;
}

export interface SimulatorRecords {
  /** Accepted meter events per identifier, as Stripe counted them. */
  counts: Record<string, number>;
  data: Array<{ identifier: string; value: number; status: string }>;
}

/** Every transaction the Braintree simulator recorded (`GET /__simulator/sales`), whatever its outcome. */
export interface BraintreeRecords {
  sales: Array<{ id: string; orderId: string | null; amount: string; currencyIsoCode: string; status: string; createdAt?: number; fault?: string | null }>;
}

export interface CheckOptions {
  /**
   * A `recorded` Braintree event stored this long before a window of its subscription was closed, and due in that
   * window, should have been billed by it. The margin covers the gap between the API's insert time and its commit,
   * which the author cannot see earlier. Default 5 s.
   */
  authoringMarginMs?: number;
}

const MAX_LISTED = 10;

function report(name: string, offenders: string[]): string[] {
  if (offenders.length === 0) return [];
  return [`${name}: ${offenders.length} — ${offenders.slice(0, MAX_LISTED).join('; ')}${offenders.length > MAX_LISTED ? '; …' : ''}`];
}

interface LedgerRow {
  id: string;
  identifier: string;
  /** The identifier Stripe knows the event by when a retry gave it a new one (ADR 033). */
  sent_identifier: string | null;
  processor: string;
  value: string;
  status: string;
  last_error_code: string | null;
  attention_reason: string | null;
  window_id: string | null;
  invoice_line_id: string | null;
  n: number;
}

export async function checkInvariants(pool: pg.Pool, accepted: Map<string, Accepted>, sim: SimulatorRecords, braintree?: BraintreeRecords, options: CheckOptions = {}): Promise<string[]> {
  const { rows } = await pool.query<LedgerRow>(
    `SELECT id, identifier, sent_identifier, processor::text AS processor, value::text, status::text, last_error_code, attention_reason, window_id, invoice_line_id,
            count(*) OVER (PARTITION BY identifier)::int AS n
     FROM meter_events`,
  );
  const ledger = new Map(rows.map((r) => [r.identifier, r]));
  const violations: string[] = [];

  // 1. An accepted event is never lost, is stored once with the value accepted, and nothing refused was stored.
  violations.push(...report('accepted but not in the ledger', [...accepted.keys()].filter((id) => !ledger.has(id))));
  violations.push(...report('stored more than once', rows.filter((r) => r.n > 1).map((r) => r.identifier)));
  violations.push(
    ...report(
      'stored with another value than accepted',
      [...accepted.values()].filter((a) => ledger.has(a.identifier) && Number(ledger.get(a.identifier)!.value) !== a.value).map((a) => `${a.identifier} ${a.value}≠${ledger.get(a.identifier)!.value}`),
    ),
  );
  violations.push(...report('in the ledger but never accepted (a refused event was written)', rows.filter((r) => !accepted.has(r.identifier)).map((r) => r.identifier)));

  violations.push(...(await checkStripe(pool, accepted, rows.filter((r) => r.processor === 'stripe'), sim)));
  violations.push(...(await checkBraintreeEvents(pool, rows.filter((r) => r.processor === 'braintree'), options)));
  violations.push(...(await checkInvoices(pool)));
  if (braintree) violations.push(...(await checkCharges(pool, braintree)));
  return violations;
}

/** Stripe events end reported or failed with a reason (pending only when flagged), and Stripe agrees. */
async function checkStripe(pool: pg.Pool, accepted: Map<string, Accepted>, rows: LedgerRow[], sim: SimulatorRecords): Promise<string[]> {
  const violations: string[] = [];
  violations.push(
    ...report(
      'not in a terminal or actionable state',
      rows
        .filter((r) => !(r.status === 'reported' || (r.status === 'failed' && r.last_error_code) || (r.status === 'pending' && r.attention_reason)))
        .map((r) => `${r.identifier} ${r.status}`),
    ),
  );

  // 2. Stripe counts each event's value at most once, and every reported event exactly once with its value, under the
  // identifier it was sent as: its own, or the one a retry after an asynchronous rejection derived from it. Counts
  // under every identifier an event was ever sent as add up (a derived identifier counted beside the original is a
  // double count).
  const owner = new Map<string, LedgerRow>();
  for (const r of rows) for (const id of identifiersSent(r.identifier, r.sent_identifier)) owner.set(id, r);
  const counted = (r: LedgerRow) => identifiersSent(r.identifier, r.sent_identifier).reduce((n, id) => n + (sim.counts[id] ?? 0), 0);
  violations.push(
    ...report(
      'counted more than once by Stripe',
      [
        ...Object.entries(sim.counts).filter(([id, n]) => n > 1 && !owner.has(id)).map(([id, n]) => `${id}×${n}`),
        ...rows.filter((r) => counted(r) > 1).map((r) => `${r.identifier}×${counted(r)}${r.sent_identifier ? ` (as ${identifiersSent(r.identifier, r.sent_identifier).filter((id) => sim.counts[id]).join(', ')})` : ''}`),
      ],
    ),
  );
  const ledgerByIdentifier = new Map(rows.map((r) => [r.identifier, r]));
  const uncounted = rows.filter((r) => r.status === 'reported' && !sim.counts[r.sent_identifier ?? r.identifier]).map((r) => r.identifier);
  const history = new Map<string, string>();
  if (uncounted.length > 0) {
    // The attempt timeline of each offender, so the line says what happened, not only that it did.
    const { rows: attempts } = await pool.query<{ identifier: string; steps: string }>(
      `SELECT m.identifier, string_agg(a.source || ':' || a.outcome || coalesce('(' || a.error_code || ')', ''), ' > ' ORDER BY a.started_at) AS steps
         FROM meter_events m JOIN event_attempts a ON a.meter_event_id = m.id WHERE m.identifier = ANY($1::text[]) GROUP BY m.identifier`,
      [uncounted],
    );
    for (const a of attempts) history.set(a.identifier, a.steps);
  }
  violations.push(
    ...report(
      'reported but not counted by Stripe',
      uncounted.map((id) => {
        const sent = identifiersSent(id, ledgerByIdentifier.get(id)?.sent_identifier ?? null);
        const stripe = sim.data.filter((e) => sent.includes(e.identifier)).map((e) => (e.identifier === id ? e.status : `${e.identifier}:${e.status}`)).join('+');
        return `${id} (${accepted.get(id)?.customer ?? '?'}; Stripe: ${stripe || 'never received'}; ledger: ${history.get(id) ?? 'no attempts'})`;
      }),
    ),
  );
  violations.push(...report('counted by Stripe but unknown to the ledger', Object.keys(sim.counts).filter((id) => !owner.has(id))));
  violations.push(
    ...report(
      'Stripe counted another value than the ledger holds',
      sim.data.filter((e) => e.status === 'accepted' && owner.has(e.identifier) && Number(owner.get(e.identifier)!.value) !== e.value).map((e) => `${e.identifier} ${owner.get(e.identifier)!.value}≠${e.value}`),
    ),
  );
  return violations;
}

/**
 * Braintree events end actionable or terminal: billed on a line (matched), flagged in a window (unmatched: no
 * definition; unusable: a value it cannot bill), or still `recorded` because no window has authored them yet — inside
 * a still-open window, or waiting for the next window (late usage, or usage after the last window). A `recorded`
 * event that a window closed since its arrival should have billed was skipped.
 */
async function checkBraintreeEvents(pool: pg.Pool, rows: LedgerRow[], options: CheckOptions): Promise<string[]> {
  const violations: string[] = [];
  violations.push(
    ...report(
      'Braintree event in no Braintree state, or in one without its reference',
      rows
        .filter(
          (r) =>
            !(
              (r.status === 'recorded' && r.window_id === null && r.invoice_line_id === null) ||
              (r.status === 'matched' && r.window_id !== null && r.invoice_line_id !== null) ||
              (r.status === 'unmatched' && r.window_id !== null && r.invoice_line_id === null && r.last_error_code === 'missing_definition') ||
              (r.status === 'unusable' && r.window_id !== null && r.invoice_line_id === null && r.last_error_code !== null)
            ),
        )
        .map((r) => `${r.identifier} ${r.status} window=${r.window_id ?? '-'} line=${r.invoice_line_id ?? '-'} code=${r.last_error_code ?? '-'}`),
    ),
  );
  const { rows: skipped } = await pool.query<{ identifier: string; window_id: string; state: string }>(
    `SELECT e.identifier, w.id AS window_id, w.state::text AS state
     FROM meter_events e
     JOIN LATERAL (
       SELECT w.id, w.state FROM windows w
       WHERE w.subscription_id = e.subscription_id AND w.closed_at IS NOT NULL
         AND w.closed_at > e.received_at + $1 * interval '1 millisecond' AND e.occurred_at < w.period_end
       ORDER BY w.closed_at LIMIT 1
     ) w ON true
     WHERE e.processor = 'braintree' AND e.status = 'recorded'
       AND NOT EXISTS (SELECT 1 FROM windows o WHERE o.subscription_id = e.subscription_id AND o.state = 'open'
                         AND o.period_start <= e.occurred_at AND e.occurred_at < o.period_end)`,
    [options.authoringMarginMs ?? 5000],
  );
  violations.push(...report('Braintree event left recorded by a window that should have billed it', skipped.map((s) => `${s.identifier} (window ${s.window_id}, ${s.state})`)));
  return violations;
}

/**
 * Invoices: the total is the sum of the lines, and each line is the aggregation of exactly the events that name it
 * (meter_events.invoice_line_id) — its count, quantity, billed units and amount — all of them its window's
 * subscription's matched events, in its window's period for a usage line and before it for a late-usage line. With one
 * line reference per event and every line's count equal to the events naming it, no event is billed twice.
 */
async function checkInvoices(pool: pg.Pool): Promise<string[]> {
  const violations: string[] = [];
  const { rows: totals } = await pool.query<{ window_id: string; total: string; lines: string }>(
    `SELECT i.window_id, i.total_minor::text AS total, coalesce(sum(l.amount_minor), 0)::text AS lines
     FROM invoices i LEFT JOIN invoice_lines l ON l.invoice_id = i.id GROUP BY i.id`,
  );
  violations.push(...report('invoice total is not the sum of its lines', totals.filter((t) => t.total !== t.lines).map((t) => `window ${t.window_id}: ${t.total}≠${t.lines}`)));

  const { rows: lines } = await pool.query<{
    id: string;
    window_id: string;
    kind: string;
    aggregation: string;
    event_count: number;
    quantity: string;
    billed_units: string;
    per_units: string;
    rounding: string;
    unit_amount_decimal: string;
    amount_minor: string;
    n: number;
    sum: string;
    max: string | null;
    last: string | null;
    strays: number;
  }>(
    `SELECT l.id, i.window_id, l.kind::text AS kind, m.aggregation::text AS aggregation, l.event_count, l.quantity::text, l.billed_units::text,
            l.per_units::text, l.rounding::text AS rounding, l.unit_amount_decimal::text, l.amount_minor::text,
            count(e.id)::int AS n, coalesce(sum(e.value), 0)::text AS sum, max(e.value)::text AS max,
            ((array_agg(e.value ORDER BY e.occurred_at DESC, e.id DESC))[1])::text AS last,
            count(e.id) FILTER (WHERE e.status <> 'matched' OR e.window_id IS DISTINCT FROM i.window_id OR e.subscription_id <> w.subscription_id
                                   OR e.event_name <> l.event_name OR e.late <> (l.kind = 'late_usage')
                                   OR (l.kind = 'usage' AND (e.occurred_at < w.period_start OR e.occurred_at >= w.period_end))
                                   OR (l.kind = 'late_usage' AND e.occurred_at >= w.period_start))::int AS strays
     FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id JOIN windows w ON w.id = i.window_id JOIN meters m ON m.id = l.meter_id
     LEFT JOIN meter_events e ON e.invoice_line_id = l.id
     GROUP BY l.id, i.window_id, m.aggregation, w.subscription_id, w.period_start, w.period_end`,
  );
  const wrong: string[] = [];
  for (const l of lines) {
    const quantity = l.n === 0 ? 0n : BigInt(l.aggregation === 'count' ? String(l.n) : l.aggregation === 'max' ? l.max! : l.aggregation === 'last' ? l.last! : l.sum);
    const per = BigInt(l.per_units);
    const units = quantity / per + (l.rounding === 'up' && quantity % per !== 0n ? 1n : 0n);
    const problems: string[] = [];
    if (l.event_count !== l.n) problems.push(`says ${l.event_count} events, ${l.n} name it`);
    if (BigInt(l.quantity) !== quantity) problems.push(`quantity ${l.quantity}≠${quantity} (${l.aggregation} of its events)`);
    if (BigInt(l.billed_units) !== units) problems.push(`billed units ${l.billed_units}≠${units}`);
    if (BigInt(l.amount_minor) !== amountForUnits(BigInt(l.billed_units), canonicalUnitAmount(l.unit_amount_decimal))) {
      problems.push(`amount ${l.amount_minor}≠round(${l.billed_units}×${l.unit_amount_decimal})`);
    }
    if (l.strays > 0) problems.push(`${l.strays} of its events are not its window's matched ${l.kind} events`);
    if (problems.length > 0) wrong.push(`line ${l.id} (window ${l.window_id}): ${problems.join(', ')}`);
  }
  violations.push(...report('invoice line is not the aggregation of exactly its events', wrong));
  return violations;
}

/**
 * Each window charged at most once: at most one approved sale per order id, never an approved sale for a window that
 * is not paid (or for no window at all), and a paid window charged its invoice total exactly (a zero total with no
 * sale); windows left between states are not settled.
 */
async function checkCharges(pool: pg.Pool, braintree: BraintreeRecords): Promise<string[]> {
  const violations: string[] = [];
  const { rows: windows } = await pool.query<{ id: string; state: string; order_id: string | null; total: string | null; currency: string; transaction_id: string | null; attempt_amount: string | null; attempt: string | null; tries: number | null }>(
    `SELECT w.id, w.state::text AS state, a.order_id, a.tries, i.total_minor::text AS total, w.currency, a.transaction_id, a.amount_minor::text AS attempt_amount,
            'tries ' || a.tries || ' ' || a.status || ' sent ' || coalesce(to_char(a.last_sent_at, 'HH24:MI:SS.MS'), '-') || ' failures ' ||
              coalesce(a.first_failure_code, '-') || '..' || coalesce(a.last_failure_code, '-') AS attempt
     FROM windows w LEFT JOIN invoices i ON i.window_id = w.id LEFT JOIN charge_attempts a ON a.window_id = w.id`,
  );
  const approved = new Map<string, BraintreeRecords['sales']>();
  for (const s of braintree.sales) {
    if (s.orderId === null || !APPROVED_SALE_STATUSES.has(s.status)) continue;
    approved.set(s.orderId, [...(approved.get(s.orderId) ?? []), s]);
  }
  const byOrder = new Map(windows.filter((w) => w.order_id).map((w) => [w.order_id!, w]));
  const time = (ms: number | undefined) => (ms === undefined ? '' : ` at ${new Date(ms).toISOString().slice(11, 23)}`);
  violations.push(
    ...report(
      'window charged more than once (approved sales per order id)',
      [...approved]
        .filter(([, s]) => s.length > 1)
        .map(([o, s]) => `${o}×${s.length} (${s.map((x) => `${x.id}${time(x.createdAt)}${x.fault ? ` answer lost: ${x.fault}` : ''}`).join(', ')}; attempt ${byOrder.get(o)?.attempt ?? '-'})`),
    ),
  );
  violations.push(
    ...report(
      'approved sale for a window that is not paid',
      [...approved].filter(([o]) => byOrder.get(o)?.state !== 'paid').map(([o, s]) => `${o} ${s[0]!.id} (window ${byOrder.get(o)?.state ?? 'unknown'})`),
    ),
  );
  // Every sale leaves a trace first (the attempt is marked sent, tries + 1), and a try sends at most one sale.
  const anyByOrder = new Map<string, number>();
  for (const s of braintree.sales) if (s.orderId !== null) anyByOrder.set(s.orderId, (anyByOrder.get(s.orderId) ?? 0) + 1);
  violations.push(
    ...report(
      'more sales for a window than its charge attempt sent',
      [...anyByOrder].filter(([o, n]) => n > (byOrder.get(o)?.tries ?? 0)).map(([o, n]) => `${o}: ${n} sale(s), ${byOrder.get(o)?.tries ?? 'no'} tries (window ${byOrder.get(o)?.state ?? 'unknown'})`),
    ),
  );
  const wrong: string[] = [];
  for (const w of windows.filter((x) => x.state === 'paid')) {
    const total = BigInt(w.total ?? '-1');
    const sales = w.order_id ? (approved.get(w.order_id) ?? []) : [];
    if (total === 0n) {
      if (w.order_id && braintree.sales.some((s) => s.orderId === w.order_id)) wrong.push(`window ${w.id}: zero total but a sale was sent`);
      continue;
    }
    const sale = sales[0];
    if (!sale) wrong.push(`window ${w.id}: paid with no approved sale (total ${w.total})`);
    else {
      if (sale.amount !== formatMinor(total, w.currency)) wrong.push(`window ${w.id}: sale ${sale.id} of ${sale.amount}, invoice total ${formatMinor(total, w.currency)}`);
      if (w.transaction_id !== sale.id) wrong.push(`window ${w.id}: charge attempt names ${w.transaction_id ?? 'no transaction'}, the sale is ${sale.id}`);
      if (w.attempt_amount !== w.total) wrong.push(`window ${w.id}: charge attempt of ${w.attempt_amount}, invoice total ${w.total}`);
    }
  }
  violations.push(...report('paid window not charged its invoice total', wrong));
  violations.push(...report('window not settled (closed, settling or retry_scheduled at the end)', windows.filter((w) => ['closed', 'settling', 'retry_scheduled'].includes(w.state)).map((w) => `${w.id} ${w.state}`)));
  return violations;
}

/** What the desk's operator actions were answered (chaos/desk.ts): the windows whose action answered its redirect. */
export interface OperatorRecord {
  writtenOff: string[];
  reauthored: string[];
}

/**
 * The desk's operator actions left what they said: every write-off answered with its redirect left its window written
 * off with exactly one `window.write_off` audit entry; no window was re-authored after a sale had been sent for it
 * (re-authoring is allowed only before any sale); and no retry of failed events moved an event whose last report
 * had been counted by Stripe, as the Stripe simulator's records tell (the event billed once: the Stripe invariants
 * above check the counts themselves).
 */
export async function checkOperatorActions(pool: pg.Pool, record: OperatorRecord, braintree: BraintreeRecords, stripe: SimulatorRecords): Promise<string[]> {
  const violations: string[] = [];
  const writtenOff = [...new Set(record.writtenOff)];
  const { rows: offs } = await pool.query<{ id: string; state: string | null; entries: number }>(
    `SELECT x.id, w.state::text AS state,
            (SELECT count(*)::int FROM audit_log a WHERE a.subject_type = 'window' AND a.subject_id = x.id AND a.action = 'window.write_off') AS entries
     FROM unnest($1::text[]) AS x(id) LEFT JOIN windows w ON w.id::text = x.id`,
    [writtenOff],
  );
  violations.push(
    ...report(
      'write-off answered but the window is not written off with one audit entry',
      offs.filter((o) => o.state !== 'written_off' || o.entries !== 1).map((o) => `${o.id} ${o.state ?? 'unknown'}, ${o.entries} window.write_off entries`),
    ),
  );

  const { rows: reauthors } = await pool.query<{ window_id: string; at: Date; order_id: string | null }>(
    `SELECT a.subject_id AS window_id, a.at, c.order_id FROM audit_log a LEFT JOIN charge_attempts c ON c.window_id::text = a.subject_id
     WHERE a.action = 'window.reauthor' AND a.subject_type = 'window'`,
  );
  const unrecorded = [...new Set(record.reauthored)].filter((id) => !reauthors.some((r) => r.window_id === id));
  violations.push(...report('re-author answered but no window.reauthor audit entry', unrecorded));
  const salesBefore: string[] = [];
  for (const r of reauthors) {
    const orderId = r.order_id ?? `mdw-${r.window_id}`;
    const earlier = braintree.sales.filter((s) => s.orderId === orderId && s.createdAt !== undefined && s.createdAt < r.at.getTime());
    if (earlier.length > 0) salesBefore.push(`${r.window_id} re-authored at ${r.at.toISOString().slice(11, 23)} after sale ${earlier[0]!.id} at ${new Date(earlier[0]!.createdAt!).toISOString().slice(11, 23)}`);
  }
  violations.push(...report('window re-authored after a sale was sent for it', salesBefore));

  // Each retry's moved events: the last attempt before the retry must not be one Stripe counted. A `reported` attempt
  // Stripe rejected afterwards (a v2 stream event's asynchronous validation, a `reject_after_accept` fault: the error
  // report then fails the event) was not counted, and its retry is sent under a new identifier (ADR 033). So each
  // retry that moved an event after a reported attempt must be matched by one identifier of that event the Stripe
  // simulator holds as rejected; a retry more is a re-send of something Stripe counted.
  const { rows: resent } = await pool.query<{ identifier: string; sent_identifier: string | null; outcome: string; at: Date }>(
    `SELECT m.identifier, m.sent_identifier, last.outcome::text AS outcome, r.at
     FROM audit_log r
     CROSS JOIN LATERAL jsonb_array_elements_text(coalesce(r.after->'ids', '[]'::jsonb)) AS moved(id)
     JOIN meter_events m ON m.id::text = moved.id
     JOIN LATERAL (SELECT e.outcome FROM event_attempts e WHERE e.meter_event_id = m.id AND e.started_at < r.at ORDER BY e.started_at DESC LIMIT 1) last ON true
     WHERE r.action = 'meter_event.retry' AND last.outcome IN ('reported', 'duplicate')
     ORDER BY m.identifier, r.at`,
  );
  const rejected = new Set(stripe.data.filter((d) => d.status === 'rejected').map((d) => d.identifier));
  const retriesOf = new Map<string, typeof resent>();
  for (const r of resent) retriesOf.set(r.identifier, [...(retriesOf.get(r.identifier) ?? []), r]);
  const recounted: string[] = [];
  for (const [identifier, retries] of retriesOf) {
    const rejections = identifiersSent(identifier, retries[0]!.sent_identifier).filter((id) => rejected.has(id)).length;
    for (const r of retries.slice(rejections)) {
      recounted.push(`${identifier} (last attempt ${r.outcome} before the retry at ${r.at.toISOString().slice(11, 23)}; Stripe rejected ${rejections} of its identifiers)`);
    }
  }
  violations.push(...report('retry re-sent an event Stripe had already counted', recounted));
  return violations;
}

/** One notification as a campaign receiver got it (chaos/alerts.ts), recorded before it was answered. */
export interface AlertReceipt {
  /** The `Meterdesk-Delivery` header. */
  deliveryId: string | null;
  /** accept | server_error | rate_limit | hang | close | bad_signature (a 401: the signature did not verify). */
  answer: string;
  /** The HTTP status answered; null for a hang or a closed socket (no answer). */
  status: number | null;
  signatureValid: boolean;
  /** The ids the JSON body carries. */
  body: { id: unknown; type: unknown; channelId: unknown; firingId: unknown } | null;
  at: number;
}

export interface AlertChannelRecords {
  id: string;
  name: string;
  /** The receiver answers every notification 2xx: each of its deliveries must end delivered. */
  alwaysAccepts: boolean;
  /** What the receiver got, read after the ledger (a delivery recorded delivered has its receipt by then). */
  received: () => AlertReceipt[];
}

export interface AlertRecords {
  channels: AlertChannelRecords[];
}

/** A delivery job locked this long is not running any more (its worker died; graphile-worker keeps it 4 hours). */
const STUCK_JOB_MS = 20_000;

/**
 * At most one open firing per rule (the partial unique index of ADR 036). Checked during the seed and at the end.
 * test/chaos.test.ts drops that index and plants a second open firing: this reports it.
 */
export async function checkOpenFirings(db: Pick<pg.Pool, 'query'>): Promise<string[]> {
  const { rows } = await db.query<{ rule: string; n: number }>(
    `SELECT r.name AS rule, count(*)::int AS n FROM alert_firings f JOIN alert_rules r ON r.id = f.rule_id
      WHERE f.resolved_at IS NULL GROUP BY r.name HAVING count(*) > 1`,
  );
  return report('rule with more than one open firing', rows.map((r) => `${r.rule}×${r.n}`));
}

/**
 * Alerts under the campaign's faults (chaos/alerts.ts), against the ledger's alert tables and what each channel's
 * receiver got. Every check below can fail: test/chaos.test.ts ("the invariant checker, alerts") plants each
 * violation in a real database and shows the line this reports, and passes the clean records first.
 * - Firings: at most one open per rule; none resolved before it fired; a rule's firings follow one another (each
 *   resolved before the next fired), since passes serialize.
 * - Deliveries: each opening and each resolution has exactly one delivery per channel enabled at the time, and no
 *   other; a test notification names no firing.
 * - Against each receiver: every notification received is a delivery of that channel the ledger holds, signed so that
 *   it verifies, with the ids and type of its row; a delivery recorded delivered was last answered 2xx by its channel
 *   with that status; a delivery the channel answered 2xx is delivered, unless an attempt's record was lost (fewer
 *   attempts recorded than received: a worker killed, or the database gone, between the answer and the record, or
 *   still in flight); no attempt is recorded that the channel did not receive; and when every attempt was recorded,
 *   the last status recorded is the last one answered.
 * - A pending delivery has a job that will still send it.
 * - The channel that always answers 2xx: every delivery delivered by the end (after the drain), the channel not failing.
 */
export async function checkAlerts(pool: pg.Pool, records: AlertRecords): Promise<string[]> {
  const violations: string[] = [...(await checkOpenFirings(pool))];

  const { rows: firings } = await pool.query<{ id: string; rule: string; fired_at: Date; resolved_at: Date | null; has_resolved_values: boolean }>(
    `SELECT f.id::text, r.name AS rule, f.fired_at, f.resolved_at, f.resolved_values IS NOT NULL AS has_resolved_values
       FROM alert_firings f JOIN alert_rules r ON r.id = f.rule_id ORDER BY r.name, f.fired_at, f.id`,
  );
  const iso = (d: Date | null) => d?.toISOString().slice(11, 23) ?? '-';
  violations.push(
    ...report(
      'firing resolved before it fired, or without the values of that moment',
      firings.filter((f) => f.resolved_at !== null && (f.resolved_at < f.fired_at || !f.has_resolved_values)).map((f) => `${f.rule}: fired ${iso(f.fired_at)}, resolved ${iso(f.resolved_at)}`),
    ),
  );
  const overlaps: string[] = [];
  for (let k = 1; k < firings.length; k++) {
    const [prev, next] = [firings[k - 1]!, firings[k]!];
    if (prev.rule === next.rule && (prev.resolved_at === null || prev.resolved_at > next.fired_at)) {
      overlaps.push(`${next.rule}: fired ${iso(next.fired_at)} while the one fired ${iso(prev.fired_at)} was open (resolved ${iso(prev.resolved_at)})`);
    }
  }
  violations.push(...report("a rule's firings overlap in time", overlaps));

  // One delivery per notice and channel enabled when the firing opened (resolved); nothing else.
  const { rows: notices } = await pool.query<{ rule: string; firing_id: string; event: string; channel: string; n: number; expected: boolean }>(
    `WITH notice AS (
       SELECT f.id, f.rule_id, 'firing' AS event, f.fired_at AS at FROM alert_firings f
       UNION ALL SELECT f.id, f.rule_id, 'resolved', f.resolved_at FROM alert_firings f WHERE f.resolved_at IS NOT NULL
     )
     SELECT r.name AS rule, n.id::text AS firing_id, n.event, c.name AS channel, count(d.id)::int AS n,
            (c.enabled AND c.created_at <= n.at) AS expected
       FROM notice n JOIN alert_rules r ON r.id = n.rule_id CROSS JOIN alert_channels c
       LEFT JOIN alert_deliveries d ON d.firing_id = n.id AND d.channel_id = c.id AND d.event = n.event
      GROUP BY r.name, n.id, n.event, c.name, c.enabled, c.created_at, n.at`,
  );
  violations.push(
    ...report(
      'firing or resolution without exactly one delivery per channel enabled at the time',
      notices.filter((n) => n.n !== (n.expected ? 1 : 0)).map((n) => `${n.rule} ${n.event} ${n.firing_id}: ${n.n} deliveries to ${n.channel}${n.expected ? '' : ' (not enabled then)'}`),
    ),
  );
  const { rows: strays } = await pool.query<{ id: string; event: string; firing_id: string | null; resolved: boolean | null }>(
    `SELECT d.id::text, d.event, d.firing_id::text, f.resolved_at IS NOT NULL AS resolved FROM alert_deliveries d LEFT JOIN alert_firings f ON f.id = d.firing_id
      WHERE (d.event = 'test') <> (d.firing_id IS NULL) OR d.event NOT IN ('firing', 'resolved', 'test') OR (d.event = 'resolved' AND f.resolved_at IS NULL)`,
  );
  violations.push(...report('delivery for no notice (a resolution of an open firing, a test naming a firing, an unknown event)', strays.map((d) => `${d.id} ${d.event} firing=${d.firing_id ?? '-'}`)));

  // Against the receivers: the ledger first, then what each receiver got (a receipt precedes every record of it).
  const { rows: deliveries } = await pool.query<{ id: string; channel_id: string; event: string; firing_id: string | null; state: string; attempts: number; last_status: number | null }>(
    `SELECT id::text, channel_id::text, event, firing_id::text, state, attempts, last_status FROM alert_deliveries`,
  );
  const pendingIds = deliveries.filter((d) => d.state === 'pending').map((d) => d.id);
  const jobs = await jobsFor(pool, pendingIds);
  const { rows: channels } = await pool.query<{ id: string; failing_since: Date | null; last_error: string | null }>(`SELECT id::text, failing_since, last_error FROM alert_channels`);
  const byId = new Map(deliveries.map((d) => [d.id, d]));
  const jobLine = (id: string) => {
    const js = jobs.get(id) ?? [];
    return js.length === 0 ? 'no job' : js.map((j) => `job attempts ${j.attempts}/${j.maxAttempts} locked ${j.lockedAt ? `${Math.round((Date.now() - j.lockedAt.getTime()) / 1000)} s ago` : 'no'}, run_at ${iso(j.runAt)}, error ${j.lastError?.slice(0, 120) ?? '-'}`).join('; ');
  };
  const unknown: string[] = [];
  const mismatched: string[] = [];
  const unsigned: string[] = [];
  const deliveredUnaccepted: string[] = [];
  const acceptedUndelivered: string[] = [];
  const phantom: string[] = [];
  const wrongStatus: string[] = [];
  const notDelivered: string[] = [];
  const failing: string[] = [];
  for (const channel of records.channels) {
    const receipts = channel.received();
    const byDelivery = new Map<string, AlertReceipt[]>();
    for (const r of receipts) {
      const d = r.deliveryId ? byId.get(r.deliveryId) : undefined;
      if (!d || d.channel_id !== channel.id) {
        unknown.push(`${channel.name}: ${r.deliveryId ?? 'no delivery id'} (${r.answer})`);
        continue;
      }
      byDelivery.set(d.id, [...(byDelivery.get(d.id) ?? []), r]);
      if (!r.signatureValid) unsigned.push(`${channel.name}: ${d.id}`);
      const b = r.body;
      if (!b || b.id !== d.id || b.type !== `alert.${d.event}` || b.channelId !== channel.id || (b.firingId ?? null) !== d.firing_id) {
        mismatched.push(`${channel.name}: ${d.id} ${d.event} firing=${d.firing_id ?? '-'}, body ${JSON.stringify(b)}`);
      }
    }
    for (const d of deliveries.filter((x) => x.channel_id === channel.id)) {
      const got = byDelivery.get(d.id) ?? [];
      const last = got.at(-1);
      const ok = (r: AlertReceipt | undefined) => r !== undefined && r.status !== null && r.status >= 200 && r.status < 300;
      const line = `${channel.name}: ${d.id} ${d.state}, ${d.attempts} attempts recorded (last ${d.last_status ?? 'no answer'}), received ${got.length} (${got.map((r) => r.answer).join(', ') || '-'})`;
      if (d.state === 'delivered' && (!ok(last) || d.last_status !== last!.status)) deliveredUnaccepted.push(line);
      if (got.some(ok) && d.state !== 'delivered' && !(d.state === 'pending' && d.attempts < got.length)) acceptedUndelivered.push(line);
      if (d.attempts > got.length) phantom.push(line);
      else if (got.length > 0 && d.attempts === got.length && d.last_status !== last!.status) wrongStatus.push(line);
      if (channel.alwaysAccepts && d.state !== 'delivered') notDelivered.push(`${line}; ${jobLine(d.id)}`);
    }
    const c = channels.find((x) => x.id === channel.id);
    if (channel.alwaysAccepts && c && (c.failing_since !== null || c.last_error !== null)) failing.push(`${channel.name}: failing since ${iso(c.failing_since)}, last error ${c.last_error ?? '-'}`);
  }
  violations.push(...report('notification received that the ledger does not hold for that channel', unknown));
  violations.push(...report('notification whose body does not match its delivery', mismatched));
  violations.push(...report('notification whose signature does not verify', unsigned));
  violations.push(...report('delivery recorded delivered that its channel did not last answer 2xx', deliveredUnaccepted));
  violations.push(...report('delivery its channel answered 2xx not recorded delivered, every attempt recorded', acceptedUndelivered));
  violations.push(...report('delivery attempt recorded that its channel never received', phantom));
  violations.push(...report('delivery whose last recorded status is not the answer its channel gave', wrongStatus));
  violations.push(...report('delivery to the channel that always answers 2xx not delivered by the end', notDelivered));
  violations.push(...report('the channel that always answers 2xx is marked failing', failing));
  const orphaned = pendingIds.filter((id) => !(jobs.get(id) ?? []).some((j) => j.attempts < j.maxAttempts || j.lockedAt !== null));
  violations.push(...report('pending delivery that no job will send', orphaned.map((id) => `${id} (${byId.get(id)!.event}, ${byId.get(id)!.attempts} attempts; ${jobLine(id)})`)));
  return violations;
}

async function jobsFor(pool: pg.Pool, deliveryIds: string[]): Promise<Map<string, JobState[]>> {
  const jobs = new Map<string, JobState[]>();
  for (const j of await jobsByPayloadField(pool, 'deliveryId', deliveryIds)) jobs.set(j.value, [...(jobs.get(j.value) ?? []), j]);
  return jobs;
}

/** Whether a pending delivery's job is locked by a worker that is gone (for the seed line, not a violation by itself). */
export function isStuck(job: Pick<JobState, 'lockedAt'>, now = Date.now()): boolean {
  return job.lockedAt !== null && now - job.lockedAt.getTime() >= STUCK_JOB_MS;
}
