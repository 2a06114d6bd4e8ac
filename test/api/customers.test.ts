// Customers and subscriptions through the API: created once, the same request again is 200, contradictions 409.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/app';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(() => app?.close());

const customers = () => app.count('SELECT count(*) FROM customers');
const subscriptions = () => app.count('SELECT count(*) FROM subscriptions');

describe('POST /api/v1/customers', () => {
  const acme = { external_id: 'acme', name: 'Acme', email: 'Billing@Acme.test', processor: 'stripe', processor_customer_id: 'cus_1' };

  it('creates (201), answers the same request with 200, refuses different data with 409', async () => {
    const created = await app.post('/api/v1/customers', acme);
    expect(created.status).toBe(201);
    const body = await created.json();
    expect(body).toMatchObject({ external_id: 'acme', email: 'billing@acme.test', processor: 'stripe', processor_customer_id: 'cus_1', created: true });
    const again = await app.post('/api/v1/customers', acme);
    expect(again.status).toBe(200);
    expect((await again.json()).id).toBe(body.id);
    const before = await customers();
    const conflict = await app.post('/api/v1/customers', { ...acme, name: 'Acme Ltd' });
    expect(conflict.status).toBe(409);
    expect(conflict.headers.get('content-type')).toBe('application/problem+json');
    expect((await conflict.json()).errors[0].field).toBe('name');
    const taken = await app.post('/api/v1/customers', { external_id: 'other', processor: 'stripe', processor_customer_id: 'cus_1' });
    expect(taken.status).toBe(409);
    expect(await customers()).toBe(before);
    expect((await app.services.prisma.customer.findUniqueOrThrow({ where: { externalId: 'acme' } })).name).toBe('Acme');
  });

  it('creates one customer when the same request races 10 times', async () => {
    const req = { external_id: 'racer', processor: 'braintree', processor_customer_id: 'bt_racer' };
    const statuses = (await Promise.all(Array.from({ length: 10 }, () => app.post('/api/v1/customers', req)))).map((r) => r.status).sort();
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200, 200, 200, 200, 201]);
    expect(await app.count(`SELECT count(*) FROM customers WHERE external_id = 'racer'`)).toBe(1);
  });

  it.each([
    [{ processor: 'stripe', processor_customer_id: 'x' }, 'external_id'],
    [{ external_id: 'a', processor: 'paypal', processor_customer_id: 'x' }, 'processor'],
    [{ external_id: 'a', processor: 'stripe' }, 'processor_customer_id'],
    [{ external_id: 'a', processor: 'stripe', processor_customer_id: 'x', email: 'not-an-email' }, 'email'],
    [{ external_id: 'a\u0000', processor: 'stripe', processor_customer_id: 'x' }, 'external_id'],
    [{ external_id: 'a', processor: 'stripe', processor_customer_id: 'x', admin: true }, 'admin'],
  ])('refuses %j with 422 on %s', async (body, field) => {
    const before = await customers();
    const res = await app.post('/api/v1/customers', body);
    expect(res.status).toBe(422);
    expect((await res.json()).errors.map((e: { field: string }) => e.field)).toContain(field);
    expect(await customers()).toBe(before);
  });
});

describe('POST /api/v1/subscriptions', () => {
  beforeAll(async () => {
    await app.post('/api/v1/customers', { external_id: 'subco', processor: 'braintree', processor_customer_id: 'bt_subco' });
  });
  const sub = {
    customer: 'subco',
    plan: 'business',
    processor_subscription_id: 'bt_sub_1',
    current_period_start: '2026-11-01T00:00:00Z',
    current_period_end: '2026-12-01T00:00:00Z',
  };

  it('creates (201), the same again 200, a renewal updates the period (200)', async () => {
    const created = await app.post('/api/v1/subscriptions', sub);
    expect(created.status).toBe(201);
    expect(await created.json()).toMatchObject({ customer: 'subco', plan: 'business', processor: 'braintree', status: 'active', created: true });
    const again = await app.post('/api/v1/subscriptions', sub);
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ created: false, updated: false });
    const renewed = await app.post('/api/v1/subscriptions', { ...sub, current_period_start: '2026-12-01T00:00:00Z', current_period_end: '2027-01-01T00:00:00Z' });
    expect(renewed.status).toBe(200);
    expect(await renewed.json()).toMatchObject({ updated: true, current_period_end: '2027-01-01T00:00:00.000Z' });
    expect(await app.count(`SELECT count(*) FROM subscriptions WHERE processor_subscription_id = 'bt_sub_1'`)).toBe(1);
  });

  it('refuses another customer\'s subscription id with 409', async () => {
    await app.post('/api/v1/customers', { external_id: 'intruder', processor: 'braintree', processor_customer_id: 'bt_intruder' });
    const before = await subscriptions();
    const res = await app.post('/api/v1/subscriptions', { ...sub, customer: 'intruder' });
    expect(res.status).toBe(409);
    expect(await subscriptions()).toBe(before);
  });

  it.each([
    [{ ...sub, customer: 'nobody', processor_subscription_id: 'n1' }, 'customer'],
    [{ ...sub, plan: 'platinum', processor_subscription_id: 'n2' }, 'plan'],
    [{ ...sub, current_period_end: '2026-10-01T00:00:00Z', processor_subscription_id: 'n3' }, 'current_period_end'],
    [{ ...sub, current_period_start: 'yesterday', processor_subscription_id: 'n4' }, 'current_period_start'],
    [{ ...sub, status: 'zombie', processor_subscription_id: 'n5' }, 'status'],
  ])('refuses %j with 422 on %s', async (body, field) => {
    const before = await subscriptions();
    const res = await app.post('/api/v1/subscriptions', body);
    expect(res.status).toBe(422);
    expect((await res.json()).errors.map((e: { field: string }) => e.field)).toContain(field);
    expect(await subscriptions()).toBe(before);
  });
});

describe('health and metrics', () => {
  it('/healthz is 200 while the process answers; /readyz is 200 with every check passing', async () => {
    const res = await fetch(`${app.url}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${app.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready', checks: { database: { status: 'pass' }, migrations: { status: 'pass' } } });
  });
});
