// Growing a scale-seeded ledger (app/seed/scale.ts) in steps, for `npm run bench -- scale`: more Braintree windows
// further back (the seed's own window arithmetic: window w = subscription w % B, period w / B back) and more meter
// events as history, received between ~24 months and 60 days ago, before the seed's 30 days. The gap keeps every
// history event in a period of k >= 2, whose windows carry synthetic lines (so the seed's k = 1 invoices, aggregated
// from their events, stay exact). Plain `INSERT INTO meter_events (...) SELECT ...`, in chunks of one transaction
// each, ids UUIDv7 from received_at (eventIdSql), so a table partitioned by received month routes them.
//
// History mirrors the seed's mix: the same customers (squared: a few large, a long tail), names and values; Stripe
// events reported, 3 % failed with Stripe's error codes; Braintree events matched (unmatched for the names no meter
// defines) into their period's window, on its usage line when the window has one for that meter. No event_attempts
// or ops_events are written for history (the desk samples its failed event from the recent, seeded ones).
import type pg from 'pg';
import { DEFAULT_PLANS } from './base';
import { SCALE_ERROR_CODES, SCALE_MARKER, SCALE_UNMETERED_EVENT_NAMES } from './scale';
import { createLineTable, createPlanTables, createSubTable, eventIdSql, inSeedTransaction, insertScaleWindows } from './scale-sql';

const DAY_MS = 86_400_000;
/** History is received in [now - HISTORY_FROM_DAYS, now - HISTORY_TO_DAYS). */
export const HISTORY_FROM_DAYS = 730;
export const HISTORY_TO_DAYS = 60;

export interface GrowOptions {
  /** Total meter_events after growing (every row of the table counts, whoever wrote it). */
  events: number;
  /** Total scale windows after growing. */
  windows: number;
  now?: Date;
  /** Rows per transaction. */
  chunk?: number;
  log?: (line: string) => void;
}

export interface GrowResult {
  addedEvents: number;
  addedWindows: number;
  seconds: number;
}

export async function growScale(pool: pg.Pool, options: GrowOptions): Promise<GrowResult> {
  const t0 = performance.now();
  const log = options.log ?? (() => undefined);
  const chunk = options.chunk ?? 1_000_000;
  const now = new Date(Math.floor((options.now ?? new Date()).getTime() / 1000) * 1000);
  const marker = await pool.query(`SELECT 1 FROM customers WHERE external_id = $1`, [SCALE_MARKER]);
  if (!marker.rows[0]) throw new Error('growScale needs a scale seed first (seedScale)');
  const state = await pool.query<{ customers: string; windows: string; events: string; scale_events: string }>(
    `SELECT (SELECT count(*) FROM customers WHERE external_id LIKE 'scale-%')::text AS customers,
            (SELECT count(*) FROM windows w JOIN customers c ON c.id = w.customer_id WHERE c.external_id LIKE 'scale-%')::text AS windows,
            e.events::text, e.scale_events::text
       FROM (SELECT count(*) AS events, count(*) FILTER (WHERE identifier LIKE 'scale-%') AS scale_events FROM meter_events) e`,
  );
  const C = Number(state.rows[0]!.customers);
  const B = Math.floor(C / 2);
  const windowsBefore = Number(state.rows[0]!.windows);
  const eventsBefore = Number(state.rows[0]!.events);
  const firstIndex = Number(state.rows[0]!.scale_events); // the seed's i runs 0..E-1; growth continues it
  const N = Math.max(windowsBefore, options.windows);
  const addEvents = Math.max(0, options.events - eventsBefore);

  const plans = await pool.query<{ id: string; code: string }>(`SELECT id, code FROM plans WHERE code = ANY($1::text[])`, [DEFAULT_PLANS.map((p) => p.code)]);
  const planIds = DEFAULT_PLANS.map((p) => plans.rows.find((r) => r.code === p.code)?.id);
  const meters = await pool.query<{ id: string; event_name: string }>(`SELECT id, event_name FROM meters WHERE event_name IN ('ai_tokens', 'api_calls')`);
  const meterIds = ['ai_tokens', 'api_calls'].map((n) => meters.rows.find((m) => m.event_name === n)?.id);
  if (planIds.some((id) => !id) || meterIds.some((id) => !id)) throw new Error('growScale: the base seed or the scale meters are missing');

  const transaction = async (fn: (client: pg.PoolClient, replica: boolean) => Promise<void>) => {
    const client = await pool.connect();
    try {
      await inSeedTransaction(client, (replica) => fn(client, replica));
    } finally {
      client.release();
    }
  };
  const progress = (what: string, done: number, total: number, since: number) => {
    const s = (performance.now() - since) / 1000;
    const rate = done / s;
    log(`  ${what} ${done.toLocaleString('en-US')} / ${total.toLocaleString('en-US')} (${Math.round((done / total) * 100)} %)  ` +
      `${Math.round(rate).toLocaleString('en-US')} rows/s  ${s.toFixed(0)} s, ~${((total - done) / rate).toFixed(0)} s left`);
  };

  // Windows first, so every history event's period has its window when the events are written.
  const windowsFrom = Math.max(windowsBefore, 2 * B);
  if (windowsBefore < 2 * B && N > windowsBefore) throw new Error(`growScale: the seed has ${windowsBefore} windows, fewer than two periods of ${B} subscriptions`);
  const tw = performance.now();
  const windowChunk = Math.max(1, Math.floor(chunk / 5)); // each window writes ~5 rows (window, invoice, lines, charge)
  for (let from = windowsFrom; from < N; from += windowChunk) {
    const to = Math.min(N, from + windowChunk);
    await transaction(async (client, replica) => {
      const step = (_label: string, sql: string, params: unknown[] = []) => client.query(sql, params);
      await createPlanTables(client, planIds as string[], meterIds as string[], now);
      await createSubTable(client, C);
      await createLineTable(client);
      await insertScaleWindows(step, { braintreeSubscriptions: B, from, to, now, triggersOff: replica });
    });
    progress('windows', to - windowsFrom, N - windowsFrom, tw);
  }

  const codes = SCALE_ERROR_CODES.map((c) => c[0]);
  const messages = SCALE_ERROR_CODES.map((c) => c[1]);
  const lo = now.getTime() - HISTORY_FROM_DAYS * DAY_MS;
  const span = (HISTORY_FROM_DAYS - HISTORY_TO_DAYS) * DAY_MS;
  const te = performance.now();
  for (let done = 0; done < addEvents; done += chunk) {
    const n = Math.min(chunk, addEvents - done);
    // Row j of this step is received at lo + j * span / addEvents: in time order within the step, as a ledger is
    // written.
    await transaction(async (client) => {
      await client.query(historySql(B), [firstIndex + done, n, done, addEvents, lo, span, C, meterIds, codes, N, SCALE_UNMETERED_EVENT_NAMES, messages]);
    });
    progress('events', done + n, addEvents, te);
  }
  return { addedEvents: addEvents, addedWindows: Math.max(0, N - windowsFrom), seconds: (performance.now() - t0) / 1000 };
}

/**
 * $1 first i, $2 rows, $3 rows of this step already written, $4 rows of the step, $5 history start (ms), $6 span (ms),
 * $7 customers, $8 meter ids (ai_tokens, api_calls), $9 error codes, $10 windows, $11 unmetered names, $12 error messages. The
 * period is the seed's 30 days (2,592,000 s; app/seed/scale-sql.ts PERIOD).
 */
function historySql(B: number): string {
  // Each identifier claimed as the ledger's insert claims it (ADR 032).
  return `WITH ins AS (INSERT INTO meter_events (id, identifier, customer_id, subscription_id, event_name, meter_id, value, occurred_at, received_at, properties,
           processor, status, attempts, claimed_at, first_attempt_at, reported_at, last_error_code, last_error_message, last_error_source, window_id,
           invoice_line_id)
    SELECT ${eventIdSql('e.received_at', 'e.i')}, 'scale-' || lpad(e.i::text, 9, '0'), e.customer_id, e.subscription_id, e.event_name,
           CASE e.event_name WHEN 'ai_tokens' THEN ($8::uuid[])[1] WHEN 'api_calls' THEN ($8::uuid[])[2] END,
           CASE WHEN e.event_name = 'ai_tokens' THEN 50 + abs(hashint8extended(e.i, 4)) % 20000 ELSE 1 END,
           e.occurred_at, e.received_at,
           CASE WHEN e.r2 % 10 = 0 THEN jsonb_build_object('model', (ARRAY['mini', 'large', 'embed'])[1 + e.i % 3], 'request_id', 'req_' || e.i) END,
           (CASE WHEN e.stripe THEN 'stripe' ELSE 'braintree' END)::processor, st.status,
           CASE WHEN st.status = 'failed' THEN 1 + e.r3 % 3 WHEN st.status = 'reported' THEN 1 ELSE 0 END,
           CASE WHEN e.stripe THEN e.received_at + interval '400 milliseconds' END,
           CASE WHEN e.stripe THEN e.received_at + interval '400 milliseconds' END,
           CASE WHEN st.status = 'reported' OR (st.status = 'failed' AND e.r3 % 2 = 1) THEN e.received_at + interval '900 milliseconds' END,
           CASE WHEN st.status = 'failed' THEN ($9::text[])[1 + e.i % 5] END,
           CASE WHEN st.status = 'failed' THEN ($12::text[])[1 + e.i % 5] END,
           (CASE WHEN st.status = 'failed' THEN CASE WHEN e.r3 % 2 = 1 THEN 'webhook' ELSE 'sync' END END)::error_source,
           CASE WHEN st.status IN ('matched', 'unmatched') THEN md5('scale-window-' || e.s || '-' || e.k)::uuid END,
           CASE WHEN st.status = 'matched' AND (e.event_name = 'ai_tokens' OR abs(hashint8extended(e.k * ${B} + e.s, 11)) % 10 < 3)
                THEN md5('scale-line-' || e.s || '-' || e.k || '-usage-' || e.event_name)::uuid END
      FROM (
        SELECT x.*, s.customer_id, s.subscription_id, s.stripe, (x.c - 1) / 2 AS s,
               CASE WHEN s.stripe THEN NULL ELSE floor(extract(epoch FROM s.cps - x.occurred_at) / 2592000)::int + 1 END AS k,
               CASE WHEN x.r2 < 895 THEN 'ai_tokens' WHEN x.r2 < 995 OR s.stripe THEN 'api_calls'
                    WHEN x.r2 < 998 THEN ($11::text[])[1] ELSE ($11::text[])[2] END AS event_name
          FROM (
            SELECT g.i, t.received_at, t.received_at - ((r.r3 * 7) % 120) * interval '1 second' AS occurred_at, r.*
              FROM generate_series($1::bigint, $1::bigint + $2::bigint - 1) AS g(i)
              CROSS JOIN LATERAL (SELECT timestamptz '1970-01-01T00:00:00Z' + ($5::bigint + floor(($3::bigint + g.i - $1::bigint) * ($6::float8 / $4::bigint))::bigint) * interval '1 millisecond' AS received_at) t
              CROSS JOIN LATERAL (SELECT floor($7::int * power((abs(hashint8extended(g.i, 1)) % 1000000) / 1000000.0::float8, 2))::int AS c,
                                         abs(hashint8extended(g.i, 2)) % 1000 AS r2, abs(hashint8extended(g.i, 3)) % 1000 AS r3) r
            OFFSET 0
          ) x
          JOIN subscriptions sub ON sub.id = md5('scale-subscription-' || x.c)::uuid
          CROSS JOIN LATERAL (SELECT md5('scale-customer-' || x.c)::uuid AS customer_id, sub.id AS subscription_id, x.c % 2 = 0 AS stripe,
                                     sub.current_period_start AS cps) s
        OFFSET 0
      ) e
      CROSS JOIN LATERAL (SELECT CASE
          WHEN e.stripe AND e.r3 < 30 THEN 'failed'
          WHEN e.stripe THEN 'reported'
          WHEN e.k * ${B} + e.s >= $10::int THEN 'recorded'
          WHEN e.event_name IN ('ai_tokens', 'api_calls') THEN 'matched' ELSE 'unmatched' END::meter_event_status AS status) st
    RETURNING identifier, id)
    INSERT INTO meter_event_identifiers (identifier, event_id) SELECT identifier, id FROM ins`;
}
