// The TypeScript library: the same rules as the API, typed errors, nothing half-stored.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ValidationError } from '../errors';
import { seedCustomers, startTestApp, type TestApp } from '../../../test/support/app';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp({ ledger: { maxAgeMs: { braintree: 90 * 86_400_000 } } });
  await seedCustomers(app);
});
afterAll(() => app?.close());

describe('reportUsage', () => {
  it('stores an event and returns it; the same identifier again is a duplicate', async () => {
    const { event, duplicate } = await app.services.ledger.reportUsage('acme', 'ai_tokens', { value: 12, identifier: 'lib-1', properties: { model: 'm' } });
    expect(duplicate).toBe(false);
    expect(event).toMatchObject({ identifier: 'lib-1', status: 'pending', value: 12, processor: 'stripe', eventName: 'ai_tokens' });
    const again = await app.services.ledger.reportUsage('acme', 'ai_tokens', { value: 12, identifier: 'lib-1' });
    expect(again).toEqual({ event, duplicate: true });
  });

  it('throws a ValidationError naming the field and stores nothing', async () => {
    const before = await app.count('SELECT count(*) FROM meter_events');
    const error = await app.services.ledger.reportUsage('acme', 'ai_tokens', { value: -3 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).errors).toEqual([{ field: 'value', code: 'invalid', message: 'must be >= 0' }]);
    await expect(app.services.ledger.reportUsage('ghost', 'ai_tokens')).rejects.toThrow(/customer/);
    expect(await app.count('SELECT count(*) FROM meter_events')).toBe(before);
  });

  it('applies the per-processor age limit (Braintree configured to 90 days, Stripe fixed at 35)', async () => {
    const sixtyDaysAgo = new Date(Date.now() - 60 * 86_400_000);
    await expect(app.services.ledger.reportUsage('umbrella', 'ai_tokens', { timestamp: sixtyDaysAgo, identifier: 'old-bt' })).resolves.toMatchObject({ duplicate: false });
    await expect(app.services.ledger.reportUsage('acme', 'ai_tokens', { timestamp: sixtyDaysAgo, identifier: 'old-stripe' })).rejects.toBeInstanceOf(ValidationError);
  });
});

describe('reportUsageBatch', () => {
  it('returns one result per item in order and stores only the valid ones', async () => {
    const results = await app.services.ledger.reportUsageBatch([
      { customer: 'acme', eventName: 'ai_tokens', value: 1, identifier: 'lb-1' },
      { customer: 'acme', eventName: 'BAD NAME', value: 1, identifier: 'lb-2' },
      { customer: 'umbrella', eventName: 'ai_tokens', value: 2, identifier: 'lb-3' },
    ]);
    expect(results.map((r) => r.result)).toEqual(['accepted', 'rejected', 'accepted']);
    expect(await app.count(`SELECT count(*) FROM meter_events WHERE identifier IN ('lb-1','lb-2','lb-3')`)).toBe(2);
  });

  it('refuses more than 1,000 events as a whole', async () => {
    const many = Array.from({ length: 1001 }, (_, i) => ({ customer: 'acme', eventName: 'ai_tokens', identifier: `lbm-${i}` }));
    await expect(app.services.ledger.reportUsageBatch(many)).rejects.toBeInstanceOf(ValidationError);
    expect(await app.count(`SELECT count(*) FROM meter_events WHERE identifier LIKE 'lbm-%'`)).toBe(0);
  });
});

describe('the ledger references customers, subscriptions and meters that never go away', () => {
  // Those three columns carry no foreign key (ADR 009); the database refuses what would orphan them instead.
  const refused = [
    `DELETE FROM customers WHERE external_id = 'acme'`,
    `TRUNCATE customers CASCADE`,
    `UPDATE customers SET id = gen_random_uuid() WHERE external_id = 'acme'`,
    `DELETE FROM subscriptions WHERE processor_subscription_id = 'sub_acme'`,
    `TRUNCATE subscriptions CASCADE`,
    `UPDATE subscriptions SET id = gen_random_uuid() WHERE processor_subscription_id = 'sub_acme'`,
    `DELETE FROM meters WHERE event_name = 'ai_tokens'`,
    `TRUNCATE meters CASCADE`,
    `UPDATE meters SET id = gen_random_uuid() WHERE event_name = 'ai_tokens'`,
  ];
  it.each(refused)('refuses %s and changes nothing', async (sql) => {
    await app.services.ledger.reportUsage('acme', 'ai_tokens', { identifier: `orphan-guard-${refused.indexOf(sql)}` });
    const snapshot = `SELECT (SELECT count(*) FROM customers) + (SELECT count(*) FROM subscriptions) + (SELECT count(*) FROM meters) + (SELECT count(*) FROM meter_events) AS count`;
    const before = await app.count(snapshot);
    expect(before).toBeGreaterThan(0);
    const ids = await app.services.pool.query(`SELECT string_agg(id::text, ',' ORDER BY id) AS ids FROM (SELECT id FROM customers UNION ALL SELECT id FROM subscriptions UNION ALL SELECT id FROM meters) t`);
    await expect(app.services.pool.query(sql)).rejects.toMatchObject({ code: '23001', message: expect.stringMatching(/never deleted or re-keyed/) });
    expect(await app.count(snapshot)).toBe(before);
    const after = await app.services.pool.query(`SELECT string_agg(id::text, ',' ORDER BY id) AS ids FROM (SELECT id FROM customers UNION ALL SELECT id FROM subscriptions UNION ALL SELECT id FROM meters) t`);
    expect(after.rows[0].ids).toBe(ids.rows[0].ids);
  });

  it('still lets ordinary columns change (a customer renamed, a subscription renewed)', async () => {
    await app.services.pool.query(`UPDATE customers SET name = 'Acme Renamed' WHERE external_id = 'acme'`);
    await app.services.pool.query(`UPDATE subscriptions SET current_period_end = current_period_end + interval '1 day' WHERE processor_subscription_id = 'sub_acme'`);
    expect(await app.count(`SELECT count(*) FROM customers WHERE name = 'Acme Renamed'`)).toBe(1);
  });
});

describe('the report job committed with the events', () => {
  it('is an ordinary graphile-worker job naming every Stripe event of the commit, and a worker runs it', async () => {
    const pool = app.services.pool;
    await pool.query(`DELETE FROM graphile_worker._private_jobs`);
    // The first commit ever creates the task row itself (as add_job would).
    await pool.query(`DELETE FROM graphile_worker._private_tasks WHERE identifier = 'stripe__report_events'`);
    const results = await app.services.ledger.reportUsageBatch([
      { customer: 'acme', eventName: 'ai_tokens', value: 1, identifier: 'job-a' },
      { customer: 'acme', eventName: 'ai_tokens', value: 2, identifier: 'job-b' },
      { customer: 'umbrella', eventName: 'ai_tokens', value: 3, identifier: 'job-braintree' },
    ]);
    const ids = results.map((r) => (r.result === 'rejected' ? null : r.event.id));
    const { rows: jobs } = await pool.query<{ task_identifier: string; payload: { eventIds: string[] }; attempts: number; max_attempts: number; run_at: Date; key: string | null }>(
      `SELECT t.identifier AS task_identifier, j.payload, j.attempts, j.max_attempts, j.run_at, j.key
       FROM graphile_worker._private_jobs j JOIN graphile_worker._private_tasks t ON t.id = j.task_id`,
    );
    expect(jobs).toHaveLength(1);
    expect(jobs[0]).toMatchObject({ task_identifier: 'stripe__report_events', attempts: 0, max_attempts: 25, key: null, payload: { eventIds: [ids[0], ids[1]] } });
    expect(jobs[0]!.run_at.getTime()).toBeLessThanOrEqual(Date.now());
    // A second commit reuses the task row.
    const c = await app.services.ledger.reportUsage('acme', 'ai_tokens', { identifier: 'job-c' });
    expect(await app.count(`SELECT count(*) FROM graphile_worker._private_tasks WHERE identifier = 'stripe__report_events'`)).toBe(1);
    expect(await app.count(`SELECT count(*) FROM graphile_worker._private_jobs`)).toBe(2);
    // graphile-worker takes the jobs like any other: the task sees exactly the payloads written, and completes them.
    const { Logger, runOnce } = await import('graphile-worker');
    const seen: unknown[] = [];
    await runOnce({ pgPool: pool, noHandleSignals: true, logger: new Logger(() => () => {}), taskList: { stripe__report_events: async (payload) => void seen.push(payload) } });
    expect(seen).toHaveLength(2);
    expect(seen).toContainEqual({ eventIds: [ids[0], ids[1]] });
    expect(seen).toContainEqual({ eventIds: [c.event.id] });
    // Completions are batched: the finished jobs' rows may go a moment after runOnce returns.
    for (let i = 0; i < 50 && (await app.count(`SELECT count(*) FROM graphile_worker._private_jobs`)) > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await app.count(`SELECT count(*) FROM graphile_worker._private_jobs`)).toBe(0);
  });
});
