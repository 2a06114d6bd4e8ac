// The scale seed at a tiny scale: exact counts, UUIDv7 ids in received order, valid statuses per processor, and
// the billing invariants (an invoice's total is the sum of its lines; lines from the ledger aggregate exactly the
// events that name them; one charge attempt per window at the invoice's amount). A second run writes nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { createPool, createPrisma, type PrismaClient } from '../db/clients';
import { createTestDatabase, type TestDatabase } from '../../test/support/database';
import { seedBase } from './base';
import { parseScale, scaleCustomers, seedScale, type ScaleResult } from './scale';

const EVENTS = 2000;
const WINDOWS = 200;
const now = new Date('2026-11-20T12:00:00Z');

let db: TestDatabase;
let pool: pg.Pool;
let prisma: PrismaClient;
let result: ScaleResult;
const one = async <T = Record<string, unknown>>(sql: string, params: unknown[] = []) => (await pool.query(sql, params)).rows[0] as T;
const count = async (sql: string, params: unknown[] = []) => Number((await one<{ n: string }>(sql, params)).n);

beforeAll(async () => {
  db = await createTestDatabase();
  pool = createPool(db.connectionString, 4);
  prisma = createPrisma(db.connectionString);
  await seedBase(prisma);
  result = await seedScale(pool, { events: EVENTS, windows: WINDOWS, now });
}, 120_000);

afterAll(async () => {
  await prisma?.$disconnect();
  await pool?.end();
  await db?.drop();
});

describe('seedScale', () => {
  it('parses scales', () => {
    expect(parseScale('1m')).toBe(1_000_000);
    expect(parseScale('100k')).toBe(100_000);
    expect(parseScale('2500')).toBe(2500);
    expect(() => parseScale('lots')).toThrow(/--scale/);
  });

  it('writes exactly the requested events, windows and customers', async () => {
    expect(result).toMatchObject({ status: 'seeded', events: EVENTS, windows: WINDOWS, customers: scaleCustomers(EVENTS) });
    expect(await count(`SELECT count(*) AS n FROM meter_events`)).toBe(EVENTS);
    expect(await count(`SELECT count(*) AS n FROM windows`)).toBe(WINDOWS);
    expect(await count(`SELECT count(*) AS n FROM customers WHERE external_id LIKE 'scale-%'`)).toBe(scaleCustomers(EVENTS));
    expect(await count(`SELECT count(DISTINCT processor) AS n FROM customers`)).toBe(2);
    expect(await count(`SELECT count(*) AS n FROM meter_events WHERE received_at < $1::timestamptz - interval '30 days' OR received_at > $1`, [now])).toBe(0);
  });

  it('mints UUIDv7 ids from the received time, strictly increasing with it', async () => {
    expect(await count(`SELECT count(*) AS n FROM meter_events WHERE substr(id::text, 15, 1) <> '7'`)).toBe(0);
    expect(
      await count(`SELECT count(*) AS n FROM meter_events
                    WHERE ('x' || substr(replace(id::text, '-', ''), 1, 12))::bit(48)::bigint <> (extract(epoch FROM received_at) * 1000)::bigint`),
    ).toBe(0);
    expect(
      await count(`SELECT count(*) AS n FROM (SELECT id, lag(id) OVER (ORDER BY received_at, identifier) AS prev FROM meter_events) x WHERE prev >= id`),
    ).toBe(0);
  });

  it('gives each processor only its own statuses, with a realistic mix', async () => {
    const { rows } = await pool.query<{ processor: string; status: string; n: string }>(
      `SELECT processor::text, status::text, count(*) AS n FROM meter_events GROUP BY 1, 2`,
    );
    const by = (p: string) => new Set(rows.filter((r) => r.processor === p).map((r) => r.status));
    expect([...by('stripe')].every((s) => ['pending', 'reported', 'failed'].includes(s))).toBe(true);
    expect([...by('braintree')].every((s) => ['recorded', 'matched', 'unmatched', 'unusable'].includes(s))).toBe(true);
    expect(by('stripe')).toEqual(new Set(['pending', 'reported', 'failed']));
    expect(by('braintree').has('recorded') && by('braintree').has('matched')).toBe(true);
    // Failed events say why and have their attempt timeline; reported ones have no error.
    expect(await count(`SELECT count(*) AS n FROM meter_events WHERE status = 'failed' AND (last_error_code IS NULL OR attempts < 1)`)).toBe(0);
    expect(
      await count(`SELECT count(*) AS n FROM meter_events e WHERE status = 'failed' AND NOT EXISTS (SELECT 1 FROM event_attempts a WHERE a.meter_event_id = e.id)`),
    ).toBe(0);
    expect(await count(`SELECT count(*) AS n FROM meter_events WHERE status = 'reported' AND (reported_at IS NULL OR last_error_code IS NOT NULL)`)).toBe(0);
    // Some Braintree usage names no meter (the missing-definitions inbox), and it is never matched.
    expect(await count(`SELECT count(*) AS n FROM meter_events WHERE meter_id IS NULL`)).toBeGreaterThan(0);
    expect(await count(`SELECT count(*) AS n FROM meter_events WHERE meter_id IS NULL AND (status = 'matched' OR processor = 'stripe')`)).toBe(0);
    expect(await count(`SELECT count(*) AS n FROM ops_events WHERE type = 'meter_reporting_failed'`)).toBe(
      await count(`SELECT count(*) AS n FROM meter_events WHERE status = 'failed'`),
    );
  });

  it('keeps the billing invariants on windows, invoices, lines and charges', async () => {
    // Every window past its period has exactly one invoice whose total is the sum of its lines; open ones none.
    expect(
      await count(`SELECT count(*) AS n FROM windows w LEFT JOIN invoices i ON i.window_id = w.id
                    WHERE (w.state = 'open') <> (i.id IS NULL)`),
    ).toBe(0);
    expect(
      await count(`SELECT count(*) AS n FROM invoices i
                    WHERE i.total_minor <> (SELECT coalesce(sum(amount_minor), 0) FROM invoice_lines l WHERE l.invoice_id = i.id)`),
    ).toBe(0);
    expect(await count(`SELECT count(*) AS n FROM invoice_lines`)).toBeGreaterThan(WINDOWS / 2);
    // Lines priced by their own arithmetic: billed units rounded up, amount = units x unit price.
    expect(
      await count(`SELECT count(*) AS n FROM invoice_lines
                    WHERE billed_units <> (quantity + per_units - 1) / per_units OR amount_minor <> round(billed_units * unit_amount_decimal)`),
    ).toBe(0);
    // Matched events belong to their window's line, and those lines aggregate exactly them.
    expect(
      await count(`SELECT count(*) AS n FROM meter_events e JOIN invoice_lines l ON l.id = e.invoice_line_id JOIN invoices i ON i.id = l.invoice_id
                    WHERE e.status <> 'matched' OR i.window_id <> e.window_id OR l.event_name <> e.event_name`),
    ).toBe(0);
    expect(await count(`SELECT count(*) AS n FROM meter_events WHERE status = 'matched' AND invoice_line_id IS NULL`)).toBe(0);
    expect(
      await count(`SELECT count(*) AS n FROM invoice_lines l
                     JOIN (SELECT invoice_line_id, count(*) AS c, sum(value) AS v FROM meter_events WHERE invoice_line_id IS NOT NULL GROUP BY 1) e
                       ON e.invoice_line_id = l.id
                    WHERE l.event_count <> e.c OR l.quantity <> CASE WHEN l.event_name = 'api_calls' THEN e.c ELSE e.v END`),
    ).toBe(0);
    expect(await count(`SELECT count(*) AS n FROM meter_events WHERE invoice_line_id IS NOT NULL`)).toBeGreaterThan(0);
    // Charge attempts: at most one per window, for the invoice's amount, only once the window went to settlement.
    expect(
      await count(`SELECT count(*) AS n FROM charge_attempts a JOIN windows w ON w.id = a.window_id JOIN invoices i ON i.window_id = w.id
                    WHERE a.amount_minor <> i.total_minor OR w.state IN ('open', 'closed') OR a.order_id <> 'mdw-' || w.id`),
    ).toBe(0);
    expect(
      await count(`SELECT count(*) AS n FROM windows w JOIN invoices i ON i.window_id = w.id
                    WHERE i.total_minor > 0 AND w.state NOT IN ('open', 'closed') AND NOT EXISTS (SELECT 1 FROM charge_attempts a WHERE a.window_id = w.id)`),
    ).toBe(0);
    const states = await pool.query<{ state: string }>(`SELECT DISTINCT state::text AS state FROM windows`);
    expect(states.rows.map((r) => r.state)).toEqual(expect.arrayContaining(['open', 'paid']));
    expect(states.rows.length).toBeGreaterThanOrEqual(3);
  });

  it('skips a database that already holds a scale seed, writing nothing', async () => {
    const again = await seedScale(pool, { events: EVENTS, windows: WINDOWS, now });
    expect(again.status).toBe('skipped');
    expect(again.reason).toMatch(/already holds a scale seed/);
    expect(await count(`SELECT count(*) AS n FROM meter_events`)).toBe(EVENTS);
    expect(await count(`SELECT count(*) AS n FROM windows`)).toBe(WINDOWS);
  });
});
