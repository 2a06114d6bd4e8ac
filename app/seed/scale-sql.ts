// The scale seed's Braintree windows (app/seed/scale.ts), apart so that a ledger can be grown in steps
// (`npm run bench -- scale`): windows w in [from, to) of B Braintree subscriptions, window w being subscription
// s = w % B's k = w / B-th period back (k = 0 the open one). Lines of windows k >= 2 carry synthetic usage; those of
// k = 1 come from the ledger (seedScale writes them into scale_line before calling insertScaleWindows).
// The temp tables are per transaction (ON COMMIT DROP): create them in the transaction that inserts.
import type pg from 'pg';

export const PERIOD = `interval '30 days'`;

/**
 * SQL for a UUIDv7 event id (RFC 9562) whose 48-bit timestamp is the millisecond of `receivedAt` (a timestamptz
 * expression, already truncated to milliseconds) and whose 74 random bits are the row number `i` (a bigint
 * expression < 2^60): unique per row, and ordered by received time as the ids the ledger mints are
 * (app/billing/ids.ts). Version 7, variant 0b10.
 */
export function eventIdSql(receivedAt: string, i: string): string {
  return `(lpad(to_hex((extract(epoch FROM ${receivedAt}) * 1000)::bigint), 12, '0') || '7000' || '8' || lpad(to_hex(${i}), 15, '0'))::uuid`;
}

/**
 * Runs `fn` as one transaction on `client`, set up for bulk seeding: a generous work_mem and maintenance_work_mem
 * for its big sorts and hash joins, for this transaction only; and per-row foreign-key trigger checks (a fifth of
 * the ledger insert) skipped where the role may (`session_replication_role = replica`: a superuser, as on the
 * embedded database and the bench). That is safe because every reference a seed writes points at a row it wrote
 * just before (ids are derived, not looked up). Elsewhere the checks run and the seed is only slower; `fn` is told
 * which.
 */
export async function inSeedTransaction<T>(client: pg.PoolClient, fn: (replica: boolean) => Promise<T>): Promise<T> {
  await client.query('BEGIN');
  try {
    await client.query(`SET LOCAL work_mem = '128MB'`);
    await client.query(`SET LOCAL maintenance_work_mem = '256MB'`);
    const replica = await client
      .query('SAVEPOINT replica; SET LOCAL session_replication_role = replica; RELEASE SAVEPOINT replica')
      .then(() => true, async () => {
        await client.query('ROLLBACK TO SAVEPOINT replica');
        return false;
      });
    const result = await fn(replica);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

export type Step = (label: string, sql: string, params?: unknown[]) => Promise<pg.QueryResult>;

/** scale_price (each plan's price of each meter) and scale_plan (each plan's stored snapshot), as of `now`. */
export async function createPlanTables(client: pg.PoolClient, planIds: string[], meterIds: string[], now: Date): Promise<void> {
  // Per plan: its snapshot (the stored JSON form, as windows freeze it) and the price of each meter.
  await client.query(`CREATE TEMP TABLE scale_price ON COMMIT DROP AS
    SELECT DISTINCT ON (pl.idx, m.id) pl.idx, m.id AS meter_id, m.event_name, m.display_name, m.aggregation::text AS aggregation,
           mp.id AS meter_price_id, mp.unit_amount_decimal, mp.per_units, mp.rounding::text AS rounding, lower(mp.currency) AS currency
      FROM unnest($1::uuid[]) WITH ORDINALITY AS pl(plan_id, idx)
      JOIN meter_prices mp ON mp.plan_id = pl.plan_id AND mp.effective_from <= $2 AND (mp.effective_to IS NULL OR mp.effective_to > $2)
      JOIN meters m ON m.id = mp.meter_id AND m.id = ANY($3::uuid[])
     ORDER BY pl.idx, m.id, mp.effective_from DESC`, [planIds, now, meterIds]);
  await client.query(`CREATE TEMP TABLE scale_plan ON COMMIT DROP AS
    SELECT idx, jsonb_agg(jsonb_build_object('meterId', meter_id, 'eventName', event_name, 'displayName', display_name,
             'aggregation', aggregation, 'unitAmountDecimal', trim_scale(unit_amount_decimal)::text, 'perUnits', per_units::text,
             'rounding', rounding, 'currency', currency, 'meterPriceId', meter_price_id) ORDER BY event_name) AS snapshot
      FROM scale_price GROUP BY idx`);
}

/** scale_sub: scale customer c's subscription, processor, plan and current period start. */
export async function createSubTable(client: pg.PoolClient, C: number): Promise<void> {
  await client.query(`CREATE TEMP TABLE scale_sub ON COMMIT DROP AS
    SELECT c, md5('scale-customer-' || c)::uuid AS customer_id, md5('scale-subscription-' || c)::uuid AS subscription_id,
           (c % 2 = 0) AS stripe, 1 + c % 3 AS plan_idx, s.current_period_start AS cps
      FROM generate_series(0, $1 - 1) c JOIN subscriptions s ON s.id = md5('scale-subscription-' || c)::uuid`, [C]);
  await client.query(`ALTER TABLE scale_sub ADD PRIMARY KEY (c)`);
}

/** scale_line: invoice lines to write, keyed by window (s, k). */
export async function createLineTable(client: pg.PoolClient): Promise<void> {
  await client.query(`CREATE TEMP TABLE scale_line (window_id uuid, s int, k int, id uuid, kind invoice_line_kind, meter_id uuid, event_name text,
    description text, event_count int, quantity bigint, billed_units bigint, unit_amount_decimal numeric(31,12), per_units bigint, rounding rounding,
    amount_minor bigint, carried_from_window_id uuid) ON COMMIT DROP`);
}

/** Windows w in [from, to) with their invoices, lines and charge attempts (scale_window is left for the caller). */
export async function insertScaleWindows(
  step: Step,
  {
    braintreeSubscriptions: B,
    from,
    to,
    now,
    triggersOff,
  }: {
    braintreeSubscriptions: number;
    from: number;
    to: number;
    now: Date;
    /** The transaction runs with triggers off (inSeedTransaction's `replica`): what they keep is written here. */
    triggersOff: boolean;
  },
): Promise<void> {
  // Older windows: synthetic usage priced the same way; one in fifty carries late usage from the window before it.
  await step('invoice lines (older windows)', `INSERT INTO scale_line
    SELECT md5('scale-window-' || w.s || '-' || w.k)::uuid, w.s, w.k, md5('scale-line-' || w.s || '-' || w.k || '-' || l.kind || '-' || p.event_name)::uuid,
           l.kind::invoice_line_kind, p.meter_id, p.event_name,
           CASE WHEN l.kind = 'usage' THEN p.display_name
                ELSE 'Late usage: ' || p.display_name || ' (' || to_char((w.ps - ${PERIOD}) AT TIME ZONE 'UTC', 'YYYY-MM-DD') || ' – ' || to_char(w.ps AT TIME ZONE 'UTC', 'YYYY-MM-DD') || ')' END,
           CASE WHEN p.event_name = 'api_calls' THEN l.q ELSE 1 + l.q / 4000 END, l.q, b.units, p.unit_amount_decimal, p.per_units, p.rounding::rounding,
           round(b.units * p.unit_amount_decimal)::bigint,
           CASE WHEN l.kind = 'late_usage' THEN md5('scale-window-' || w.s || '-' || (w.k + 1))::uuid END
      FROM (SELECT w, w % $1 AS s, w / $1 AS k, ss.plan_idx, ss.cps - (w / $1) * ${PERIOD} AS ps, abs(hashint8extended(w, 11)) AS h
              FROM generate_series(greatest(2 * $1, $3), $2 - 1) w JOIN scale_sub ss ON ss.c = 2 * (w % $1) + 1) w
      CROSS JOIN LATERAL (VALUES
          ('usage', 'ai_tokens', 10000 + w.h % 30000000),
          ('usage', 'api_calls', CASE WHEN w.h % 10 < 3 THEN 1 + w.h % 50000 END),
          ('late_usage', 'ai_tokens', CASE WHEN w.h % 50 = 7 AND (w.k + 1) * $1 + w.s < $2 THEN 500 + w.h % 400000 END)
        ) AS l(kind, event_name, q)
      JOIN scale_price p ON p.idx = w.plan_idx AND p.event_name = l.event_name
      CROSS JOIN LATERAL (SELECT CASE WHEN p.rounding = 'up' THEN (l.q + p.per_units - 1) / p.per_units ELSE l.q / p.per_units END AS units) b
     WHERE l.q IS NOT NULL`, [B, to, from]);

  // Windows: k = 0 is the open current period; past ones in a realistic mix of states (the latest ones still in
  // flight, older ones mostly paid). A zero total is paid with no sale.
  await step('windows (temp table)', `CREATE TEMP TABLE scale_window ON COMMIT DROP AS
    SELECT w.*, CASE
             WHEN w.k = 0 THEN 'open'
             WHEN w.total = 0 THEN 'paid'
             WHEN w.k = 1 THEN CASE WHEN w.r < 400 THEN 'paid' WHEN w.r < 550 THEN 'closed' WHEN w.r < 650 THEN 'settling'
                                    WHEN w.r < 800 THEN 'retry_scheduled' WHEN w.r < 870 THEN 'failed_exhausted'
                                    WHEN w.r < 940 THEN 'awaiting_payment_method' ELSE 'written_off' END
             ELSE CASE WHEN w.r < 960 THEN 'paid' WHEN w.r < 975 THEN 'failed_exhausted' WHEN w.r < 990 THEN 'written_off'
                       ELSE 'awaiting_payment_method' END
           END::window_state AS state
      FROM (SELECT w.w, w.s, w.k, md5('scale-window-' || w.s || '-' || w.k)::uuid AS id, ss.subscription_id, ss.customer_id, ss.plan_idx,
                   ss.cps - w.k * ${PERIOD} AS period_start, ss.cps - (w.k - 1) * ${PERIOD} AS period_end,
                   abs(hashint8extended(w.w, 7)) % 1000 AS r,
                   coalesce(t.total, 0) AS total
              FROM (SELECT w, w % $1 AS s, w / $1 AS k FROM generate_series($3, $2 - 1) w) w
              JOIN scale_sub ss ON ss.c = 2 * w.s + 1
              LEFT JOIN (SELECT s, k, sum(amount_minor) AS total FROM scale_line GROUP BY s, k) t ON t.s = w.s AND t.k = w.k) w`, [B, to, from]);
  await step('windows', `INSERT INTO windows (id, subscription_id, customer_id, period_start, period_end, state, price_snapshot, currency,
           stale_repaired, closed_at, paid_at, created_at, updated_at)
    SELECT w.id, w.subscription_id, w.customer_id, w.period_start, w.period_end, w.state, p.snapshot, 'usd',
           w.k > 0 AND w.r % 97 = 3,
           CASE WHEN w.k > 0 THEN w.period_end + interval '4 minutes' END,
           CASE WHEN w.state = 'paid' THEN w.period_end + interval '9 minutes' END,
           w.period_start, CASE WHEN w.k = 0 THEN w.period_start ELSE w.period_end + interval '9 minutes' END
      FROM scale_window w JOIN scale_plan p ON p.idx = w.plan_idx`);
  // window_state by hand: a seed transaction may run with triggers off (inSeedTransaction), and the trigger that
  // copies it is among them.
  await step('invoices', `INSERT INTO invoices (id, window_id, customer_id, subscription_id, currency, total_minor, revision, authored_at, window_state)
    SELECT md5('scale-invoice-' || w.s || '-' || w.k)::uuid, w.id, w.customer_id, w.subscription_id, 'usd', w.total, 1, w.period_end + interval '4 minutes',
           w.state
      FROM scale_window w WHERE w.k > 0`);
  // The invoice totals rollup (ADR 031) is kept by triggers: when they are off, these invoices are added by hand.
  if (triggersOff) {
    await step('invoice_totals', `INSERT INTO invoice_totals AS t (currency, state, processor, period_month, invoices, total_minor)
      SELECT 'usd', w.state, 'braintree', date_trunc('month', w.period_end AT TIME ZONE 'UTC')::date, count(*)::int, sum(w.total)
        FROM scale_window w WHERE w.k > 0 GROUP BY 2, 4
      ON CONFLICT (currency, state, processor, period_month)
      DO UPDATE SET invoices = t.invoices + EXCLUDED.invoices, total_minor = t.total_minor + EXCLUDED.total_minor`);
  }
  await step('invoice_lines', `INSERT INTO invoice_lines (id, invoice_id, kind, meter_id, event_name, description, event_count, quantity, billed_units,
           unit_amount_decimal, per_units, rounding, amount_minor, carried_from_window_id)
    SELECT l.id, md5('scale-invoice-' || l.s || '-' || l.k)::uuid, l.kind, l.meter_id, l.event_name, l.description, l.event_count, l.quantity,
           l.billed_units, l.unit_amount_decimal, l.per_units, l.rounding, l.amount_minor, l.carried_from_window_id
      FROM scale_line l`);
  await step('charge_attempts', `INSERT INTO charge_attempts (id, window_id, order_id, amount_minor, currency, status, tries, transaction_id,
           processor_status, response_code, first_failure_code, first_failure_message, first_failure_at, last_failure_code, last_failure_message,
           last_failure_at, next_retry_at, created_at, updated_at, last_sent_at, budget_tries, budget_started_at)
    SELECT md5('scale-charge-' || w.s || '-' || w.k)::uuid, w.id, 'mdw-' || w.id, w.total, 'usd',
           (CASE w.state WHEN 'paid' THEN 'succeeded' WHEN 'settling' THEN 'pending' WHEN 'retry_scheduled' THEN 'soft_declined'
                         WHEN 'failed_exhausted' THEN CASE WHEN w.r % 2 = 0 THEN 'hard_declined' ELSE 'soft_declined' END
                         WHEN 'awaiting_payment_method' THEN 'gateway_rejected' ELSE 'written_off' END)::charge_status,
           t.tries,
           CASE WHEN w.state = 'paid' THEN 'txn_scale_' || w.w END,
           CASE w.state WHEN 'paid' THEN CASE WHEN w.k = 1 THEN 'submitted_for_settlement' ELSE 'settled' END
                        WHEN 'settling' THEN NULL WHEN 'awaiting_payment_method' THEN 'gateway_rejected' ELSE 'processor_declined' END,
           CASE w.state WHEN 'paid' THEN '1000' WHEN 'settling' THEN NULL WHEN 'awaiting_payment_method' THEN NULL
                        WHEN 'failed_exhausted' THEN CASE WHEN w.r % 2 = 0 THEN '2004' ELSE '2001' END ELSE '2001' END,
           f.code, f.message, f.at, f.code, f.message, CASE WHEN f.code IS NOT NULL THEN f.at + (t.tries - 1) * interval '1 day' END,
           CASE WHEN w.state = 'retry_scheduled' THEN $1::timestamptz + (1 + w.r % 48) * interval '1 hour' END,
           w.period_end + interval '5 minutes', w.period_end + interval '9 minutes',
           w.period_end + interval '5 minutes' + (t.tries - 1) * interval '1 day', t.tries, w.period_end + interval '5 minutes'
      FROM scale_window w
      CROSS JOIN LATERAL (SELECT CASE w.state WHEN 'paid' THEN 1 WHEN 'settling' THEN 1 WHEN 'retry_scheduled' THEN 1 + w.r % 3
                                              WHEN 'failed_exhausted' THEN CASE WHEN w.r % 2 = 0 THEN 1 ELSE 4 END ELSE 1 + w.r % 2 END AS tries) t
      CROSS JOIN LATERAL (SELECT CASE WHEN w.state IN ('retry_scheduled', 'failed_exhausted', 'written_off') THEN
                                      CASE WHEN w.state = 'failed_exhausted' AND w.r % 2 = 0 THEN '2004' ELSE '2001' END
                                      WHEN w.state = 'awaiting_payment_method' THEN '91516' END AS code,
                                 CASE WHEN w.state IN ('retry_scheduled', 'failed_exhausted', 'written_off') THEN
                                      CASE WHEN w.state = 'failed_exhausted' AND w.r % 2 = 0 THEN 'Expired Card' ELSE 'Insufficient Funds' END
                                      WHEN w.state = 'awaiting_payment_method' THEN 'Cannot use a payment_method_nonce more than once.' END AS message,
                                 w.period_end + interval '5 minutes' AS at) f
     WHERE w.k > 0 AND w.total > 0 AND w.state <> 'closed'`, [now]);
}
