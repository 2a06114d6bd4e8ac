// The ledger remembers what it looked up about a customer (ADR 016). Nothing remembered may ever decide an event
// differently from a fresh lookup: each case below warms the memory, changes the customer behind the ledger's back
// (through the API or straight in SQL, as another process would), and checks the next event is decided on the new
// facts, and that the memory is really used while nothing changes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ledger } from '../app/billing/ledger/ledger';
import { startTestApp, type TestApp } from './support/app';

let app: TestApp;
let n = 0;
const period = () => ({ current_period_start: new Date(Date.now() - 86_400_000).toISOString(), current_period_end: new Date(Date.now() + 20 * 86_400_000).toISOString() });

beforeAll(async () => {
  app = await startTestApp();
});
afterAll(() => app?.close());

async function customer(processor: 'stripe' | 'braintree' = 'stripe', subscriptions = 1) {
  const ext = `lookup-${++n}`;
  const r = await app.post('/api/v1/customers', { external_id: ext, processor, processor_customer_id: `${processor === 'stripe' ? 'cus' : 'bt'}_${ext}` });
  expect(r.status).toBe(201);
  for (let i = 0; i < subscriptions; i++) await subscribe(ext, `sub_${ext}_${i}`);
  return ext;
}

async function subscribe(ext: string, id: string) {
  const r = await app.post('/api/v1/subscriptions', { customer: ext, plan: 'essential', processor_subscription_id: id, ...period() });
  expect(r.status).toBe(201);
  return id;
}

async function subscriptionOf(eventId: string) {
  const { rows } = await app.services.pool.query<{ processor_subscription_id: string | null }>(
    `SELECT s.processor_subscription_id FROM meter_events e LEFT JOIN subscriptions s ON s.id = e.subscription_id WHERE e.id = $1`,
    [eventId],
  );
  return rows[0]!.processor_subscription_id;
}

/** A ledger of its own (its own memory), on the app's database, counting its lookup queries. */
function countingLedger() {
  const counter = { lookups: 0 };
  const real = app.services.pool;
  const query = real.query.bind(real);
  const pool = new Proxy(real, {
    get(target, prop, receiver) {
      if (prop !== 'query') return Reflect.get(target, prop, receiver);
      return (config: unknown, ...rest: unknown[]) => {
        if (typeof config === 'object' && config !== null && (config as { name?: string }).name === 'meterdesk_ledger_lookup') counter.lookups++;
        return (query as (...a: unknown[]) => unknown)(config, ...rest);
      };
    },
  });
  return { ledger: new Ledger({ pool }), counter };
}

describe('remembered customer lookups', () => {
  it('are used while nothing changes: one lookup for many commits', async () => {
    const ext = await customer();
    const { ledger, counter } = countingLedger();
    for (let i = 0; i < 5; i++) await ledger.reportUsage(ext, 'ai_tokens', { identifier: `${ext}-${i}` });
    expect(counter.lookups).toBe(1);
  });

  it('a second live subscription makes the next event without one a refusal, not the first subscription’s', async () => {
    const ext = await customer();
    const { ledger } = countingLedger();
    const first = await ledger.reportUsage(ext, 'ai_tokens', { identifier: `${ext}-a` });
    expect(await subscriptionOf(first.event.id)).toBe(`sub_${ext}_0`);
    await subscribe(ext, `sub_${ext}_new`);
    await expect(ledger.reportUsage(ext, 'ai_tokens', { identifier: `${ext}-b` })).rejects.toThrow(/subscription/);
    expect(await app.count(`SELECT count(*) FROM meter_events WHERE identifier = $1`, [`${ext}-b`])).toBe(0);
    // And naming the new one works at once.
    const named = await ledger.reportUsage(ext, 'ai_tokens', { identifier: `${ext}-c`, subscription: `sub_${ext}_new` });
    expect(await subscriptionOf(named.event.id)).toBe(`sub_${ext}_new`);
  });

  it('a refusal that rested on remembered facts is checked too: after one of two subscriptions ends, the event is accepted', async () => {
    const ext = await customer('stripe', 2);
    const { ledger } = countingLedger();
    await expect(ledger.reportUsage(ext, 'ai_tokens', { identifier: `${ext}-a` })).rejects.toThrow(/subscription/);
    await app.services.pool.query(`UPDATE subscriptions SET status = 'canceled' WHERE processor_subscription_id = $1`, [`sub_${ext}_0`]);
    const accepted = await ledger.reportUsage(ext, 'ai_tokens', { identifier: `${ext}-b` });
    expect(await subscriptionOf(accepted.event.id)).toBe(`sub_${ext}_1`);
  });

  it('a subscription that ends is no longer billed; a Braintree customer left without one is refused', async () => {
    const ext = await customer('braintree');
    const { ledger } = countingLedger();
    await ledger.reportUsage(ext, 'ai_tokens', { identifier: `${ext}-a` });
    await app.services.pool.query(`UPDATE subscriptions SET status = 'canceled' WHERE processor_subscription_id = $1`, [`sub_${ext}_0`]);
    await expect(ledger.reportUsage(ext, 'ai_tokens', { identifier: `${ext}-b` })).rejects.toThrow(/no active subscription/);
  });

  it('a renamed customer is found by its new external id only', async () => {
    const ext = await customer();
    const { ledger } = countingLedger();
    await ledger.reportUsage(ext, 'ai_tokens', { identifier: `${ext}-a` });
    await app.services.pool.query(`UPDATE customers SET external_id = $2 WHERE external_id = $1`, [ext, `${ext}-renamed`]);
    await expect(ledger.reportUsage(ext, 'ai_tokens', { identifier: `${ext}-b` })).rejects.toThrow(/customer/);
    await expect(ledger.reportUsage(`${ext}-renamed`, 'ai_tokens', { identifier: `${ext}-c` })).resolves.toMatchObject({ duplicate: false });
  });

  it('a customer moved to another processor is billed there from the next event', async () => {
    const ext = await customer();
    const { ledger } = countingLedger();
    expect((await ledger.reportUsage(ext, 'ai_tokens', { identifier: `${ext}-a` })).event.processor).toBe('stripe');
    await app.services.pool.query(`UPDATE customers SET processor = 'braintree' WHERE external_id = $1`, [ext]);
    const moved = await ledger.reportUsage(ext, 'ai_tokens', { identifier: `${ext}-b` });
    expect(moved.event).toMatchObject({ processor: 'braintree', status: 'recorded' });
  });

  it('a meter defined after the first lookup applies to the next event at once', async () => {
    const ext = await customer();
    const { ledger } = countingLedger();
    const name = `late_meter_${n}`;
    expect((await ledger.reportUsage(ext, name, { identifier: `${ext}-a` })).event.meterId).toBeNull();
    const { rows } = await app.services.pool.query<{ id: string }>(
      `INSERT INTO meters (id, event_name, display_name, aggregation, created_at, updated_at) VALUES (gen_random_uuid(), $1, $1, 'sum', now(), now()) RETURNING id`,
      [name],
    );
    expect((await ledger.reportUsage(ext, name, { identifier: `${ext}-b` })).event.meterId).toBe(rows[0]!.id);
  });

  it('a customer named by its processor id is looked up every time (a later customer with that external id wins)', async () => {
    const ext = await customer();
    const { ledger, counter } = countingLedger();
    const byProcessorId = await ledger.reportUsage(`cus_${ext}`, 'ai_tokens', { identifier: `${ext}-a` });
    const other = `cus_${ext}`;
    expect((await app.post('/api/v1/customers', { external_id: other, processor: 'stripe', processor_customer_id: `cus_other_${ext}` })).status).toBe(201);
    await subscribe(other, `sub_other_${ext}`);
    const next = await ledger.reportUsage(`cus_${ext}`, 'ai_tokens', { identifier: `${ext}-b` });
    expect(next.event.customerId).not.toBe(byProcessorId.event.customerId);
    expect(counter.lookups).toBe(2);
  });

  it('under concurrent commits and subscription changes, every event lands in a subscription that was its customer’s only live one', async () => {
    const ext = await customer('stripe', 1);
    const { ledger } = countingLedger();
    const ids: string[] = [];
    let flips = 0;
    await subscribe(ext, `sub_${ext}_1`);
    await app.services.pool.query(`UPDATE subscriptions SET status = 'canceled' WHERE processor_subscription_id = $1`, [`sub_${ext}_1`]);
    const flipper = (async () => {
      // Alternates between "sub 0 live" and "sub 1 live", never both, never neither.
      for (let i = 0; i < 20; i++, flips++) {
        const [live, dead] = i % 2 === 0 ? [1, 0] : [0, 1];
        await app.services.pool.query(
          `UPDATE subscriptions SET status = CASE WHEN processor_subscription_id = $1 THEN 'active'::subscription_status ELSE 'canceled'::subscription_status END
           WHERE processor_subscription_id = ANY($2::text[])`,
          [`sub_${ext}_${live}`, [`sub_${ext}_${live}`, `sub_${ext}_${dead}`]],
        );
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    await Promise.all(
      Array.from({ length: 8 }, async (_, w) => {
        for (let i = 0; i < 25; i++) {
          const r = await ledger.reportUsage(ext, 'ai_tokens', { identifier: `${ext}-w${w}-${i}` });
          ids.push(r.event.id);
        }
      }),
    );
    await flipper;
    expect(flips).toBe(20);
    expect(ids).toHaveLength(200);
    // Each statement flips both rows at once, so at every commit exactly one was live: no event without one.
    const { rows } = await app.services.pool.query<{ n: string }>(`SELECT count(*) AS n FROM meter_events WHERE id = ANY($1::uuid[]) AND subscription_id IS NULL`, [ids]);
    expect(Number(rows[0]!.n)).toBe(0);
  });
});
