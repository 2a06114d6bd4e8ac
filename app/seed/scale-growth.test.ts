// Growing a scale seed (the `npm run bench -- scale` fill) at a tiny scale: exact totals, UUIDv7 ids whose timestamp
// is received_at's millisecond (what app/billing/ids.ts reads back, and what a table partitioned by received month
// routes on), history in its range, and every reference the grown rows make pointing at the right row.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { uuidv7Time } from '../billing/ids';
import { createPool, createPrisma, type PrismaClient } from '../db/clients';
import { createTestDatabase, type TestDatabase } from '../../test/support/database';
import { seedBase } from './base';
import { seedScale } from './scale';
import { HISTORY_FROM_DAYS, HISTORY_TO_DAYS, growScale, type GrowResult } from './scale-growth';
import { eventIdSql } from './scale-sql';

const DAY = 86_400_000;
const now = new Date('2026-11-20T12:00:00Z');

let db: TestDatabase;
let pool: pg.Pool;
let prisma: PrismaClient;
let grown: GrowResult;
/** The single value of a one-row, one-column query. */
const count = async (sql: string, params: unknown[] = []) => Number(Object.values((await pool.query(sql, params)).rows[0] as object)[0]);

beforeAll(async () => {
  db = await createTestDatabase();
  pool = createPool(db.connectionString, 4);
  prisma = createPrisma(db.connectionString);
  await seedBase(prisma);
  await seedScale(pool, { events: 2000, windows: 200, now });
  // Chunks smaller than the step, so several transactions write it.
  grown = await growScale(pool, { events: 6000, windows: 600, now, chunk: 1500 });
}, 120_000);

afterAll(async () => {
  await prisma?.$disconnect();
  await pool?.end();
  await db?.drop();
});

describe('eventIdSql', () => {
  it('builds a version 7, variant 10 UUID whose timestamp is the millisecond given', async () => {
    const times = ['1970-01-01T00:00:00.001Z', '2026-02-28T23:59:59.999Z', '2024-06-01T12:34:56.789Z', '8000-01-01T00:00:00.000Z'];
    for (const [i, t] of times.entries()) {
      const { rows } = await pool.query<{ id: string }>(`SELECT ${eventIdSql('$1::timestamptz', '$2::bigint')}::text AS id`, [t, i * 1_000_003]);
      const id = rows[0]!.id;
      expect(uuidv7Time(id)).toBe(Date.parse(t));
      expect(id[14]).toBe('7');
      expect(id[19]).toBe('8');
    }
  });
});

describe('growScale', () => {
  it('reaches the totals asked for, and a second call adds nothing', async () => {
    expect(grown).toMatchObject({ addedEvents: 4000, addedWindows: 400 });
    expect(await count(`SELECT count(*) FROM meter_events`)).toBe(6000);
    expect(await count(`SELECT count(*) FROM windows`)).toBe(600);
    expect(await count(`SELECT count(DISTINCT identifier) FROM meter_events WHERE identifier LIKE 'scale-%'`)).toBe(6000);
    const again = await growScale(pool, { events: 6000, windows: 600, now });
    expect(again).toMatchObject({ addedEvents: 0, addedWindows: 0 });
  });

  it('gives every event an id whose UUIDv7 timestamp is its received_at millisecond', async () => {
    const { rows } = await pool.query<{ id: string; ms: string }>(`SELECT id::text, (extract(epoch FROM received_at) * 1000)::bigint::text AS ms FROM meter_events`);
    expect(rows).toHaveLength(6000);
    const wrong = rows.filter((r) => uuidv7Time(r.id) !== Number(r.ms));
    expect(wrong).toEqual([]);
  });

  it('writes history received between 24 months and 60 days ago, in time order, with the seed mix of statuses', async () => {
    const { rows } = await pool.query<{ lo: Date; hi: Date; inversions: string }>(
      `SELECT min(received_at) AS lo, max(received_at) AS hi,
              count(*) FILTER (WHERE received_at < prev)::text AS inversions
         FROM (SELECT received_at, lag(received_at) OVER (ORDER BY identifier) AS prev FROM meter_events WHERE identifier >= 'scale-000002000') h`,
    );
    expect(rows[0]!.lo.getTime()).toBeGreaterThanOrEqual(now.getTime() - HISTORY_FROM_DAYS * DAY);
    expect(rows[0]!.hi.getTime()).toBeLessThan(now.getTime() - HISTORY_TO_DAYS * DAY);
    expect(Number(rows[0]!.inversions)).toBe(0);
    const statuses = await pool.query<{ processor: string; status: string }>(
      `SELECT DISTINCT processor::text, status::text FROM meter_events WHERE identifier >= 'scale-000002000' ORDER BY 1, 2`,
    );
    expect(statuses.rows).toEqual([
      { processor: 'braintree', status: 'matched' },
      { processor: 'braintree', status: 'unmatched' },
      { processor: 'stripe', status: 'failed' },
      { processor: 'stripe', status: 'reported' },
    ]);
    expect(await count(`SELECT count(*) FROM meter_events WHERE status = 'failed' AND (last_error_code IS NULL OR last_error_message IS NULL)`)).toBe(0);
  });

  it('puts every billed history event in the window of its period, on that window\'s line for its meter', async () => {
    // The references exist (the fill skips per-row foreign-key checks) and agree with each other.
    expect(await count(`SELECT count(*) FROM meter_events e WHERE e.window_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM windows w WHERE w.id = e.window_id)`)).toBe(0);
    expect(
      await count(`SELECT count(*) FROM meter_events e JOIN windows w ON w.id = e.window_id
                    WHERE e.subscription_id <> w.subscription_id OR e.occurred_at < w.period_start OR e.occurred_at >= w.period_end`),
    ).toBe(0);
    expect(
      await count(`SELECT count(*) FROM meter_events e WHERE e.invoice_line_id IS NOT NULL AND NOT EXISTS (
                     SELECT 1 FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id
                      WHERE l.id = e.invoice_line_id AND i.window_id = e.window_id AND l.event_name = e.event_name)`),
    ).toBe(0);
    expect(await count(`SELECT count(*) FROM meter_events WHERE identifier >= 'scale-000002000' AND status = 'matched' AND event_name = 'ai_tokens' AND invoice_line_id IS NULL`)).toBe(0);
    expect(await count(`SELECT count(*) FROM meter_events WHERE identifier >= 'scale-000002000' AND invoice_line_id IS NOT NULL`)).toBeGreaterThan(0);
  });

  it('authors the grown windows as the seed does: an invoice per past window whose total is the sum of its lines', async () => {
    expect(
      await count(`SELECT count(*) FROM invoices i WHERE i.total_minor <> coalesce((SELECT sum(amount_minor) FROM invoice_lines l WHERE l.invoice_id = i.id), 0)`),
    ).toBe(0);
    expect(await count(`SELECT count(*) FROM windows w WHERE w.state <> 'open' AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.window_id = w.id)`)).toBe(0);
    expect(await count(`SELECT count(DISTINCT (subscription_id, period_start)) FROM windows`)).toBe(600);
  });
});
