// A ledger at production scale for benchmarks and load checks (`npm run cli -- seed --scale 1m`, `npm run bench -- desk`):
// a few thousand customers on both processors, N meter events over the last 30 days and M Braintree windows over
// past 30-day periods, with invoices, lines, charge attempts, event attempts and ops events. Everything is set-based
// SQL generated inside PostgreSQL (generate_series + hashint8extended as a deterministic random source), in one
// transaction, so 1,000,000 events take seconds rather than the minutes the ingest path would.
//
// Identity is arithmetic: customer c, subscription c, window (s, k), invoice line (s, k, event name) all have ids
// derived with md5(...)::uuid, so events can name their window and line without joins. Event ids are UUIDv7 built
// from received_at (48-bit ms) plus the row number in the random bits: strictly increasing with received time,
// which is what the events page's keyset and the rollups' id ranges rely on.
//
// Invoices of the most recent closed window per subscription are aggregated from exactly the `matched` events
// that name them (invariant 3). Older windows predate the seeded 30 days of ledger; their lines carry synthetic
// quantities (priced with the same snapshot arithmetic). Every invoice's total is the sum of its lines.
import type pg from 'pg';
import { rollupEvents, uuidv7Floor } from '../billing/rollups';
import { DEFAULT_PLANS } from './base';
import { PERIOD, createLineTable, eventIdSql, createPlanTables, createSubTable, inSeedTransaction, insertScaleWindows } from './scale-sql';

export interface ScaleOptions {
  events: number;
  windows: number;
  now?: Date;
  /** Progress lines (e.g. console.log); silent by default. */
  log?: (line: string) => void;
}

export interface ScaleResult {
  status: 'seeded' | 'skipped';
  /** Why nothing was written (status `skipped`). */
  reason?: string;
  customers: number;
  events: number;
  windows: number;
  seconds: number;
}

/** The external id of the first scale customer: its presence means a scale seed already ran. */
export const SCALE_MARKER = 'scale-00000';
const DAY_MS = 86_400_000;
/** The Braintree names no meter defines: they end `unmatched` in a window (the missing-definitions inbox). */
export const SCALE_UNMETERED_EVENT_NAMES = ['image_renders', 'gpu_seconds'] as const;
/** Stripe's meter event error codes and messages the seeded failed events carry. */
export const SCALE_ERROR_CODES = [
  ['meter_event_customer_not_found', 'No customer found for the provided stripe_customer_id.'],
  ['meter_event_invalid_value', 'The value must be a non-negative integer.'],
  ['timestamp_too_far_in_past', 'The timestamp is more than 35 days in the past.'],
  ['archived_meter', 'The meter is archived and accepts no new events.'],
  ['meter_event_no_customer_defined', 'The payload has no stripe_customer_id.'],
] as const;

/** "1m" -> 1,000,000; "100k" -> 100,000; "2500" -> 2,500. */
export function parseScale(value: string): number {
  const m = /^(\d+(?:\.\d+)?)([km]?)$/i.exec(value.trim());
  if (!m) throw new Error(`--scale must look like 1m, 100k or 5000 (got "${value}")`);
  const n = Math.round(Number(m[1]) * (m[2]?.toLowerCase() === 'm' ? 1_000_000 : m[2]?.toLowerCase() === 'k' ? 1_000 : 1));
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--scale must be a positive count (got "${value}")`);
  return n;
}

/** Customers for a ledger of `events`: ~333 events each (3,000 at 1m), at least 4 (two per processor). */
export function scaleCustomers(events: number): number {
  return Math.max(4, Math.min(3000, Math.round(events / 333)));
}

export async function seedScale(pool: pg.Pool, options: ScaleOptions): Promise<ScaleResult> {
  const t0 = performance.now();
  const E = options.events;
  const N = options.windows;
  if (!Number.isSafeInteger(E) || E < 1 || !Number.isSafeInteger(N) || N < 0) throw new Error('seedScale: events >= 1 and windows >= 0');
  const now = new Date(Math.floor((options.now ?? new Date()).getTime() / 1000) * 1000);
  const C = scaleCustomers(E);
  const B = Math.floor(C / 2); // Braintree customers: the odd indexes
  const log = options.log ?? (() => undefined);
  const client = await pool.connect();
  const step = async (label: string, sql: string, params: unknown[] = []) => {
    const t = performance.now();
    const r = await client.query(sql, params);
    log(`  ${label.padEnd(34)} ${String(r.rowCount ?? '').padStart(9)} rows  ${((performance.now() - t) / 1000).toFixed(1)} s`);
    return r;
  };
  try {
    const existing = await client.query<{ events: string }>(
      `SELECT (SELECT count(*) FROM customers WHERE external_id LIKE 'scale-%')::text AS events FROM customers WHERE external_id = $1`,
      [SCALE_MARKER],
    );
    if (existing.rows[0]) {
      return {
        status: 'skipped',
        reason: `the database already holds a scale seed (${existing.rows[0].events} scale-* customers); nothing was written — seed a fresh database to change the scale`,
        customers: 0,
        events: 0,
        windows: 0,
        seconds: (performance.now() - t0) / 1000,
      };
    }
    const plans = await client.query<{ id: string; code: string }>(`SELECT id, code FROM plans WHERE code = ANY($1::text[])`, [DEFAULT_PLANS.map((p) => p.code)]);
    const planIds = DEFAULT_PLANS.map((p) => plans.rows.find((r) => r.code === p.code)?.id);
    const aiTokens = await client.query<{ id: string }>(`SELECT id FROM meters WHERE event_name = 'ai_tokens'`);
    if (planIds.some((id) => !id) || !aiTokens.rows[0]) throw new Error('seedScale needs the base seed (plans and the ai_tokens meter): run `npm run cli -- migrate` first');

    await inSeedTransaction(client, async (replica) => {
      if (!replica) log('  (not a superuser: foreign keys are checked row by row)');

      // A second meter (count aggregation) priced on every plan, so invoices have more than one line.
      await client.query(
        `INSERT INTO meters (id, event_name, display_name, aggregation, updated_at)
         VALUES (gen_random_uuid(), 'api_calls', 'API calls', 'count', now()) ON CONFLICT (event_name) DO NOTHING`,
      );
      const apiCalls = await client.query<{ id: string }>(`SELECT id FROM meters WHERE event_name = 'api_calls'`);
      const meterIds = [aiTokens.rows[0]!.id, apiCalls.rows[0]!.id];
      await client.query(
        `INSERT INTO meter_prices (id, plan_id, meter_id, unit_amount_decimal, per_units, rounding, currency, effective_from)
         SELECT gen_random_uuid(), p, $2::uuid, 1, 100, 'up', 'usd', '2020-01-01T00:00:00Z' FROM unnest($1::uuid[]) p
         ON CONFLICT (plan_id, meter_id, effective_from) DO NOTHING`,
        [planIds, meterIds[1]],
      );

      await createPlanTables(client, planIds as string[], meterIds, now);

      log(`scale seed: ${C.toLocaleString('en-US')} customers, ${E.toLocaleString('en-US')} events, ${N.toLocaleString('en-US')} windows`);
      await step('customers', `INSERT INTO customers (id, external_id, name, email, processor, processor_customer_id, default_payment_method_token, created_at, updated_at)
        SELECT md5('scale-customer-' || c)::uuid, 'scale-' || lpad(c::text, 5, '0'), 'Scale Customer ' || c, 'billing+' || c || '@scale.test',
               (CASE WHEN c % 2 = 0 THEN 'stripe' ELSE 'braintree' END)::processor,
               CASE WHEN c % 2 = 0 THEN 'cus_scale_' || c ELSE 'bt_scale_' || c END,
               CASE WHEN c % 2 = 1 AND c % 50 <> 1 THEN 'pm_scale_' || c END,
               $2::timestamptz - interval '3 years', $2
          FROM generate_series(0, $1 - 1) c`, [C, now]);
      // Current periods started within the last 30 days (the period is 30 days), so the seeded events fall in the
      // current period or in the one before it.
      await step('subscriptions', `INSERT INTO subscriptions (id, customer_id, plan_id, processor, processor_subscription_id, status,
               current_period_start, current_period_end, created_at, updated_at)
        SELECT md5('scale-subscription-' || c)::uuid, md5('scale-customer-' || c)::uuid, ($3::uuid[])[1 + c % 3],
               (CASE WHEN c % 2 = 0 THEN 'stripe' ELSE 'braintree' END)::processor,
               CASE WHEN c % 2 = 0 THEN 'sub_scale_' || c ELSE 'bt_sub_scale_' || c END,
               (CASE WHEN c % 97 = 5 THEN 'past_due' WHEN c % 89 = 7 THEN 'trialing' ELSE 'active' END)::subscription_status,
               ps, ps + ${PERIOD}, $2::timestamptz - interval '3 years', $2
          FROM generate_series(0, $1 - 1) c,
               LATERAL (SELECT $2::timestamptz - (abs(hashint4(c)) % 2592000) * interval '1 second' AS ps) p`, [C, now, planIds]);
      await createSubTable(client, C);

      // The ledger, computed once into a temp table (no WAL) and used twice: aggregated into the latest invoices, then
      // inserted. The OFFSET 0 fences keep PostgreSQL from inlining each derived column into every expression that
      // reads it (which evaluated the status CASE dozens of times per row, 10x slower).
      // Stripe: reported, a few failed with Stripe's error codes, pending only for the last minutes (and a few stuck
      // for hours). Braintree: recorded in the open period; matched (or unmatched: no meter) when it occurred before
      // the current period, billed in window k = 1 (when that window exists).
      // Not yet reported: the last two minutes at full scale, the last ~20 events' worth at tiny ones.
      const pendingMs = Math.max(120_000, Math.round((30 * DAY_MS * 20) / E));
      await step('ledger (temp table)', `CREATE TEMP TABLE scale_event ON COMMIT DROP AS
        SELECT e.*, st.status, st.stuck FROM (
          SELECT g.i, x.received_at, x.received_at - (CASE WHEN x.r3 >= 995 THEN interval '3 hours' ELSE interval '0' END)
                    - ((x.r3 * 7) % 120) * interval '1 second' AS occurred_at,
                 s.c, s.customer_id, s.subscription_id, s.stripe, s.plan_idx, s.cps, x.r2, x.r3, n.event_name,
                 CASE WHEN n.event_name = 'ai_tokens' THEN 50 + abs(hashint8extended(g.i, 4)) % 20000 ELSE 1 END AS value
            FROM generate_series(0, $2::bigint - 1) AS g(i)
            CROSS JOIN LATERAL (
              SELECT date_trunc('milliseconds', $1::timestamptz - interval '30 days' + (g.i * (2592000000.0::float8 / $2::bigint)) * interval '1 millisecond') AS received_at,
                     -- squared: a few large customers and a long tail, as real usage is
                     floor($3::int * power((abs(hashint8extended(g.i, 1)) % 1000000) / 1000000.0::float8, 2))::int AS c,
                     abs(hashint8extended(g.i, 2)) % 1000 AS r2, abs(hashint8extended(g.i, 3)) % 1000 AS r3
              OFFSET 0
            ) x
            JOIN scale_sub s ON s.c = x.c
            CROSS JOIN LATERAL (SELECT CASE
                WHEN x.r2 < 895 THEN 'ai_tokens'
                WHEN x.r2 < 995 OR s.stripe THEN 'api_calls'
                WHEN x.r2 < 998 THEN '${SCALE_UNMETERED_EVENT_NAMES[0]}' ELSE '${SCALE_UNMETERED_EVENT_NAMES[1]}' END AS event_name OFFSET 0) n
            OFFSET 0
        ) e
        CROSS JOIN LATERAL (SELECT
            CASE
              WHEN e.stripe AND (e.received_at > $1::timestamptz - $6::bigint * interval '1 millisecond'
                                 OR (e.r3 BETWEEN 30 AND 32 AND e.received_at > $1::timestamptz - interval '6 hours')) THEN 'pending'
              WHEN e.stripe AND e.r3 < 30 THEN 'failed'
              WHEN e.stripe THEN 'reported'
              WHEN e.occurred_at < e.cps AND $4::int + (e.c - 1) / 2 < $5::int
                THEN CASE WHEN e.event_name IN ('ai_tokens', 'api_calls') THEN 'matched' ELSE 'unmatched' END
              ELSE 'recorded' END::meter_event_status AS status,
            e.stripe AND e.r3 BETWEEN 30 AND 32 AND e.received_at > $1::timestamptz - interval '6 hours' AS stuck
          OFFSET 0) st
        ORDER BY e.i`, [now, E, C, B, N, pendingMs]);

      await createLineTable(client);
      await step('invoice lines (from the ledger)', `INSERT INTO scale_line
        SELECT md5('scale-window-' || s || '-1')::uuid, s, 1, md5('scale-line-' || s || '-1-' || a.event_name)::uuid, 'usage', p.meter_id,
               a.event_name, p.display_name, a.n, a.q, b.units, p.unit_amount_decimal, p.per_units, p.rounding::rounding, round(b.units * p.unit_amount_decimal)::bigint, NULL
          FROM (SELECT (e.c - 1) / 2 AS s, e.plan_idx, e.event_name, count(*)::int AS n,
                       CASE WHEN e.event_name = 'api_calls' THEN count(*) ELSE sum(e.value)::bigint END AS q
                  FROM scale_event e WHERE e.status = 'matched'
                 GROUP BY 1, 2, 3) a
          JOIN scale_price p ON p.idx = a.plan_idx AND p.event_name = a.event_name
          CROSS JOIN LATERAL (SELECT CASE WHEN p.rounding = 'up' THEN (a.q + p.per_units - 1) / p.per_units ELSE a.q / p.per_units END AS units) b`);
      await insertScaleWindows(step, { braintreeSubscriptions: B, from: 0, to: N, now, triggersOff: replica });

      const codes = SCALE_ERROR_CODES.map((c) => c[0]);
      const messages = SCALE_ERROR_CODES.map((c) => c[1]);
      await step('meter_events', `INSERT INTO meter_events (id, identifier, customer_id, subscription_id, event_name, meter_id, value, occurred_at,
               received_at, properties, processor, status, attempts, claimed_at, first_attempt_at, reported_at, last_error_code, last_error_message,
               last_error_source, window_id, invoice_line_id)
        SELECT ${eventIdSql('e.received_at', 'e.i')},
               'scale-' || lpad(e.i::text, 9, '0'), e.customer_id, e.subscription_id, e.event_name,
               CASE e.event_name WHEN 'ai_tokens' THEN ($1::uuid[])[1] WHEN 'api_calls' THEN ($1::uuid[])[2] END,
               e.value, e.occurred_at, e.received_at,
               CASE WHEN e.r2 % 10 = 0 THEN jsonb_build_object('model', (ARRAY['mini', 'large', 'embed'])[1 + e.i % 3], 'request_id', 'req_' || e.i) END,
               (CASE WHEN e.stripe THEN 'stripe' ELSE 'braintree' END)::processor, e.status,
               CASE WHEN e.status = 'failed' THEN 1 + e.r3 % 3 WHEN e.status = 'reported' OR e.stuck THEN 1 ELSE 0 END,
               CASE WHEN e.status IN ('reported', 'failed') OR e.stuck THEN e.received_at + interval '400 milliseconds' END,
               CASE WHEN e.status IN ('reported', 'failed') OR e.stuck THEN e.received_at + interval '400 milliseconds' END,
               CASE WHEN e.status = 'reported' OR (e.status = 'failed' AND e.r3 % 2 = 1) THEN e.received_at + interval '900 milliseconds' END,
               CASE WHEN e.status = 'failed' THEN ($2::text[])[1 + e.i % 5] END,
               CASE WHEN e.status = 'failed' THEN ($3::text[])[1 + e.i % 5] END,
               (CASE WHEN e.status = 'failed' THEN CASE WHEN e.r3 % 2 = 1 THEN 'webhook' ELSE 'sync' END END)::error_source,
               CASE WHEN e.status IN ('matched', 'unmatched') THEN md5('scale-window-' || ((e.c - 1) / 2) || '-1')::uuid END,
               CASE WHEN e.status = 'matched' THEN md5('scale-line-' || ((e.c - 1) / 2) || '-1-' || e.event_name)::uuid END
          FROM scale_event e`, [meterIds, codes, messages]); // scale_event was written in i (received) order
      // Each identifier claimed once, as the ledger's insert claims it (ADR 032).
      await step('meter_event_identifiers', `INSERT INTO meter_event_identifiers (identifier, event_id)
        SELECT identifier, id FROM meter_events WHERE identifier LIKE 'scale-%'`);

      // The attempt timeline: every try of a failed event (transient failures before the final rejection), and
      // the successful call of the last day's reported events (what the overview's "reported" series counts).
      await step('event_attempts', `INSERT INTO event_attempts (id, meter_event_id, started_at, duration_ms, source, outcome, http_status, error_code, error_message, response)
        SELECT gen_random_uuid(), e.id, e.first_attempt_at + (a.n - 1) * interval '2 minutes', 80 + a.n * 37 % 400,
               CASE WHEN a.n = 1 THEN 'sync' ELSE 'reconciler' END::error_source,
               CASE WHEN a.n < e.attempts THEN 'transient' WHEN e.last_error_source = 'webhook' THEN 'reported' ELSE 'rejected' END::attempt_outcome,
               CASE WHEN a.n < e.attempts THEN 503 WHEN e.last_error_source = 'webhook' THEN 200 ELSE 400 END,
               CASE WHEN a.n < e.attempts THEN 'api_error' WHEN e.last_error_source = 'webhook' THEN NULL ELSE e.last_error_code END,
               CASE WHEN a.n < e.attempts THEN 'Service unavailable' WHEN e.last_error_source = 'webhook' THEN NULL ELSE e.last_error_message END,
               CASE WHEN a.n < e.attempts THEN jsonb_build_object('status', 503, 'error', jsonb_build_object('type', 'api_error', 'message', 'Service unavailable'))
                    WHEN e.last_error_source = 'webhook' THEN jsonb_build_object('status', 200, 'object', 'billing.meter_event', 'identifier', e.identifier)
                    ELSE jsonb_build_object('status', 400, 'error', jsonb_build_object('type', 'invalid_request_error', 'code', e.last_error_code, 'message', e.last_error_message)) END
          FROM meter_events e CROSS JOIN LATERAL generate_series(1, e.attempts) a(n)
         WHERE e.status = 'failed' AND e.identifier LIKE 'scale-%'
        UNION ALL
        SELECT gen_random_uuid(), e.id, e.first_attempt_at, 120, 'sync', 'reported', 200, NULL, NULL,
               jsonb_build_object('status', 200, 'object', 'billing.meter_event', 'identifier', e.identifier)
          FROM meter_events e
         WHERE e.id >= $1::uuid AND e.status = 'reported' AND e.identifier LIKE 'scale-%'`,
        [uuidv7Floor(now.getTime() - DAY_MS)]);

      await step('ops_events', `INSERT INTO ops_events (id, type, occurred_at, processor, source, subject_type, subject_id, dedupe_key, metadata, resolved_at)
        SELECT gen_random_uuid(), 'meter_reporting_failed', coalesce(e.reported_at, e.first_attempt_at) + interval '1 second', 'stripe'::processor,
               e.last_error_source::text, 'meter_event', e.id::text, NULL, jsonb_build_object('code', e.last_error_code, 'identifier', e.identifier),
               CASE WHEN e.received_at < $1::timestamptz - interval '3 days' AND e.i % 4 <> 0 THEN e.received_at + interval '1 day' END
          FROM (SELECT *, abs(hashtext(identifier)) AS i FROM meter_events WHERE status = 'failed' AND identifier LIKE 'scale-%') e
        UNION ALL
        SELECT gen_random_uuid(), 'metered_missing_definition', w.period_end + interval '4 minutes', 'braintree', 'invoicing', 'window', w.id::text,
               'metered_missing_definition:' || w.id, jsonb_build_object('event_names', u.names), NULL
          FROM scale_window w
          JOIN (SELECT window_id, jsonb_agg(DISTINCT event_name) AS names FROM meter_events WHERE status = 'unmatched' AND window_id IS NOT NULL GROUP BY window_id) u
            ON u.window_id = w.id
        UNION ALL
        SELECT gen_random_uuid(), t.type, w.period_end + interval '5 minutes' + (CASE WHEN w.state = 'failed_exhausted' THEN 3 ELSE 0 END) * interval '1 day',
               'braintree', 'settlement', 'window', w.id::text, NULL, jsonb_build_object('order_id', 'mdw-' || w.id, 'amount_minor', w.total::text),
               CASE WHEN w.k > 2 THEN w.period_end + interval '10 days' END
          FROM scale_window w
          JOIN (VALUES ('failed_exhausted'::window_state, 'metered_charge_failed_exhausted'), ('written_off', 'metered_charge_failed_exhausted'),
                       ('awaiting_payment_method', 'metered_charge_awaiting_payment_method')) t(state, type) ON t.state = w.state
         WHERE w.total > 0
        UNION ALL
        SELECT gen_random_uuid(), 'metered_renewal_stale_repaired', w.period_end + interval '2 hours', 'braintree', 'reconciler', 'window', w.id::text,
               NULL, jsonb_build_object('subscription_id', w.subscription_id), w.period_end + interval '1 day'
          FROM scale_window w WHERE w.k > 0 AND w.r % 97 = 3
        UNION ALL
        SELECT gen_random_uuid(), 'metered_late_usage', w.period_end + interval '4 minutes', 'braintree', 'invoicing', 'window', w.id::text,
               'metered_late_usage:' || w.id || ':' || l.carried_from_window_id, jsonb_build_object('events', l.event_count), w.period_end + interval '2 days'
          FROM scale_line l JOIN scale_window w ON w.s = l.s AND w.k = l.k WHERE l.kind = 'late_usage'
        UNION ALL
        SELECT gen_random_uuid(), 'processor_rate_limited', $1::timestamptz - (n * 37 % 43200) * interval '1 minute', 'stripe', 'sync', NULL, NULL, NULL,
               jsonb_build_object('retry_after_ms', 1000), NULL
          FROM generate_series(1, greatest(5, $2::int / 5000)) n`, [now, E]);

    });
  } finally {
    client.release();
  }
  // The overview's event charts read rollups: fill the last day from what was just written.
  const rollupClient = await pool.connect();
  try {
    await rollupEvents(rollupClient, { from: new Date(now.getTime() - DAY_MS), to: now, now });
  } finally {
    rollupClient.release();
  }
  // VACUUM as well as ANALYZE: it sets the visibility map, so index-only scans (the overview's bounded counts) skip
  // the heap as they would once autovacuum has visited, and autovacuum does not start on these tables mid-benchmark.
  const t = performance.now();
  await pool.query(`VACUUM (ANALYZE) meter_events, event_attempts, windows, invoices, invoice_lines, charge_attempts, ops_events,
    customers, subscriptions, event_rollups, meters, meter_prices`);
  log(`  ${'VACUUM (ANALYZE)'.padEnd(34)} ${''.padStart(9)}       ${((performance.now() - t) / 1000).toFixed(1)} s`);
  return { status: 'seeded', customers: C, events: E, windows: N, seconds: (performance.now() - t0) / 1000 };
}
