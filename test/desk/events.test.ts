// The events and customers pages: the presenter's filters, keyset pagination and failure summary against real
// PostgreSQL, and the retry actions through the built app (permissions per scope, the 23 h guard, audit).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CustomerDetailPresenter, CustomerSearchPresenter } from '../../app/billing/ledger/customer-list';
import {
  EVENT_PAGE_SIZE,
  EventDetailPresenter,
  EventListPresenter,
  FailureSummaryPresenter,
  parseEventFilters,
} from '../../app/billing/ledger/event-list';
import { cookieFrom, cookies, startDeskTestApp, type DeskTestApp } from '../support/desk';
import { insertCustomer, insertEvents } from '../support/desk-events';
import { previewFilterRetry } from '../../app/routes/_desk.events.server';

let app: DeskTestApp;
const session: Record<'operator' | 'support' | 'finance', string> = { operator: '', support: '', finance: '' };

beforeAll(async () => {
  app = await startDeskTestApp();
  session.operator = await app.sessionCookieFor('operator');
  session.support = await app.sessionCookieFor('support');
  session.finance = await app.sessionCookieFor('finance');
}, 120_000);
afterAll(async () => {
  await app?.close();
});

const filters = (query: Record<string, string>) => parseEventFilters(new URLSearchParams(query));
const db = () => app.services.pool;

async function statuses(ids: string[]): Promise<string[]> {
  const { rows } = await db().query<{ status: string }>('SELECT status::text AS status FROM meter_events WHERE id = ANY($1::uuid[]) ORDER BY id', [ids]);
  return rows.map((r) => r.status);
}

async function retryAudits(actorRole: string) {
  const { rows } = await db().query<{ actor_role: string; reason: string | null; after: { moved: number; ids: string[]; force: boolean } }>(
    `SELECT actor_role, reason, after FROM audit_log WHERE action = 'meter_event.retry' AND actor_role = $1 ORDER BY id`,
    [actorRole],
  );
  return rows;
}

/** Follows an action's redirect with its flash cookie; returns the page's HTML. */
async function followWithFlash(response: Response, cookie: string): Promise<string> {
  expect(response.status, await response.clone().text()).toBe(302);
  const flash = cookieFrom(response, 'md_flash');
  const page = await app.request(response.headers.get('location')!, { cookie: cookies(cookie, flash) });
  expect(page.status).toBe(200);
  return page.text();
}

describe('EventListPresenter', () => {
  it('pages newest first by id, forward and back, without overlap', async () => {
    const customer = await insertCustomer(db());
    const ids = await insertEvents(db(), customer.id, EVENT_PAGE_SIZE * 2 + 7, { status: 'reported' });
    const newestFirst = [...ids].reverse();

    const first = await EventListPresenter.call(db(), filters({ customer: customer.externalId }));
    expect(first.events.map((e) => e.id)).toEqual(newestFirst.slice(0, EVENT_PAGE_SIZE));
    expect(first.newer).toBeNull();
    const second = await EventListPresenter.call(db(), filters({ customer: customer.externalId, cursor: first.older! }));
    expect(second.events.map((e) => e.id)).toEqual(newestFirst.slice(EVENT_PAGE_SIZE, EVENT_PAGE_SIZE * 2));
    const third = await EventListPresenter.call(db(), filters({ customer: customer.externalId, cursor: second.older! }));
    expect(third.events.map((e) => e.id)).toEqual(newestFirst.slice(EVENT_PAGE_SIZE * 2));
    expect(third.older).toBeNull();

    const back = await EventListPresenter.call(db(), filters({ customer: customer.externalId, cursor: second.newer!, direction: 'newer' }));
    expect(back.events.map((e) => e.id)).toEqual(first.events.map((e) => e.id));
    expect(back.newer).toBeNull();
    expect(back.older).toBe(first.older);
  });

  it('filters by status, event name, processor, error code, time range and identifier', async () => {
    const customer = await insertCustomer(db());
    const failed = await insertEvents(db(), customer.id, 2, { errorCode: 'code_a' });
    const [otherName] = await insertEvents(db(), customer.id, 1, { status: 'pending', eventName: 'api_calls' });
    const [braintree] = await insertEvents(db(), customer.id, 1, { status: 'recorded', processor: 'braintree' });
    const [old] = await insertEvents(db(), customer.id, 1, { status: 'reported', occurredAt: new Date('2026-10-01T12:00:00Z'), identifier: `known-${customer.externalId}` });
    const ids = async (q: Record<string, string>) =>
      (await EventListPresenter.call(db(), filters({ customer: customer.externalId, ...q }))).events.map((e) => e.id).sort();

    expect(await ids({ status: 'failed' })).toEqual([...failed].sort());
    expect(await ids({ eventName: 'api_calls' })).toEqual([otherName]);
    expect(await ids({ processor: 'braintree' })).toEqual([braintree]);
    expect(await ids({ errorCode: 'code_a' })).toEqual([...failed].sort());
    expect(await ids({ time: 'occurred', to: '2026-10-02T00:00' })).toEqual([old]);
    expect(await ids({ time: 'occurred', from: '2026-10-01T00:00', to: '2026-10-01T12:00' })).toEqual([]);
    // By default the range is of receipt: all five were received just now, whatever their usage time.
    const minute = (ms: number) => new Date(ms).toISOString().slice(0, 16);
    const all = [...failed, otherName, braintree, old].sort();
    expect(await ids({ from: minute(Date.now() - 10 * 60_000), to: minute(Date.now() + 2 * 60_000) })).toEqual(all);
    expect(await ids({ to: '2026-10-02T00:00' })).toEqual([]);
    expect(await ids({ from: minute(Date.now() + 2 * 60_000) })).toEqual([]);
    expect(await ids({ q: `known-${customer.externalId}` })).toEqual([old]);
    expect(await ids({ q: failed[0]! })).toEqual([failed[0]]);
    // The customer filter also takes the processor customer id.
    expect((await EventListPresenter.call(db(), filters({ customer: customer.processorCustomerId }))).events).toHaveLength(5);
    // Garbage in the query string is ignored, not an error.
    expect(filters({ status: 'nonsense', cursor: "'; DROP TABLE x" })).toMatchObject({ status: undefined, cursor: undefined });

    const unknown = await EventListPresenter.call(db(), filters({ customer: 'nobody-at-all' }));
    expect(unknown).toMatchObject({ events: [], unknownCustomer: true });
  });

  it('groups failed events by error code with counts, and shows one event with its attempts', async () => {
    const customer = await insertCustomer(db());
    await insertEvents(db(), customer.id, 3, { errorCode: 'resource_missing' });
    await insertEvents(db(), customer.id, 1, { errorCode: 'invalid_value', errorMessage: 'value too large' });
    await insertEvents(db(), customer.id, 2, { status: 'reported' });
    const summary = await FailureSummaryPresenter.call(db(), filters({ customer: customer.externalId }));
    expect(summary).toEqual({
      groups: [
        { code: 'resource_missing', count: 3, sample: expect.any(String), cause: 'other' },
        { code: 'invalid_value', count: 1, sample: 'value too large', cause: 'other' },
      ],
      capped: false,
    });

    const [id] = await insertEvents(db(), customer.id, 1, { errorCode: 'resource_missing' });
    const detail = await EventDetailPresenter.call(db(), id!);
    expect(detail).toMatchObject({ id, status: 'failed', lastErrorCode: 'resource_missing', lastErrorSource: 'sync', customerExternalId: customer.externalId });
    expect(detail!.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(detail!.attemptLog).toHaveLength(1);
    expect(detail!.attemptLog[0]).toMatchObject({ outcome: 'rejected', httpStatus: 400, response: { error: { code: 'resource_missing' } } });
    expect(await EventDetailPresenter.call(db(), '00000000-0000-4000-8000-000000000000')).toBeNull();
    expect(await EventDetailPresenter.call(db(), 'not-a-uuid')).toBeNull();
  });

  it('finds customers by external id, name or email prefix and by processor customer id', async () => {
    const customer = await insertCustomer(db());
    for (const q of [customer.email, customer.email.toUpperCase(), customer.processorCustomerId]) {
      expect((await CustomerSearchPresenter.call(db(), q)).map((c) => c.id), q).toEqual([customer.id]);
    }
    expect(await CustomerSearchPresenter.call(db(), 'no-such-customer')).toEqual([]);
    // By prefix (case-insensitive) of the external id, the name and the email, through their indexes.
    const tag = customer.externalId.slice('cust-'.length);
    const other = await insertCustomer(db(), `${tag}x`);
    for (const q of [customer.externalId.slice(0, 10).toUpperCase(), `customer ${tag}`, `BILLING+${tag}`]) {
      expect((await CustomerSearchPresenter.call(db(), q)).map((c) => c.id).sort(), q).toEqual([customer.id, other.id].sort());
    }
    // An exact external id sorts first; LIKE's own characters are taken literally.
    expect((await CustomerSearchPresenter.call(db(), customer.externalId))[0]!.id).toBe(customer.id);
    expect(await CustomerSearchPresenter.call(db(), `cust-${tag.slice(0, 2)}%${tag.slice(3)}`)).toEqual([]);
    expect(await CustomerSearchPresenter.call(db(), `cust_${tag}`)).toEqual([]);
    // The prefix is an index range (checked with sequential scans off: this table is small enough to scan).
    const client = await db().connect();
    try {
      await client.query('BEGIN');
      await client.query('SET LOCAL enable_seqscan = off');
      const plan = await client.query(`EXPLAIN SELECT id FROM customers WHERE lower(name) LIKE 'customer ab%'`);
      expect(plan.rows.map((r) => Object.values(r)[0]).join('\n')).toMatch(/customers_name_prefix_idx/);
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
    await insertEvents(db(), customer.id, 2);
    const detail = await CustomerDetailPresenter.call(db(), customer.id);
    expect(detail).toMatchObject({ externalId: customer.externalId, failed: 2, failedCapped: false });
    expect(detail!.subscriptions).toHaveLength(1);
    expect(detail!.events).toHaveLength(2);
  });
});

describe('pages', () => {
  it('render for a reader, with the failure summary, the event detail and the customer', async () => {
    const customer = await insertCustomer(db());
    const [id] = await insertEvents(db(), customer.id, 1, { errorCode: 'render_check' });
    const list = await app.request(`/events?customer=${customer.externalId}`, { cookie: session.finance });
    expect(list.status).toBe(200);
    const html = await list.text();
    expect(html).toContain('Failures by error code');
    expect(html).toContain('render_check');
    // Finance reads but cannot retry: no checkboxes, no retry forms.
    expect(html).not.toContain('name="ids"');
    expect(html).not.toContain('Retry every failed event');

    const detail = await app.request(`/events/${id}`, { cookie: session.support });
    const detailHtml = await detail.text();
    expect(detail.status).toBe(200);
    expect(detailHtml).toContain('Retry this event');
    expect(detailHtml).toContain('&quot;invalid_request_error&quot;');
    expect(detailHtml).not.toContain('Force past the 23 h guard'); // support may not force

    expect((await app.request('/events/00000000-0000-4000-8000-000000000000', { cookie: session.support })).status).toBe(404);
    const search = await app.request(`/customers?q=${encodeURIComponent(customer.email)}`, { cookie: session.support });
    expect(await search.text()).toContain(`/customers/${customer.id}`);
    const page = await app.request(`/customers/${customer.id}`, { cookie: session.support });
    expect(await page.text()).toContain("Retry this customer&#x27;s failed events");
  });
});

describe('retry actions', () => {
  it('shows the duplicates ignored because they said another value, on the event page', async () => {
    const customer = await insertCustomer(db());
    const identifier = `differs-${customer.id.slice(0, 8)}`;
    const [first] = await app.services.ledger.reportUsageBatch([{ customer: customer.externalId, eventName: 'ai_tokens', value: 40, identifier }]);
    const [again] = await app.services.ledger.reportUsageBatch([{ customer: customer.externalId, eventName: 'ai_tokens', value: 41, identifier }]);
    expect(first).toMatchObject({ result: 'accepted' });
    expect(again).toMatchObject({ result: 'duplicate', differs: ['value'] });
    const id = (first as { event: { id: string } }).event.id;
    const detail = await EventDetailPresenter.call(db(), id);
    expect(detail!.value).toBe('40');
    expect(detail!.ignoredDuplicates).toEqual([{ receivedAt: expect.any(String), differs: ['value'], value: '41', eventName: 'ai_tokens', customerExternalId: customer.externalId }]);
    const html = (await (await app.request(`/events/${id}`, { cookie: session.support })).text()).replaceAll('<!-- -->', '');
    expect(html).toContain('Duplicates ignored');
    expect(html).toContain('duplicate ignored (value differed)');
  });

  it('support retries one event from its page: pending, audited, toast', async () => {
    const customer = await insertCustomer(db());
    const [id] = await insertEvents(db(), customer.id, 1);
    const html = await followWithFlash(await app.postForm(`/events/${id}`, { intent: 'retry-one' }, { cookie: session.support }), session.support);
    expect(html).toContain('Event queued for reporting again');
    expect(await statuses([id!])).toEqual(['pending']);
    const audit = (await retryAudits('support')).at(-1)!;
    expect(audit.after).toMatchObject({ moved: 1, ids: [id], force: false });
  });

  it('support retries a selection of one customer, but not one spanning customers', async () => {
    const a = await insertCustomer(db());
    const b = await insertCustomer(db());
    const aIds = await insertEvents(db(), a.id, 2);
    const [bId] = await insertEvents(db(), b.id, 1);
    const single = await app.postForm('/events', { intent: 'retry-selection', ids: aIds[0]! }, { cookie: session.support });
    await followWithFlash(single, session.support);
    expect(await statuses(aIds)).toEqual(['pending', 'failed']);

    const body = new URLSearchParams([['intent', 'retry-selection'], ['ids', aIds[1]!], ['ids', bId!]]);
    const refused = await app.request('/events', {
      method: 'POST',
      cookie: session.support,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: body.toString(),
    });
    // A sentence on the page, not a 403 page: support's scope is one customer.
    expect(refused.status).toBe(400);
    expect(await refused.text()).toContain('Select events of one customer at a time: these belong to 2 customers.');
    expect(await statuses([aIds[1]!, bId!])).toEqual(['failed', 'failed']);

    const operator = await app.request('/events', {
      method: 'POST',
      cookie: session.operator,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: body.toString(),
    });
    expect(await followWithFlash(operator, session.operator)).toContain('2 events queued for reporting again');
    expect(await statuses([aIds[1]!, bId!])).toEqual(['pending', 'pending']);
  });

  it('retry-all shows a preview count, needs "any" without a customer, and moves exactly the matching events', async () => {
    const customer = await insertCustomer(db());
    const matching = await insertEvents(db(), customer.id, 3, { errorCode: 'bulk_case' });
    const [other] = await insertEvents(db(), customer.id, 1, { errorCode: 'other_case' });
    const preview = await app.request('/events?status=failed&errorCode=bulk_case&confirm=retry-all', { cookie: session.operator });
    const previewHtml = (await preview.text()).replaceAll('<!-- -->', '');
    expect(previewHtml).toContain('<strong>3</strong> failed events match: 3 can be retried now.');
    expect(previewHtml).toContain('Confirm: retry 3 events');

    expect((await app.postForm('/events?status=failed&errorCode=bulk_case', { intent: 'retry-filter' }, { cookie: session.support })).status).toBe(403);
    expect((await app.postForm('/events?status=reported', { intent: 'retry-filter' }, { cookie: session.operator })).status).toBe(400);

    const done = await app.postForm('/events?status=failed&errorCode=bulk_case', { intent: 'retry-filter' }, { cookie: session.operator });
    const auditId = (await db().query<{ id: string }>(`SELECT max(id)::text AS id FROM audit_log WHERE action = 'meter_event.retry'`)).rows[0]!.id;
    expect(done.headers.get('location')).toBe(`/events?status=failed&errorCode=bulk_case&retry=${auditId}`);
    const after = (await followWithFlash(done, session.operator)).replaceAll('<!-- -->', '');
    expect(after).toContain('3 events queued for reporting again');
    // The progress panel follows exactly the retried events as the jobs move them.
    expect(after).toContain('Retry in progress');
    expect(after).toContain('0 reported, 3 pending, 0 failed again');
    expect(await statuses(matching)).toEqual(['pending', 'pending', 'pending']);
    expect(await statuses([other!])).toEqual(['failed']);
    await db().query(`UPDATE meter_events SET status = 'reported' WHERE id = ANY($1::uuid[])`, [matching.slice(0, 2)]);
    await db().query(`UPDATE meter_events SET status = 'failed' WHERE id = $1`, [matching[2]]);
    const finished = (await (await app.request(`/events?retry=${auditId}`, { cookie: session.operator })).text()).replaceAll('<!-- -->', '');
    expect(finished).toContain('Retry finished');
    expect(finished).toContain('2 reported, 0 pending, 1 failed again');
    expect(finished).toMatch(/<progress[^>]*max="3"[^>]*value="3"|<progress[^>]*value="3"[^>]*max="3"/);
    // Not a retry's audit id, or garbage: no panel, no error.
    for (const bogus of ['0', 'abc', '99999999999', String(Number(auditId) + 1000)]) {
      const page = await app.request(`/events?retry=${bogus}`, { cookie: session.operator });
      expect(page.status).toBe(200);
      expect(await page.text()).not.toContain('data-testid="retry-progress"');
    }

    // Support may retry by filter when it names their one customer.
    const scoped = await app.postForm(`/events?customer=${customer.externalId}&status=failed`, { intent: 'retry-filter' }, { cookie: session.support });
    await followWithFlash(scoped, session.support);
    expect(await statuses([other!])).toEqual(['pending']);
  });

  it('retry by time range bounds what the list bounds: receipt by default, usage time when asked', async () => {
    const customer = await insertCustomer(db());
    await insertEvents(db(), customer.id, 1, { errorCode: 'time_case' });
    await insertEvents(db(), customer.id, 1, { errorCode: 'time_case', occurredAt: new Date('2026-10-01T12:00:00Z') });
    const minute = (ms: number) => new Date(ms).toISOString().slice(0, 16);
    const matching = async (q: Record<string, string>) =>
      (await previewFilterRetry(db(), filters({ customer: customer.externalId, status: 'failed', errorCode: 'time_case', ...q }))).matching;
    expect(await matching({ from: minute(Date.now() - 10 * 60_000) })).toBe(2);
    expect(await matching({ to: '2026-10-02T00:00' })).toBe(0);
    expect(await matching({ time: 'occurred', from: minute(Date.now() - 10 * 60_000) })).toBe(1);
    expect(await matching({ time: 'occurred', to: '2026-10-02T00:00' })).toBe(1);
  });

  it('the 23 h guard: refused without force, force needs "any" and a reason', async () => {
    const customer = await insertCustomer(db());
    const [id] = await insertEvents(db(), customer.id, 1, { firstAttemptAgo: '30 hours' });
    const plain = await app.postForm(`/events/${id}`, { intent: 'retry-one' }, { cookie: session.operator });
    expect(plain.status).toBe(400);
    expect(await plain.text()).toContain('23 h ago');
    expect((await app.postForm(`/events/${id}`, { intent: 'retry-one', force: 'on', reason: 'x' }, { cookie: session.support })).status).toBe(403);
    const noReason = await app.postForm(`/events/${id}`, { intent: 'retry-one', force: 'on' }, { cookie: session.operator });
    expect(noReason.status).toBe(400);
    expect(await statuses([id!])).toEqual(['failed']);

    const forced = await app.postForm(`/events/${id}`, { intent: 'retry-one', force: 'on', reason: 'Stripe confirmed it never counted it' }, { cookie: session.operator });
    expect(await followWithFlash(forced, session.operator)).toContain('Forced past the 23 h guard');
    expect(await statuses([id!])).toEqual(['pending']);
    expect((await retryAudits('operator')).at(-1)).toMatchObject({ reason: 'Stripe confirmed it never counted it', after: { force: true, ids: [id] } });
  });

  it("support retries a customer's failed events from the customer page; finance may not", async () => {
    const customer = await insertCustomer(db());
    const ids = await insertEvents(db(), customer.id, 2);
    const [reported] = await insertEvents(db(), customer.id, 1, { status: 'reported' });
    expect((await app.postForm(`/customers/${customer.id}`, { intent: 'retry-customer' }, { cookie: session.finance })).status).toBe(403);
    const done = await app.postForm(`/customers/${customer.id}`, { intent: 'retry-customer' }, { cookie: session.support });
    expect(await followWithFlash(done, session.support)).toContain('2 events queued for reporting again');
    expect(await statuses([...ids, reported!])).toEqual(['pending', 'pending', 'reported']);
    // Nothing left to retry: a clear 400, not a silent success.
    expect((await app.postForm(`/customers/${customer.id}`, { intent: 'retry-customer' }, { cookie: session.support })).status).toBe(400);
  });
});
