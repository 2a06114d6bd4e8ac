// Meter definitions: meters and their prices per plan, the "missing definitions" inbox (event names ingested while
// no meter defined them), and "add the definition, then replay the windows it blocked". Decision record:
// docs/decisions/010-missing-definitions-replay.md.
import type pg from 'pg';
import { z } from 'zod';
import { writeAudit, type Actor } from './audit';
import type { Queryable } from './db';
import { ConflictError, NotFoundError, StateError, ValidationError } from './errors';
import { EVENT_NAME_PATTERN } from './ledger/event-input';
import { typeError, zodFieldErrors } from './validation';
import { fromStoredSnapshot, toStoredSnapshot, type SnapshotPrice } from './windows/invoice-math';
import { canonicalUnitAmount, UNIT_AMOUNT_DECIMAL_PATTERN } from './windows/unit-price';
import { REAUTHOR_STATES, reauthorWindow } from './windows/invoices';
import { inTransaction, withClient } from './windows/transaction';

export const AGGREGATIONS = ['sum', 'count', 'max', 'last'] as const;
export type MeterAggregation = (typeof AGGREGATIONS)[number];
export const ROUNDINGS = ['up', 'down'] as const;

const INBOX_LIMIT = 100;
const CUSTOMER_NAMES_SHOWN = 3;
/** bigint columns: keep amounts inside PostgreSQL's bigint. */
const MAX_BIGINT = 9_223_372_036_854_775_807n;

// ───────────────────────────── reads ─────────────────────────────

export interface PlanView {
  id: string;
  code: string;
  name: string;
}

export interface MeterPriceView {
  id: string;
  planId: string;
  planCode: string;
  planName: string;
  /** Minor units per billed unit, canonical decimal (`'0.015'`). */
  unitAmountDecimal: string;
  perUnits: string;
  rounding: 'up' | 'down';
  currency: string;
  effectiveFrom: string;
  effectiveTo: string | null;
}

export interface MeterView {
  id: string;
  eventName: string;
  displayName: string;
  aggregation: MeterAggregation;
  createdAt: string;
  prices: MeterPriceView[];
}

export async function listPlans(db: Queryable): Promise<PlanView[]> {
  const { rows } = await db.query<PlanView>(`SELECT id, code, name FROM plans ORDER BY created_at, code`);
  return rows;
}

/** Every meter with its prices (current and past), per plan. Meters are few: no pagination. */
export async function listMeters(db: Queryable): Promise<MeterView[]> {
  const [meters, prices] = await Promise.all([
    db.query<{ id: string; event_name: string; display_name: string; aggregation: MeterAggregation; created_at: Date }>(
      `SELECT id, event_name, display_name, aggregation::text AS aggregation, created_at FROM meters ORDER BY event_name`,
    ),
    db.query<{
      id: string;
      meter_id: string;
      plan_id: string;
      plan_code: string;
      plan_name: string;
      unit_amount_decimal: string;
      per_units: string;
      rounding: 'up' | 'down';
      currency: string;
      effective_from: Date;
      effective_to: Date | null;
    }>(
      `SELECT mp.id, mp.meter_id, mp.plan_id, p.code AS plan_code, p.name AS plan_name, mp.unit_amount_decimal::text AS unit_amount_decimal,
              mp.per_units::text AS per_units, mp.rounding::text AS rounding, lower(mp.currency) AS currency, mp.effective_from, mp.effective_to
         FROM meter_prices mp JOIN plans p ON p.id = mp.plan_id
        ORDER BY p.created_at, p.code, mp.effective_from DESC`,
    ),
  ]);
  const byMeter = new Map<string, MeterPriceView[]>();
  for (const r of prices.rows) {
    const list = byMeter.get(r.meter_id) ?? [];
    list.push({
      id: r.id,
      planId: r.plan_id,
      planCode: r.plan_code,
      planName: r.plan_name,
      unitAmountDecimal: canonicalUnitAmount(r.unit_amount_decimal),
      perUnits: r.per_units,
      rounding: r.rounding,
      currency: r.currency.trim(),
      effectiveFrom: r.effective_from.toISOString(),
      effectiveTo: r.effective_to?.toISOString() ?? null,
    });
    byMeter.set(r.meter_id, list);
  }
  return meters.rows.map((m) => ({
    id: m.id,
    eventName: m.event_name,
    displayName: m.display_name,
    aggregation: m.aggregation,
    createdAt: m.created_at.toISOString(),
    prices: byMeter.get(m.id) ?? [],
  }));
}

export interface MissingDefinition {
  eventName: string;
  /** Events still carrying no meter. */
  events: number;
  customers: number;
  /** A few of the customers (name, else external id), alphabetical. */
  customerNames: string[];
  firstSeen: string;
  lastSeen: string;
  /** Not-yet-charged windows holding unmatched events of this name: what "replay" re-authors. */
  blockedWindows: number;
  /** Windows already charged (or past any sale) with unmatched events of this name: replay leaves them as they are. */
  chargedWindows: number;
  /** Set when a meter exists now (the events arrived while it was being added): replay alone fixes them. */
  definedMeterId: string | null;
}

/**
 * The inbox: event names of events stored with no meter, grouped. Reads through the partial index
 * `meter_events (event_name) WHERE meter_id IS NULL`, which is why every query here carries that predicate.
 */
export async function listMissingDefinitions(db: Queryable, opts: { limit?: number } = {}): Promise<MissingDefinition[]> {
  const limit = Math.min(Math.max(opts.limit ?? INBOX_LIMIT, 1), 1000);
  const { rows } = await db.query<{
    event_name: string;
    events: string;
    customers: string;
    customer_names: string[];
    first_seen: Date;
    last_seen: Date;
    meter_id: string | null;
  }>(
    `SELECT g.event_name, g.events::text AS events, g.customers::text AS customers, g.first_seen, g.last_seen, m.id AS meter_id,
            ARRAY(SELECT DISTINCT COALESCE(c.name, c.external_id) AS label
                    FROM meter_events e JOIN customers c ON c.id = e.customer_id
                   WHERE e.event_name = g.event_name AND e.meter_id IS NULL
                   ORDER BY label LIMIT ${CUSTOMER_NAMES_SHOWN}) AS customer_names
       FROM (SELECT e.event_name, count(*) AS events, count(DISTINCT e.customer_id) AS customers,
                    min(e.received_at) AS first_seen, max(e.received_at) AS last_seen
               FROM meter_events e WHERE e.meter_id IS NULL
              GROUP BY e.event_name) g
       LEFT JOIN meters m ON m.event_name = g.event_name
      ORDER BY g.last_seen DESC, g.event_name
      LIMIT ${limit}`,
  );
  if (rows.length === 0) return [];
  const windows = await blockedWindowCounts(db, rows.map((r) => r.event_name));
  return rows.map((r) => ({
    eventName: r.event_name,
    events: Number(r.events),
    customers: Number(r.customers),
    customerNames: r.customer_names,
    firstSeen: r.first_seen.toISOString(),
    lastSeen: r.last_seen.toISOString(),
    blockedWindows: windows.get(r.event_name)?.blocked ?? 0,
    chargedWindows: windows.get(r.event_name)?.charged ?? 0,
    definedMeterId: r.meter_id,
  }));
}

/** Whether a window's invoice may still change: the same rule reauthorWindow enforces (state, and no sale sent). */
const REPLAYABLE_SQL = `(w.state::text = ANY($2::text[]) AND COALESCE(a.tries, 0) = 0)`;

async function blockedWindowCounts(db: Queryable, eventNames: string[]): Promise<Map<string, { blocked: number; charged: number }>> {
  const { rows } = await db.query<{ event_name: string; blocked: string; charged: string }>(
    `SELECT x.event_name, count(*) FILTER (WHERE x.replayable)::text AS blocked, count(*) FILTER (WHERE NOT x.replayable)::text AS charged
       FROM (SELECT DISTINCT e.event_name, w.id, ${REPLAYABLE_SQL} AS replayable
               FROM meter_events e
               JOIN windows w ON w.id = e.window_id
               LEFT JOIN charge_attempts a ON a.window_id = w.id
              WHERE e.event_name = ANY($1::text[]) AND e.meter_id IS NULL AND e.status = 'unmatched' AND e.window_id IS NOT NULL) x
      GROUP BY x.event_name`,
    [eventNames, [...REAUTHOR_STATES]],
  );
  return new Map(rows.map((r) => [r.event_name, { blocked: Number(r.blocked), charged: Number(r.charged) }]));
}

// ───────────────────────────── add a definition ─────────────────────────────

const minorAmount = z
  .union([z.bigint(), z.number().int(), z.string().trim().regex(/^\d{1,19}$/, 'must be a whole number of minor units')])
  .transform((v, ctx) => {
    const n = BigInt(v);
    if (n < 0n || n > MAX_BIGINT) {
      ctx.addIssue({ code: 'custom', message: 'must be between 0 and 2^63 - 1' });
      return z.NEVER;
    }
    return n;
  });

/**
 * A unit price in minor units as Stripe's unit_amount_decimal: a decimal string (a bigint or integer is taken as a
 * whole number), at most 19 integer digits and 12 places, no sign or exponent. Comes out canonical (`'0.015'`).
 */
const unitAmountDecimal = z
  .union([z.bigint(), z.number().int(), z.string({ error: typeError('must be a decimal string') })], { error: typeError('must be a decimal string') })
  .transform((v, ctx) => {
    const text = typeof v === 'string' ? v.trim() : v.toString();
    if (!UNIT_AMOUNT_DECIMAL_PATTERN.test(text)) {
      ctx.addIssue({ code: 'custom', message: 'must be a non-negative decimal of minor units with at most 19 digits before the point and 12 after (like 0.015)' });
      return z.NEVER;
    }
    return canonicalUnitAmount(text);
  });

export const DefinitionPriceSchema = z.object({
  planId: z.uuid('must be a plan id'),
  unitAmountDecimal,
  perUnits: minorAmount.default(1n).refine((n) => n >= 1n, 'must be at least 1'),
  rounding: z.enum(ROUNDINGS, 'must be up or down').default('up'),
  currency: z
    .string()
    .trim()
    .regex(/^[A-Za-z]{3}$/, 'must be a three-letter ISO currency code')
    .transform((c) => c.toLowerCase())
    .default('usd'),
});

export const DefinitionInputSchema = z.strictObject({
  eventName: z.string({ error: typeError('must be a string') }).trim().regex(EVENT_NAME_PATTERN, 'must be 1-100 characters of a-z, 0-9, _ . : -'),
  displayName: z.string({ error: typeError('must be a string') }).trim().min(1, 'is required').max(200, 'must be at most 200 characters'),
  aggregation: z.enum(AGGREGATIONS, { error: typeError('must be sum, count, max or last') }),
  prices: z
    .array(DefinitionPriceSchema)
    .max(100, 'at most 100 prices')
    .default([])
    .refine((ps) => new Set(ps.map((p) => p.planId)).size === ps.length, 'one price per plan'),
  reason: z.string().trim().max(500, 'must be at most 500 characters').optional(),
});
export type DefinitionInput = z.input<typeof DefinitionInputSchema>;
export type ParsedDefinition = z.output<typeof DefinitionInputSchema>;

export interface AddDefinitionResult {
  meter: { id: string; eventName: string; displayName: string; aggregation: MeterAggregation };
  prices: Array<{ id: string; planId: string; unitAmountDecimal: string; perUnits: string; rounding: 'up' | 'down'; currency: string }>;
  /** Stored events of this name that had no meter and now point at it (they leave the inbox). */
  eventsAttached: number;
  /** Open windows whose frozen snapshot got this meter's price, so they bill it when they close. */
  openWindowsExtended: number;
}

/** Parses a definition; a ValidationError (nothing written) names each bad field. */
export function parseDefinition(input: unknown): ParsedDefinition {
  const parsed = DefinitionInputSchema.safeParse(input);
  if (!parsed.success) throw new ValidationError(zodFieldErrors(parsed.error));
  return parsed.data;
}

/**
 * Creates the meter and its prices (one per chosen plan, in force from `now`), attaches the events already stored
 * under its event name, and adds the price to the snapshot of every open window of those plans (ADR 010), in one
 * transaction with one audit entry. Throws ValidationError (bad input, unknown plan) or ConflictError (the meter
 * exists), with nothing written. Windows already invoiced are re-authored by replayBlockedWindows, not here.
 */
export async function addDefinition(db: pg.Pool | pg.ClientBase, input: unknown, actor: Actor, opts: { now?: Date } = {}): Promise<AddDefinitionResult> {
  const def = parseDefinition(input);
  const now = opts.now ?? new Date();
  return withClient(db, (client) =>
    inTransaction(client, async () => {
      if (def.prices.length > 0) {
        const known = await client.query<{ id: string }>(`SELECT id FROM plans WHERE id = ANY($1::uuid[])`, [def.prices.map((p) => p.planId)]);
        const found = new Set(known.rows.map((r) => r.id));
        const errors = def.prices.flatMap((p, i) => (found.has(p.planId) ? [] : [{ field: `prices.${i}.planId`, code: 'not_found', message: 'no such plan' }]));
        if (errors.length > 0) throw new ValidationError(errors);
      }
      const inserted = await client.query<{ id: string }>(
        `INSERT INTO meters (id, event_name, display_name, aggregation, created_at, updated_at)
         VALUES (gen_random_uuid(), $1, $2, $3::aggregation, $4, $4)
         ON CONFLICT (event_name) DO NOTHING RETURNING id`,
        [def.eventName, def.displayName, def.aggregation, now],
      );
      const meterId = inserted.rows[0]?.id;
      if (!meterId) {
        throw new ConflictError(`a meter for "${def.eventName}" already exists`, [
          { field: 'eventName', code: 'conflict', message: 'a meter with this event name already exists' },
        ]);
      }
      const prices = [];
      for (const p of def.prices) {
        const r = await client.query<{ id: string }>(
          `INSERT INTO meter_prices (id, plan_id, meter_id, unit_amount_decimal, per_units, rounding, currency, effective_from, created_at)
           VALUES (gen_random_uuid(), $1, $2, $3, $4, $5::rounding, $6, $7, $7) RETURNING id`,
          [p.planId, meterId, p.unitAmountDecimal, p.perUnits.toString(), p.rounding, p.currency, now],
        );
        prices.push({ id: r.rows[0]!.id, planId: p.planId, unitAmountDecimal: p.unitAmountDecimal, perUnits: p.perUnits.toString(), rounding: p.rounding, currency: p.currency });
      }
      // Few rows by nature (an unknown event name is noticed quickly), and the partial index finds exactly them.
      const attached = await client.query(`UPDATE meter_events SET meter_id = $2 WHERE event_name = $1 AND meter_id IS NULL`, [def.eventName, meterId]);
      const openWindowsExtended = await extendOpenSnapshots(client, {
        meterId,
        eventName: def.eventName,
        displayName: def.displayName,
        aggregation: def.aggregation,
        prices,
        now,
      });
      const result: AddDefinitionResult = {
        meter: { id: meterId, eventName: def.eventName, displayName: def.displayName, aggregation: def.aggregation },
        prices,
        eventsAttached: attached.rowCount ?? 0,
        openWindowsExtended,
      };
      await writeAudit(client, {
        actor,
        action: 'meter.create',
        subjectType: 'meter',
        subjectId: meterId,
        reason: def.reason || null,
        before: null,
        after: {
          event_name: def.eventName,
          display_name: def.displayName,
          aggregation: def.aggregation,
          prices: prices.map((p) => ({ plan_id: p.planId, unit_amount_decimal: p.unitAmountDecimal, per_units: p.perUnits, rounding: p.rounding, currency: p.currency })),
          events_attached: result.eventsAttached,
          open_windows_extended: openWindowsExtended,
        },
      });
      return result;
    }),
  );
}

/**
 * An open window froze its prices when it opened, so without this its events of the new name would close as
 * unmatched. Only the new meter's price is added (the snapshot's other prices stay frozen), in the window's own
 * currency; windows are locked one at a time in id order, never the subscription, so closers cannot deadlock with us
 * (a window that closes meanwhile is no longer `open` here and is re-authored by the replay instead).
 */
async function extendOpenSnapshots(
  db: Queryable,
  meter: { meterId: string; eventName: string; displayName: string; aggregation: MeterAggregation; prices: AddDefinitionResult['prices']; now: Date },
): Promise<number> {
  if (meter.prices.length === 0) return 0;
  const { rows } = await db.query<{ id: string; plan_id: string; currency: string; price_snapshot: unknown }>(
    `SELECT w.id, s.plan_id, w.currency, w.price_snapshot
       FROM windows w JOIN subscriptions s ON s.id = w.subscription_id
      WHERE w.state = 'open' AND s.plan_id = ANY($1::uuid[])
      ORDER BY w.id
      FOR NO KEY UPDATE OF w`,
    [meter.prices.map((p) => p.planId)],
  );
  let extended = 0;
  for (const w of rows) {
    const price = meter.prices.find((p) => p.planId === w.plan_id && p.currency === w.currency.trim().toLowerCase());
    if (!price) continue;
    const snapshot = fromStoredSnapshot(w.price_snapshot);
    if (snapshot.some((p) => p.eventName === meter.eventName)) continue;
    const added: SnapshotPrice = {
      meterId: meter.meterId,
      eventName: meter.eventName,
      displayName: meter.displayName,
      aggregation: meter.aggregation,
      unitAmountDecimal: price.unitAmountDecimal,
      perUnits: BigInt(price.perUnits),
      rounding: price.rounding,
      currency: price.currency,
      meterPriceId: price.id,
    };
    const next = [...snapshot, added].sort((a, b) => a.eventName.localeCompare(b.eventName));
    const r = await db.query(`UPDATE windows SET price_snapshot = $2::jsonb, updated_at = $3 WHERE id = $1 AND state = 'open'`, [
      w.id,
      JSON.stringify(toStoredSnapshot(next)),
      meter.now,
    ]);
    extended += r.rowCount ?? 0;
  }
  return extended;
}

// ───────────────────────────── replay ─────────────────────────────

export interface ReplayResult {
  eventName: string;
  /** Stragglers: events of this name stored with no meter after it was added (attached now). */
  eventsAttached: number;
  reauthored: Array<{ windowId: string; revision: number; totalMinor: string; currency: string; stillUnmatched: number }>;
  /** Windows that could not be re-authored (charged meanwhile, or gone), with the domain's reason. */
  skipped: Array<{ windowId: string; reason: string }>;
  /** Windows with unmatched events of this name that were already charged: never touched. */
  chargedWindows: number;
  /** Missing-definition ops events resolved because their window has no unmatched event left. */
  opsEventsResolved: number;
}

/**
 * Re-authors every not-yet-charged window holding unmatched events of `eventName` (each in its own transaction,
 * audited as `window.reauthor` by reauthorWindow), after attaching any event of that name still without a meter.
 * A window whose unmatched events are all billed now gets its `metered_missing_definition` ops event resolved.
 * Charged windows are counted, never touched. Throws NotFoundError when no meter defines the event name.
 */
export async function replayBlockedWindows(
  pool: pg.Pool,
  input: { eventName: string; actor: Actor; reason?: string | null; now?: Date },
): Promise<ReplayResult> {
  const meter = await pool.query<{ id: string }>(`SELECT id FROM meters WHERE event_name = $1`, [input.eventName]);
  const meterId = meter.rows[0]?.id;
  if (!meterId) throw new NotFoundError('meter', input.eventName);
  // Attaching events changes the ledger: it commits with its audit entry (the re-authored windows write their own).
  const eventsAttached = await withClient(pool, (client) =>
    inTransaction(client, async () => {
      const attached = await client.query(`UPDATE meter_events SET meter_id = $2 WHERE event_name = $1 AND meter_id IS NULL`, [input.eventName, meterId]);
      const count = attached.rowCount ?? 0;
      if (count > 0) {
        await writeAudit(client, {
          actor: input.actor,
          action: 'meter.replay',
          subjectType: 'meter',
          subjectId: meterId,
          reason: input.reason?.trim() || null,
          after: { event_name: input.eventName, events_attached: count },
        });
      }
      return count;
    }),
  );
  const { rows } = await pool.query<{ id: string; replayable: boolean }>(
    `SELECT DISTINCT w.id, ${REPLAYABLE_SQL} AS replayable, w.period_start
       FROM meter_events e
       JOIN windows w ON w.id = e.window_id
       LEFT JOIN charge_attempts a ON a.window_id = w.id
      WHERE e.event_name = $1 AND e.status = 'unmatched' AND e.window_id IS NOT NULL
      ORDER BY w.period_start, w.id`,
    [input.eventName, [...REAUTHOR_STATES]],
  );
  const result: ReplayResult = {
    eventName: input.eventName,
    eventsAttached,
    reauthored: [],
    skipped: [],
    chargedWindows: rows.filter((r) => !r.replayable).length,
    opsEventsResolved: 0,
  };
  const reason = [`definition added: ${input.eventName}`, input.reason?.trim()].filter(Boolean).join(' — ');
  for (const w of rows.filter((r) => r.replayable)) {
    try {
      const r = await reauthorWindow(pool, { windowId: w.id, actor: input.actor, reason, now: input.now });
      result.reauthored.push({
        windowId: w.id,
        revision: r.invoice.revision,
        totalMinor: r.invoice.totalMinor.toString(),
        currency: r.invoice.currency.trim(),
        stillUnmatched: r.invoice.unmatched,
      });
      if (r.invoice.unmatched === 0) result.opsEventsResolved += await resolveMissingDefinition(pool, w.id, input.actor, input.now);
    } catch (error) {
      // Charged (or closed for good) between the listing and the lock: the domain refused, which is the point.
      if (error instanceof StateError || error instanceof NotFoundError) result.skipped.push({ windowId: w.id, reason: error.message });
      else throw error;
    }
  }
  return result;
}

async function resolveMissingDefinition(db: Queryable, windowId: string, actor: Actor, now = new Date()): Promise<number> {
  const r = await db.query(
    `UPDATE ops_events SET resolved_at = $3, resolved_by = $2
      WHERE dedupe_key = $1 AND resolved_at IS NULL`,
    [`metered_missing_definition:${windowId}`, actor.userId, now],
  );
  return r.rowCount ?? 0;
}

/** The desk's one action: add the definition, then replay what it blocked. */
export async function addDefinitionAndReplay(
  pool: pg.Pool,
  input: unknown,
  actor: Actor,
  opts: { now?: Date } = {},
): Promise<{ definition: AddDefinitionResult; replay: ReplayResult }> {
  const definition = await addDefinition(pool, input, actor, opts);
  const reason = typeof (input as { reason?: unknown } | null)?.reason === 'string' ? (input as { reason: string }).reason : null;
  const replay = await replayBlockedWindows(pool, { eventName: definition.meter.eventName, actor, reason, now: opts.now });
  return { definition, replay };
}
