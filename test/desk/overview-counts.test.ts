// One count, one source: every number on the overview is read again on the page it links to, by the same function
// (readDeskCounts), and the two agree. The seeded ledger has what once made them disagree: Stripe events failed for a
// missing meter, which the overview counted as 0 "without a meter" while the definitions inbox listed them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DESK_COUNTS, type DeskCountKey } from '../../app/billing/overview';
import { startDeskTestApp, type DeskTestApp } from '../support/desk';
import { insertCustomer, insertEvents } from '../support/desk-events';
import { seedDeskWindowFixtures } from '../support/desk-windows';

let app: DeskTestApp;
let cookie: string;

beforeAll(async () => {
  app = await startDeskTestApp();
  cookie = await app.sessionCookieFor('operator');
  const db = app.services.pool;
  const c = await insertCustomer(db);
  const metered = [
    ...(await insertEvents(db, c.id, 5, { status: 'failed', errorCode: 'resource_missing' })),
    ...(await insertEvents(db, c.id, 4, { status: 'pending' })),
    ...(await insertEvents(db, c.id, 2, { status: 'reported' })),
  ];
  await db.query(`UPDATE meter_events SET meter_id = (SELECT id FROM meters WHERE event_name = 'ai_tokens') WHERE id = ANY($1::uuid[])`, [metered]);
  // No meter: Stripe refused them (failed) or they wait (pending): both are "without a meter".
  await insertEvents(db, c.id, 3, { status: 'failed', eventName: 'api_calls', errorCode: 'no_meter', errorMessage: 'No meter was found matching event_name api_calls.' });
  await insertEvents(db, c.id, 1, { status: 'pending', eventName: 'image_renders' });
  await seedDeskWindowFixtures(app.services);
  await db.query(
    `INSERT INTO ops_events (id, type, occurred_at, processor, resolved_at) VALUES
       (gen_random_uuid(), 'webhook_rejected', now(), 'braintree', NULL),
       (gen_random_uuid(), 'webhook_rejected', now() - interval '3 days', 'braintree', NULL),
       (gen_random_uuid(), 'webhook_rejected', now(), 'braintree', now())`,
  );
}, 120_000);
afterAll(async () => {
  await app?.close();
});

/** `data-count` values on a page, by key. */
function countsOn(html: string): Map<string, string> {
  return new Map([...html.matchAll(/data-count="([^"]+)"[^>]*>([^<]+)</g)].map((m) => [m[1]!, m[2]!.trim()]));
}

const page = async (path: string) => {
  const res = await app.request(path, { cookie });
  expect(res.status, path).toBe(200);
  return res.text();
};

describe('overview counts', () => {
  it('each agree with the page they link to', async () => {
    const overview = await page('/');
    const shown = countsOn(overview);
    const keys = Object.keys(DESK_COUNTS) as DeskCountKey[];
    expect([...shown.keys()].sort()).toEqual([...keys].sort());
    for (const key of keys) {
      const to = DESK_COUNTS[key].to;
      expect(overview, key).toContain(`href="${to}"`);
      expect(countsOn(await page(to)).get(key), `${key} on ${to}`).toBe(shown.get(key));
    }
  });

  it('count what the ledger holds, events without a meter of every processor included', async () => {
    const shown = countsOn(await page('/'));
    expect(shown.get('events:failed')).toBe('8');
    expect(shown.get('events:pending')).toBe('5');
    expect(shown.get('events:without-meter')).toBe('4');
    expect(shown.get('ops:open')).toBe(String((await app.services.pool.query(`SELECT count(*)::int AS n FROM ops_events WHERE resolved_at IS NULL`)).rows[0].n));
    // The definitions inbox lists the same events by name.
    const inbox = await page('/definitions');
    expect(inbox).toContain('api_calls');
    expect(inbox).toContain('image_renders');
  });

  it('a page the overview does not link to as is (other filters) shows no overview count', async () => {
    expect(countsOn(await page('/events?status=failed&eventName=api_calls')).has('events:failed')).toBe(false);
    expect(countsOn(await page('/events?status=failed&cursor=abc')).get('events:failed')).toBe('8');
  });
});
