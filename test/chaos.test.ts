// A short fault campaign inside `npm test` (the long one is `npm run chaos -- --seeds 50`): real web and worker
// processes, the Stripe simulator in its own process and a PostgreSQL cluster per seed, with kills, processor faults,
// dropped connections and a database restart; then the invariants of PRODUCT.md. And a check that the invariant
// checker itself sees what it must (a checker that cannot fail would prove nothing).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSeed } from '../chaos/campaign';
import { checkInvariants, type Accepted } from '../chaos/invariants';
import { startTestApp, seedCustomers, type TestApp } from './support/app';

describe('the fault campaign', () => {
  // Seeds whose schedules kill workers and the web process, drop connections and restart the database between them
  // (chaos/campaign.ts picks the faults from the seed); processor faults run in the long campaign (docs/reliability.md).
  it.each([1, 2])('seed %i: nothing lost, nothing counted twice, every event terminal or actionable', async (seed) => {
    const r = await runSeed({ seed, events: 600 });
    expect(r.violations).toEqual([]);
    expect(r.accepted).toBeGreaterThan(500);
    const injected = Object.values(r.faults).reduce((a, b) => a + b, 0);
    expect(injected).toBeGreaterThan(0);
    expect(r.retriedRequests).toBeGreaterThanOrEqual(0);
  }, 300_000);
});

describe('the invariant checker', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
    await seedCustomers(app);
  });
  afterAll(() => app?.close());

  it('flags a lost event, a changed value, a stuck event and a double count, and passes a clean ledger', async () => {
    const pool = app.services.pool;
    const ok = await app.services.ledger.reportUsage('acme', 'ai_tokens', { value: 5, identifier: 'inv-ok' });
    const stuck = await app.services.ledger.reportUsage('acme', 'ai_tokens', { value: 7, identifier: 'inv-stuck' });
    await pool.query(`UPDATE meter_events SET status = 'reported' WHERE id = $1`, [ok.event.id]);
    const accepted = new Map<string, Accepted>([['inv-ok', { identifier: 'inv-ok', value: 5, customer: 'acme' }]]);
    const clean = { counts: { 'inv-ok': 1 }, data: [{ identifier: 'inv-ok', value: 5, status: 'accepted' }] };
    await pool.query(`UPDATE meter_events SET status = 'reported' WHERE id = $1`, [stuck.event.id]);
    accepted.set('inv-stuck', { identifier: 'inv-stuck', value: 7, customer: 'acme' });
    const both = { counts: { 'inv-ok': 1, 'inv-stuck': 1 }, data: [...clean.data, { identifier: 'inv-stuck', value: 7, status: 'accepted' }] };
    expect(await checkInvariants(pool, accepted, both)).toEqual([]);

    const lost = new Map(accepted).set('inv-lost', { identifier: 'inv-lost', value: 1, customer: 'acme' });
    expect((await checkInvariants(pool, lost, both)).join('\n')).toMatch(/accepted but not in the ledger: 1 — inv-lost/);
    const changed = new Map(accepted).set('inv-ok', { identifier: 'inv-ok', value: 6, customer: 'acme' });
    expect((await checkInvariants(pool, changed, both)).join('\n')).toMatch(/stored with another value than accepted: 1 — inv-ok 6≠5/);
    expect((await checkInvariants(pool, accepted, { ...both, counts: { 'inv-ok': 2, 'inv-stuck': 1 } })).join('\n')).toMatch(/counted more than once by Stripe: 1 — inv-ok×2/);
    expect((await checkInvariants(pool, accepted, clean)).join('\n')).toMatch(/reported but not counted by Stripe: 1 — inv-stuck/);
    await pool.query(`UPDATE meter_events SET status = 'pending' WHERE id = $1`, [stuck.event.id]);
    expect((await checkInvariants(pool, accepted, both)).join('\n')).toMatch(/not in a terminal or actionable state: 1 — inv-stuck pending/);
  });
});
