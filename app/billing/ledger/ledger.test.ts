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
