// A real app for integration tests: a fresh migrated database, the services, and the HTTP server on a free port.
import { createApiKey } from '../../app/billing/access/api-keys';
import { seedBase } from '../../app/seed/base';
import { createApiHandler } from '../../app/api/handler';
import { createHealth } from '../../app/server/health';
import { startHttpServer } from '../../app/server/http';
import { createServices, type Services } from '../../app/server/services';
import type { LedgerOptions } from '../../app/billing/ledger/ledger';
import { createTestDatabase } from './database';

export interface TestApp {
  url: string;
  apiKey: string;
  services: Services;
  connectionString: string;
  post(path: string, body: unknown, init?: { headers?: Record<string, string>; raw?: string }): Promise<Response>;
  get(path: string): Promise<Response>;
  count(sql: string, params?: unknown[]): Promise<number>;
  close(): Promise<void>;
}

export async function startTestApp(options: { ledger?: Omit<LedgerOptions, 'pool'> } = {}): Promise<TestApp> {
  const db = await createTestDatabase();
  const services = createServices({ connectionString: db.connectionString, ledger: options.ledger });
  await seedBase(services.prisma);
  const { key } = await createApiKey(services.prisma, { name: 'test' });
  const health = createHealth({ connectionString: db.connectionString });
  const http = await startHttpServer({ port: 0, handlers: [health.handler, createApiHandler(services)] });
  const auth = { authorization: `Bearer ${key}` };
  return {
    url: http.url,
    apiKey: key,
    services,
    connectionString: db.connectionString,
    post: (path, body, init = {}) =>
      fetch(http.url + path, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...auth, ...init.headers },
        body: init.raw ?? JSON.stringify(body),
      }),
    get: (path) => fetch(http.url + path, { headers: auth }),
    count: async (sql, params = []) => Number((await services.pool.query(sql, params)).rows[0].count),
    async close() {
      await http.close();
      await health.close();
      await services.close();
      await db.drop();
    },
  };
}

/** A Stripe and a Braintree customer with one active subscription each, and one with two. */
export async function seedCustomers(app: TestApp, now = new Date()) {
  const start = new Date(now.getTime() - 5 * 86_400_000).toISOString();
  const end = new Date(now.getTime() + 25 * 86_400_000).toISOString();
  const customers = [
    { external_id: 'acme', processor: 'stripe', processor_customer_id: 'cus_acme', email: 'a@acme.test' },
    { external_id: 'umbrella', processor: 'braintree', processor_customer_id: 'bt_umbrella' },
    { external_id: 'twosubs', processor: 'stripe', processor_customer_id: 'cus_twosubs' },
    { external_id: 'nosub_bt', processor: 'braintree', processor_customer_id: 'bt_nosub' },
  ];
  for (const c of customers) {
    const r = await app.post('/api/v1/customers', c);
    if (r.status !== 201) throw new Error(`seed customer ${c.external_id}: ${r.status} ${await r.text()}`);
  }
  const subs = [
    { customer: 'acme', plan: 'business', processor_subscription_id: 'sub_acme' },
    { customer: 'umbrella', plan: 'essential', processor_subscription_id: 'bt_sub_umbrella' },
    { customer: 'twosubs', plan: 'essential', processor_subscription_id: 'sub_two_a' },
    { customer: 'twosubs', plan: 'enterprise', processor_subscription_id: 'sub_two_b' },
  ];
  for (const s of subs) {
    const r = await app.post('/api/v1/subscriptions', { ...s, current_period_start: start, current_period_end: end });
    if (r.status !== 201) throw new Error(`seed subscription ${s.processor_subscription_id}: ${r.status} ${await r.text()}`);
  }
}
