// The ingest API against a real PostgreSQL: every rule gives its 4xx and stores nothing; accepted events are
// committed (with their job) before the answer.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedCustomers, startTestApp, type TestApp } from '../support/app';

let app: TestApp;
const events = () => app.count('SELECT count(*) FROM meter_events');
const jobs = () => app.count(`SELECT count(*) FROM graphile_worker.jobs WHERE task_identifier = 'stripe__report_events'`);

beforeAll(async () => {
  app = await startTestApp();
  await seedCustomers(app);
});
afterAll(() => app?.close());

async function problem(res: Response) {
  expect(res.headers.get('content-type')).toBe('application/problem+json');
  const body = await res.json();
  expect(body).toMatchObject({ status: res.status, title: expect.any(String), type: expect.stringMatching(/^\/problems\//), detail: expect.any(String) });
  return body;
}

describe('POST /api/v1/events (one event)', () => {
  it('accepts an event with 202, commits it and its reporting job before answering', async () => {
    const [before, jobsBefore] = [await events(), await jobs()];
    const res = await app.post('/api/v1/events', { customer: 'acme', event_name: 'ai_tokens', value: 1250, identifier: 'first-1' });
    expect(res.status).toBe(202);
    const body = await res.json();
    expect(body).toEqual({ id: expect.stringMatching(/^[0-9a-f-]{36}$/), identifier: 'first-1', status: 'pending', duplicate: false });
    expect(await events()).toBe(before + 1);
    expect(await jobs()).toBe(jobsBefore + 1);
    const row = (await app.services.pool.query('SELECT value, status, subscription_id IS NOT NULL AS has_sub FROM meter_events WHERE id = $1', [body.id])).rows[0];
    expect(row).toEqual({ value: '1250', status: 'pending', has_sub: true });
  });

  it('resolves the customer by processor customer id too, and defaults value to 1', async () => {
    const res = await app.post('/api/v1/events', { customer: 'cus_acme', event_name: 'ai_tokens', identifier: 'by-proc-id' });
    expect(res.status).toBe(202);
    const stored = await (await app.get(`/api/v1/events?identifier=by-proc-id`)).json();
    expect(stored).toMatchObject({ customer: 'acme', value: 1, event_name: 'ai_tokens', processor: 'stripe' });
  });

  it('returns the stored event with duplicate: true (200) for the same identifier, storing nothing', async () => {
    const first = await (await app.post('/api/v1/events', { customer: 'acme', event_name: 'ai_tokens', value: 7, identifier: 'dup-1' })).json();
    const before = await events();
    const res = await app.post('/api/v1/events', { customer: 'acme', event_name: 'ai_tokens', value: 7, identifier: 'dup-1' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ...first, duplicate: true });
    expect(await events()).toBe(before);
  });

  it('keeps the first when a duplicate says another value, says so in the answer, and keeps what was sent', async () => {
    const first = await (await app.post('/api/v1/events', { customer: 'acme', event_name: 'ai_tokens', value: 100, identifier: 'dup-differs-1' })).json();
    const before = await events();
    const res = await app.post('/api/v1/events', { customer: 'acme', event_name: 'ai_tokens', value: 250, identifier: 'dup-differs-1' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ...first, duplicate: true, differs: ['value'], kept: { value: 100, event_name: 'ai_tokens' } });
    // The event is unchanged and nothing new is stored in the ledger; the differing duplicate is on record beside it.
    expect(await events()).toBe(before);
    expect((await app.services.pool.query('SELECT value::int AS value FROM meter_events WHERE id = $1', [first.id])).rows).toEqual([{ value: 100 }]);
    const conflicts = await app.services.pool.query('SELECT value::int AS value, event_name, differs FROM meter_event_conflicts WHERE event_id = $1', [first.id]);
    expect(conflicts.rows).toEqual([{ value: 250, event_name: 'ai_tokens', differs: 'value' }]);
    // The same again with the first value is a plain duplicate: no conflict recorded.
    const same = await app.post('/api/v1/events', { customer: 'acme', event_name: 'ai_tokens', value: 100, identifier: 'dup-differs-1' });
    expect(await same.json()).toEqual({ ...first, duplicate: true });
    expect(await app.count(`SELECT count(*) FROM meter_event_conflicts WHERE identifier = 'dup-differs-1'`)).toBe(1);
  });

  it('tells a differing duplicate inside one batch, by value and event name', async () => {
    const res = await app.post('/api/v1/events', {
      events: [
        { customer: 'acme', event_name: 'ai_tokens', value: 5, identifier: 'dup-batch-differs' },
        { customer: 'acme', event_name: 'image_renders', value: 6, identifier: 'dup-batch-differs' },
      ],
    });
    expect(res.status).toBe(200);
    const { results } = await res.json();
    expect(results[0]).toMatchObject({ result: 'accepted', duplicate: false });
    expect(results[1]).toMatchObject({ result: 'duplicate', duplicate: true, differs: ['value', 'event_name'], kept: { value: 5, event_name: 'ai_tokens' } });
    expect(await app.count(`SELECT count(*) FROM meter_event_conflicts WHERE identifier = 'dup-batch-differs'`)).toBe(1);
  });

  it('stores one row when the same identifier is sent 20 times concurrently', async () => {
    const responses = await Promise.all(
      Array.from({ length: 20 }, () => app.post('/api/v1/events', { customer: 'acme', event_name: 'ai_tokens', value: 3, identifier: 'race-1' })),
    );
    const bodies = await Promise.all(responses.map((r) => r.json()));
    expect(responses.filter((r) => r.status === 202)).toHaveLength(1);
    expect(responses.filter((r) => r.status === 200)).toHaveLength(19);
    expect(new Set(bodies.map((b) => b.id)).size).toBe(1);
    expect(await app.count(`SELECT count(*) FROM meter_events WHERE identifier = 'race-1'`)).toBe(1);
  });

  it('derives distinct identifiers when none is given', async () => {
    const bodies = await Promise.all(
      Array.from({ length: 50 }, async () => (await app.post('/api/v1/events', { customer: 'acme', event_name: 'ai_tokens' })).json()),
    );
    const identifiers = new Set(bodies.map((b) => b.identifier));
    expect(identifiers.size).toBe(50);
    for (const id of identifiers) expect(id).toMatch(/^md_[0-9a-f-]{36}$/);
  });

  it('keeps an event with no meter definition, flagged as missing one', async () => {
    const res = await app.post('/api/v1/events', { customer: 'acme', event_name: 'image_renders', value: 2, identifier: 'nometer-1' });
    expect(res.status).toBe(202);
    const stored = await (await app.get('/api/v1/events?identifier=nometer-1')).json();
    expect(stored).toMatchObject({ missing_definition: true, status: 'pending' });
  });

  it('records Braintree usage in the ledger only (status recorded, no reporting job)', async () => {
    const jobsBefore = await jobs();
    const res = await app.post('/api/v1/events', { customer: 'umbrella', event_name: 'ai_tokens', value: 10, identifier: 'bt-1' });
    expect(res.status).toBe(202);
    expect((await res.json()).status).toBe('recorded');
    expect(await jobs()).toBe(jobsBefore);
  });

  it('accepts an explicit subscription for a customer with several', async () => {
    const res = await app.post('/api/v1/events', { customer: 'twosubs', event_name: 'ai_tokens', subscription: 'sub_two_b', identifier: 'two-b' });
    expect(res.status).toBe(202);
    expect((await (await app.get('/api/v1/events?identifier=two-b')).json()).subscription).toBe('sub_two_b');
  });

  const now = Date.now();
  const rules: Array<[string, Record<string, unknown>, string]> = [
    ['unknown customer', { customer: 'nobody', event_name: 'ai_tokens' }, 'customer'],
    ['missing customer', { event_name: 'ai_tokens' }, 'customer'],
    ['missing event name', { customer: 'acme' }, 'event_name'],
    ['event name with capitals', { customer: 'acme', event_name: 'AI_Tokens' }, 'event_name'],
    ['event name over 100 chars', { customer: 'acme', event_name: 'a'.repeat(101) }, 'event_name'],
    ['negative value', { customer: 'acme', event_name: 'ai_tokens', value: -1 }, 'value'],
    ['fractional value', { customer: 'acme', event_name: 'ai_tokens', value: 1.5 }, 'value'],
    ['value above 2^53-1', { customer: 'acme', event_name: 'ai_tokens', value: 2 ** 53 }, 'value'],
    ['value as words', { customer: 'acme', event_name: 'ai_tokens', value: 'ten' }, 'value'],
    ['identifier over 100 chars', { customer: 'acme', event_name: 'ai_tokens', identifier: 'x'.repeat(101) }, 'identifier'],
    ['empty identifier', { customer: 'acme', event_name: 'ai_tokens', identifier: '' }, 'identifier'],
    ['identifier with a NUL', { customer: 'acme', event_name: 'ai_tokens', identifier: 'a\u0000b' }, 'identifier'],
    ['timestamp 36 days old', { customer: 'acme', event_name: 'ai_tokens', timestamp: Math.floor((now - 36 * 86_400_000) / 1000) }, 'timestamp'],
    ['timestamp 10 minutes ahead', { customer: 'acme', event_name: 'ai_tokens', timestamp: new Date(now + 600_000).toISOString() }, 'timestamp'],
    ['timestamp without a zone', { customer: 'acme', event_name: 'ai_tokens', timestamp: '2026-11-01T10:00:00' }, 'timestamp'],
    ['ambiguous subscription', { customer: 'twosubs', event_name: 'ai_tokens' }, 'subscription'],
    ['another customer\'s subscription', { customer: 'acme', event_name: 'ai_tokens', subscription: 'sub_two_a' }, 'subscription'],
    ['Braintree customer without a subscription', { customer: 'nosub_bt', event_name: 'ai_tokens' }, 'subscription'],
    ['properties not an object', { customer: 'acme', event_name: 'ai_tokens', properties: [1, 2] }, 'properties'],
    ['properties with a NUL', { customer: 'acme', event_name: 'ai_tokens', properties: { a: 'x\u0000' } }, 'properties'],
    ['unknown field', { customer: 'acme', event_name: 'ai_tokens', amount: 3 }, 'amount'],
  ];
  it.each(rules)('refuses %s with 422 naming the field, storing nothing', async (_name, body, field) => {
    const before = await events();
    const res = await app.post('/api/v1/events', { identifier: `bad-${Math.random()}`, ...body });
    expect(res.status).toBe(422);
    const p = await problem(res);
    expect(p.errors.map((e: { field: string }) => e.field)).toContain(field);
    expect(await events()).toBe(before);
  });

  it('refuses a body that is not JSON (400), not declared JSON (415), or over 1 MiB (413)', async () => {
    const before = await events();
    expect((await app.post('/api/v1/events', null, { raw: '{"customer": ' })).status).toBe(400);
    const r415 = await app.post('/api/v1/events', null, { raw: 'customer=acme', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(r415.status).toBe(415);
    await problem(r415);
    const big = { customer: 'acme', event_name: 'ai_tokens', properties: { blob: 'x'.repeat(1024 * 1024 + 10) } };
    const r413 = await app.post('/api/v1/events', big);
    expect(r413.status).toBe(413);
    await problem(r413);
    for (const raw of ['null', '[]', '"text"', '42']) expect((await app.post('/api/v1/events', null, { raw })).status).toBe(422);
    expect(await events()).toBe(before);
  });

  it('answers 401 without a key, with a wrong key, and with a revoked key', async () => {
    const before = await events();
    const body = JSON.stringify({ customer: 'acme', event_name: 'ai_tokens' });
    const none = await fetch(`${app.url}/api/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(none.status).toBe(401);
    await problem(none);
    const wrong = await fetch(`${app.url}/api/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer md_wrongwrongwrongwrongwrongwrong' }, body });
    expect(wrong.status).toBe(401);
    const basic = await fetch(`${app.url}/api/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Basic ${btoa('a:b')}` }, body });
    expect(basic.status).toBe(401);
    expect((await fetch(`${app.url}/api/v1/events?identifier=first-1`)).status).toBe(401);
    const { createApiKey } = await import('../../app/billing/access/api-keys');
    const { key, apiKey } = await createApiKey(app.services.prisma, { name: 'to revoke' });
    await app.services.prisma.apiKey.update({ where: { id: apiKey.id }, data: { revokedAt: new Date() } });
    const revoked = await fetch(`${app.url}/api/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body });
    expect(revoked.status).toBe(401);
    expect(await events()).toBe(before);
  });
});

describe('POST /api/v1/events (batch)', () => {
  it('stores valid items, rejects invalid ones, reports duplicates, in order', async () => {
    await app.post('/api/v1/events', { customer: 'acme', event_name: 'ai_tokens', identifier: 'batch-existing' });
    const before = await events();
    const jobsBefore = await jobs();
    const res = await app.post('/api/v1/events', {
      events: [
        { customer: 'acme', event_name: 'ai_tokens', value: 5, identifier: 'batch-a' },
        { customer: 'acme', event_name: 'ai_tokens', value: -5, identifier: 'batch-bad' },
        { customer: 'acme', event_name: 'ai_tokens', identifier: 'batch-existing' },
        { customer: 'nobody', event_name: 'ai_tokens', identifier: 'batch-nobody' },
        { customer: 'acme', event_name: 'ai_tokens', value: 6, identifier: 'batch-b' },
        { customer: 'acme', event_name: 'ai_tokens', value: 6, identifier: 'batch-b' },
      ],
    });
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body.results.map((r: { result: string }) => r.result)).toEqual(['accepted', 'rejected', 'duplicate', 'rejected', 'accepted', 'duplicate']);
    expect(body.results[1].errors[0].field).toBe('value');
    expect(body.results[3].errors[0].field).toBe('customer');
    expect(body.results[5].id).toBe(body.results[4].id);
    expect(body).toMatchObject({ accepted: 2, duplicates: 2, rejected: 2 });
    expect(await events()).toBe(before + 2);
    expect(await jobs()).toBe(jobsBefore + 1); // one job per batch, not per event
    expect(await app.count(`SELECT count(*) FROM meter_events WHERE identifier IN ('batch-bad', 'batch-nobody')`)).toBe(0);
  });

  it('refuses an empty batch, more than 1,000 events, or extra fields with 422', async () => {
    const before = await events();
    expect((await app.post('/api/v1/events', { events: [] })).status).toBe(422);
    const many = Array.from({ length: 1001 }, (_, i) => ({ customer: 'acme', event_name: 'ai_tokens', identifier: `many-${i}` }));
    expect((await app.post('/api/v1/events', { events: many })).status).toBe(422);
    expect((await app.post('/api/v1/events', { events: [{ customer: 'acme', event_name: 'ai_tokens' }], extra: 1 })).status).toBe(422);
    expect((await app.post('/api/v1/events', { events: 'no' })).status).toBe(422);
    expect(await events()).toBe(before);
  });

  it('accepts exactly 1,000 events in one request', async () => {
    const before = await events();
    const batch = Array.from({ length: 1000 }, (_, i) => ({ customer: 'acme', event_name: 'ai_tokens', value: i, identifier: `thousand-${i}` }));
    const res = await app.post('/api/v1/events', { events: batch });
    expect(res.status).toBe(200);
    expect((await res.json()).accepted).toBe(1000);
    expect(await events()).toBe(before + 1000);
  });
});

describe('GET /api/v1/events', () => {
  it('finds an event by id and by identifier, 404 otherwise', async () => {
    const created = await (await app.post('/api/v1/events', { customer: 'acme', event_name: 'ai_tokens', value: 42, identifier: 'lookup-1', properties: { model: 'gpt' } })).json();
    const byId = await app.get(`/api/v1/events/${created.id}`);
    expect(byId.status).toBe(200);
    expect(await byId.json()).toMatchObject({ id: created.id, identifier: 'lookup-1', value: 42, properties: { model: 'gpt' }, customer: 'acme', subscription: 'sub_acme' });
    expect((await app.get(`/api/v1/events?identifier=lookup-1`)).status).toBe(200);
    await problem(await app.get(`/api/v1/events/00000000-0000-0000-0000-000000000000`));
    expect((await app.get(`/api/v1/events/not-a-uuid`)).status).toBe(404);
    expect((await app.get(`/api/v1/events?identifier=nope`)).status).toBe(404);
    expect((await app.get(`/api/v1/events`)).status).toBe(422);
    expect((await app.get(`/api/v1/nothing`)).status).toBe(404);
  });
});
