// Definitions: the missing-definitions inbox, add a definition + replay the windows it blocked (domain and page),
// against real PostgreSQL and the built desk. Charged windows stay untouched; bad input changes nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Actor } from '../../app/billing/audit';
import { addDefinition, addDefinitionAndReplay, listMeters, listMissingDefinitions, replayBlockedWindows } from '../../app/billing/definitions';
import { ConflictError, NotFoundError, ValidationError } from '../../app/billing/errors';
import { closeWindowNow } from '../../app/billing/windows/invoices';
import { fromStoredSnapshot } from '../../app/billing/windows/invoice-math';
import { parseMajorUnitPrice } from '../../app/routes/_desk.definitions.server';
import { seedMissingDefinition, type MissingDefinitionFixture } from '../support/desk-definitions';
import { startDeskTestApp, type DeskTestApp } from '../support/desk';

let app: DeskTestApp;
const cookie: Record<string, string> = {};
let actor: Actor;

beforeAll(async () => {
  app = await startDeskTestApp();
  for (const role of ['operator', 'finance', 'support', 'admin'] as const) cookie[role] = await app.sessionCookieFor(role);
  actor = { userId: app.userIds.operator, label: 'operator@desk.test', role: 'operator' };
}, 120_000);
afterAll(async () => {
  await app?.close();
});

const q = async <T extends Record<string, unknown>>(sql: string, params: unknown[] = []) => (await app.services.pool.query<T>(sql, params)).rows;
const invoiceOf = async (windowId: string) =>
  (await q<{ revision: number; total_minor: string }>(`SELECT revision, total_minor::text AS total_minor FROM invoices WHERE window_id = $1`, [windowId]))[0]!;
const linesOf = async (windowId: string) =>
  q<{ event_name: string; event_count: number; quantity: string; amount_minor: string }>(
    `SELECT l.event_name, l.event_count, l.quantity::text AS quantity, l.amount_minor::text AS amount_minor
       FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id WHERE i.window_id = $1 ORDER BY l.event_name`,
    [windowId],
  );
const eventStatuses = async (eventName: string, windowId: string) =>
  (await q<{ status: string }>(`SELECT status::text AS status FROM meter_events WHERE event_name = $1 AND window_id = $2 ORDER BY id`, [eventName, windowId])).map((r) => r.status);
const inboxRow = async (eventName: string) => (await listMissingDefinitions(app.services.pool)).find((r) => r.eventName === eventName);

describe('the domain', () => {
  let f: MissingDefinitionFixture;
  beforeAll(async () => {
    f = await seedMissingDefinition(app.services, 'dom1');
  }, 60_000);

  it('lists the unmatched event name in the inbox: customers, count, first/last seen, blocked and charged windows', async () => {
    const row = await inboxRow(f.eventName);
    expect(row).toMatchObject({ events: 4, customers: 3, blockedWindows: 1, chargedWindows: 1, definedMeterId: null });
    expect(row!.customerNames).toEqual([f.blocked.customerName, f.charged.customerName, f.open.customerName].sort());
    expect(Date.parse(row!.firstSeen)).toBeLessThanOrEqual(Date.parse(row!.lastSeen));
    // The blocked window's invoice bills ai_tokens only, and its missing definition fired once.
    expect((await linesOf(f.blocked.windowId)).map((l) => l.event_name)).toEqual(['ai_tokens']);
    expect(await eventStatuses(f.eventName, f.blocked.windowId)).toEqual(['unmatched', 'unmatched']);
    const ops = await q(`SELECT 1 FROM ops_events WHERE dedupe_key = $1 AND resolved_at IS NULL`, [`metered_missing_definition:${f.blocked.windowId}`]);
    expect(ops).toHaveLength(1);
  });

  it('refuses bad input with field errors and writes nothing', async () => {
    const meters = (await listMeters(app.services.pool)).length;
    const audits = (await q(`SELECT 1 FROM audit_log`)).length;
    const prices = (await q(`SELECT 1 FROM meter_prices`)).length;
    const bad = async (input: unknown) => {
      const error = await addDefinition(app.services.pool, input, actor).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ValidationError);
      return (error as ValidationError).errors.map((e) => e.field);
    };
    expect(await bad({ eventName: 'Bad Name!', displayName: '', aggregation: 'avg' })).toEqual(['eventName', 'displayName', 'aggregation']);
    // Unit prices are decimal strings of minor units, at most 12 places and 19 integer digits (ADR 030).
    for (const unitAmountDecimal of ['0.0000000000001', '-1', -1, '-0.015', '1e3', 1e21, '', ' ', '0.5.1', '10000000000000000000', 0.5, null, {}]) {
      const withPrice = { eventName: f.eventName, displayName: 'x', aggregation: 'sum', prices: [{ planId: f.planId, unitAmountDecimal }] };
      expect(await bad(withPrice), `unitAmountDecimal ${JSON.stringify(unitAmountDecimal)}`).toEqual(['prices.0.unitAmountDecimal']);
    }
    const thirteen = await addDefinition(app.services.pool, { eventName: f.eventName, displayName: 'x', aggregation: 'sum', prices: [{ planId: f.planId, unitAmountDecimal: '0.0150000000001' }] }, actor).catch((e: unknown) => e);
    expect((thirteen as ValidationError).errors).toEqual([expect.objectContaining({ field: 'prices.0.unitAmountDecimal', message: expect.stringContaining('12 after') })]);
    expect(await bad({ eventName: f.eventName, displayName: 'x', aggregation: 'sum', prices: [{ planId: '00000000-0000-4000-8000-000000000000', unitAmountDecimal: '5' }] })).toEqual([
      'prices.0.planId',
    ]);
    expect(await bad({ eventName: f.eventName, displayName: 'x', aggregation: 'sum', surprise: true })).toEqual(['surprise']);
    // An existing meter is a conflict, also with nothing written.
    const conflict = await addDefinition(app.services.pool, { eventName: 'ai_tokens', displayName: 'again', aggregation: 'sum' }, actor).catch((e: unknown) => e);
    expect(conflict).toBeInstanceOf(ConflictError);
    expect((await listMeters(app.services.pool)).length).toBe(meters);
    expect((await q(`SELECT 1 FROM audit_log`)).length).toBe(audits);
    expect((await q(`SELECT 1 FROM meter_prices`)).length).toBe(prices);
    expect((await inboxRow(f.eventName))?.events).toBe(4);
    await expect(replayBlockedWindows(app.services.pool, { eventName: f.eventName, actor })).rejects.toBeInstanceOf(NotFoundError);
  });

  it('adds the definition and replays: events matched, new invoice line, ops event resolved, charged window untouched', async () => {
    const chargedBefore = { invoice: await invoiceOf(f.charged.windowId), lines: await linesOf(f.charged.windowId) };
    const { definition, replay } = await addDefinitionAndReplay(
      app.services.pool,
      // $0.02 per 1,000 renders, rounded up: 3,000 units → 3 billed units → 6 cents.
      { eventName: f.eventName, displayName: 'Renders', aggregation: 'sum', prices: [{ planId: f.planId, unitAmountDecimal: '2', perUnits: '1000' }], reason: 'new product' },
      actor,
    );
    expect(definition).toMatchObject({ eventsAttached: 4, openWindowsExtended: 1 });
    expect(replay).toMatchObject({ eventName: f.eventName, chargedWindows: 1, skipped: [], opsEventsResolved: 1 });
    expect(replay.reauthored).toEqual([{ windowId: f.blocked.windowId, revision: 2, totalMinor: (f.blocked.totalMinor + 6n).toString(), currency: 'usd', stillUnmatched: 0 }]);

    // The blocked window: its invoice has the new line, its events are matched, its ops event resolved by the operator.
    expect(await linesOf(f.blocked.windowId)).toEqual([
      expect.objectContaining({ event_name: 'ai_tokens' }),
      { event_name: f.eventName, event_count: 2, quantity: '3000', amount_minor: '6' },
    ]);
    expect(await invoiceOf(f.blocked.windowId)).toEqual({ revision: 2, total_minor: (f.blocked.totalMinor + 6n).toString() });
    expect(await eventStatuses(f.eventName, f.blocked.windowId)).toEqual(['matched', 'matched']);
    const ops = await q<{ resolved_by: string | null }>(`SELECT resolved_by FROM ops_events WHERE dedupe_key = $1 AND resolved_at IS NOT NULL`, [
      `metered_missing_definition:${f.blocked.windowId}`,
    ]);
    expect(ops).toEqual([{ resolved_by: app.userIds.operator }]);

    // The charged window: same invoice, same lines, its event still unmatched (a sale was sent).
    expect(await invoiceOf(f.charged.windowId)).toEqual(chargedBefore.invoice);
    expect(await linesOf(f.charged.windowId)).toEqual(chargedBefore.lines);
    expect(await eventStatuses(f.eventName, f.charged.windowId)).toEqual(['unmatched']);

    // The open window's frozen snapshot gained this meter only, so it bills the name when it closes.
    const snap = fromStoredSnapshot((await q<{ price_snapshot: unknown }>(`SELECT price_snapshot FROM windows WHERE id = $1`, [f.open.windowId]))[0]!.price_snapshot);
    expect(snap.map((p) => p.eventName)).toEqual(['ai_tokens', f.eventName].sort());
    const closed = await closeWindowNow(app.services.pool, f.open.windowId);
    expect(closed.status === 'closed' && closed.invoice.unmatched).toBe(0);
    expect((await linesOf(f.open.windowId)).map((l) => [l.event_name, l.quantity])).toEqual([[f.eventName, '700']]);

    // Audited: the meter (who, why, what) and each re-author; the inbox no longer lists the name; the meter is listed.
    const audit = await q<{ actor_label: string; reason: string | null; after: { prices: unknown[]; events_attached: number } }>(
      `SELECT actor_label, reason, after FROM audit_log WHERE action = 'meter.create' AND subject_id = $1`,
      [definition.meter.id],
    );
    expect(audit).toEqual([{ actor_label: 'operator@desk.test', reason: 'new product', after: expect.objectContaining({ events_attached: 4, prices: [expect.any(Object)] }) }]);
    expect(await q(`SELECT reason FROM audit_log WHERE action = 'window.reauthor' AND subject_id = $1`, [f.blocked.windowId])).toEqual([
      { reason: `definition added: ${f.eventName} — new product` },
    ]);
    expect(await inboxRow(f.eventName)).toBeUndefined();
    const meter = (await listMeters(app.services.pool)).find((m) => m.eventName === f.eventName);
    expect(meter?.prices).toEqual([expect.objectContaining({ planCode: 'essential', unitAmountDecimal: '2', perUnits: '1000', rounding: 'up', currency: 'usd' })]);

    // A second replay finds nothing left to do.
    expect(await replayBlockedWindows(app.services.pool, { eventName: f.eventName, actor })).toMatchObject({ reauthored: [], chargedWindows: 1, eventsAttached: 0 });
  });
});

describe('the page', () => {
  let f: MissingDefinitionFixture;
  beforeAll(async () => {
    f = await seedMissingDefinition(app.services, 'page1');
  }, 60_000);

  it('shows the inbox and the meters to every reader, the form only to those who may write', async () => {
    const operator = await (await app.request(`/definitions?eventName=${f.eventName}`, { cookie: cookie.operator })).text();
    expect(operator).toContain('Missing definitions');
    expect(operator).toContain(f.eventName);
    expect(operator).toContain('Add definition and replay');
    expect(operator).toContain(`value="${f.eventName}"`); // prefilled from the inbox row's link
    expect(operator).toContain('ai_tokens');
    const support = await app.request('/definitions', { cookie: cookie.support });
    expect(support.status).toBe(200);
    const html = await support.text();
    expect(html).toContain(f.eventName);
    expect(html).not.toContain('Add definition and replay');
  });

  it('refuses the action to finance (403) and changes nothing', async () => {
    const res = await app.postForm('/definitions', { intent: 'add-definition', eventName: f.eventName, displayName: 'R', aggregation: 'sum' }, { cookie: cookie.finance });
    expect(res.status).toBe(403);
    expect(await q(`SELECT 1 FROM meters WHERE event_name = $1`, [f.eventName])).toEqual([]);
  });

  it('shows field errors (400) for a bad price or name, with nothing written', async () => {
    const res = await app.postForm(
      '/definitions',
      { intent: 'add-definition', eventName: f.eventName, displayName: 'R', aggregation: 'sum', [`price:${f.planId}`]: '0.000000000000001' },
      { cookie: cookie.operator },
    );
    expect(res.status).toBe(400);
    expect(await res.text()).toContain('at most 14 decimals'); // a cent's 12 places, in dollars
    for (const price of ['1e3', '-0.01', '0,05']) {
      const r = await app.postForm('/definitions', { intent: 'add-definition', eventName: f.eventName, displayName: 'R', aggregation: 'sum', [`price:${f.planId}`]: price }, { cookie: cookie.operator });
      expect(r.status, price).toBe(400);
      expect(await r.text()).toContain('Enter an amount like 0.05 or 0.00015');
    }
    const bad = await app.postForm('/definitions', { intent: 'add-definition', eventName: 'No Spaces', displayName: '', aggregation: 'sum' }, { cookie: cookie.operator });
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain('must be 1-100 characters');
    expect(await q(`SELECT 1 FROM meters WHERE event_name = $1`, [f.eventName])).toEqual([]);
  });

  it('an operator adds the definition and replays: redirect with a toast, invoice re-authored', async () => {
    const res = await app.postForm(
      '/definitions',
      { intent: 'add-definition', eventName: f.eventName, displayName: 'Renders', aggregation: 'sum', currency: 'usd', rounding: 'up', [`price:${f.planId}`]: '0.02', [`perUnits:${f.planId}`]: '1000' },
      { cookie: cookie.operator },
    );
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('/definitions');
    expect(await invoiceOf(f.blocked.windowId)).toEqual({ revision: 2, total_minor: (f.blocked.totalMinor + 6n).toString() });
    expect(await (await app.request('/definitions', { cookie: cookie.support })).text()).toContain('$0.02 / 1,000 units, rounded up');
    const again = await app.postForm('/definitions', { intent: 'add-definition', eventName: f.eventName, displayName: 'Again', aggregation: 'sum' }, { cookie: cookie.operator });
    expect(again.status).toBe(400);
    expect(await again.text()).toContain('already exists');
    const replay = await app.postForm('/definitions', { intent: 'replay', eventName: 'never_defined_name' }, { cookie: cookie.operator });
    expect(replay.status).toBe(400);
    expect(await replay.text()).toContain('add its definition first');
  });
});

it('parses prices typed in the major unit as exact minor-unit decimals', () => {
  expect(parseMajorUnitPrice('0.05', 'usd')).toBe('5');
  expect(parseMajorUnitPrice('12', 'usd')).toBe('1200');
  expect(parseMajorUnitPrice('1.5', 'eur')).toBe('150');
  expect(parseMajorUnitPrice('0.00015', 'usd')).toBe('0.015');
  expect(parseMajorUnitPrice('0.001', 'usd')).toBe('0.1');
  expect(parseMajorUnitPrice('0.00000000000001', 'usd')).toBe('0.000000000001');
  expect(parseMajorUnitPrice('0.000000000000001', 'usd')).toBeNull(); // 13 places of a cent
  expect(parseMajorUnitPrice('-1', 'usd')).toBeNull();
  expect(parseMajorUnitPrice('1e3', 'usd')).toBeNull();
  expect(parseMajorUnitPrice('7', 'jpy')).toBe('7');
  expect(parseMajorUnitPrice('0.5', 'jpy')).toBe('0.5');
});
