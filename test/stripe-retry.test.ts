// Operator retry of failed Stripe events: one, a selection, a filter; audited; the 23 h guard and force.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Actor } from '../app/billing/audit';
import { ValidationError } from '../app/billing/errors';
import Stripe from 'stripe';
import { previewRetry as previewWith, retryFailedEvents as retryWith, RetryRefusedError } from '../app/billing/ledger/retry';
import { stripeClientConfig } from '../app/billing/processors/stripe/processor';
import { stripeCustomerCheck } from '../app/billing/processors/stripe/customer-check';
import { SIMULATOR_SECRET_KEY } from '../simulators/stripe/simulator';
import { startReportingHarness, type ReportingHarness } from './support/reporting';

const operator: Actor = { userId: null, label: 'ops@example.test', role: 'operator' };

let h: ReportingHarness;
let n = 0;

beforeAll(async () => {
  h = await startReportingHarness({ api: 'v1' });
});
afterAll(() => h?.close());
// Whatever an earlier test left pending is reported (or fails again) first, so the job queue starts empty.
beforeEach(() => h.drain());

/** Events of a customer Stripe does not know yet: they fail with resource_missing. */
async function failedEvents(count: number): Promise<{ ids: string[]; customerId: string; stripeId: string }> {
  const external = `retry-${++n}`;
  const stripeId = `cus_retry_${n}`;
  const customerId = await h.addCustomer(external, stripeId, { inSimulator: false });
  const ids = await h.ingest(Array.from({ length: count }, (_, i) => ({ customer: external, identifier: `${external}-${i}` })));
  await h.drain();
  const failed = await h.count(`SELECT count(*) FROM meter_events WHERE id = ANY($1::uuid[]) AND status = 'failed' AND last_error_code = 'resource_missing'`, [ids]);
  expect(failed).toBe(count);
  return { ids, customerId, stripeId };
}

async function statuses(ids: string[]): Promise<string[]> {
  return (await h.rows<{ status: string }>(`SELECT status::text FROM meter_events WHERE id = ANY($1::uuid[]) ORDER BY id`, [ids])).map((r) => r.status);
}

async function audits() {
  return h.rows<{ actor_label: string; action: string; subject_id: string | null; reason: string | null; before: Record<string, unknown>; after: Record<string, unknown> }>(
    `SELECT actor_label, action, subject_id, reason, before, after FROM audit_log WHERE action = 'meter_event.retry' ORDER BY id`,
  );
}

async function jobsQueued(): Promise<number> {
  return h.count(`SELECT count(*) FROM graphile_worker._private_jobs j JOIN graphile_worker._private_tasks t ON t.id = j.task_id WHERE t.identifier = 'stripe__report_events'`);
}

async function ageFirstAttempt(id: string, interval: string) {
  await h.services.pool.query(`UPDATE meter_events SET first_attempt_at = now() - $2::interval WHERE id = $1`, [id, interval]);
}

/** As the desk calls them: with a check of which customers Stripe (the simulator) knows now. */
const check = () => stripeCustomerCheck(new Stripe(SIMULATOR_SECRET_KEY, { ...stripeClientConfig(h.sim.url), maxNetworkRetries: 0 }));
const retryFailedEvents: typeof retryWith = (pool, request) => retryWith(pool, { customerCheck: check(), ...request });
const previewRetry: typeof previewWith = (pool, filter) => previewWith(pool, filter, check());

describe('retryFailedEvents', () => {
  it('moves one failed event back to pending with an audit entry and its report job; it is then reported', async () => {
    const { ids, stripeId } = await failedEvents(1);
    const before = (await audits()).length;
    h.sim.addCustomer(stripeId); // the operator fixed the cause
    const result = await retryFailedEvents(h.services.pool, { selection: { ids }, actor: operator });
    expect(result).toMatchObject({ moved: 1, movedIds: ids, refused: [], forced: false });
    expect(await statuses(ids)).toEqual(['pending']);
    expect(await jobsQueued()).toBe(1);
    const audit = (await audits()).slice(before);
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ actor_label: 'ops@example.test', subject_id: ids[0], before: { status: 'failed' }, after: { status: 'pending', moved: 1, ids } });

    await h.drain();
    expect(await statuses(ids)).toEqual(['reported']);
    expect(h.sim.countsByIdentifier().get(`retry-${n}-0`)).toBe(1);
    const [row] = await h.rows<{ attempts: number; last_error_code: string | null }>(`SELECT attempts, last_error_code FROM meter_events WHERE id = $1`, ids);
    expect(row).toEqual({ attempts: 2, last_error_code: null });
  });

  it('moves a selection, refusing (and reporting) the events past the 23 h guard', async () => {
    const { ids, stripeId } = await failedEvents(3);
    h.sim.addCustomer(stripeId);
    await ageFirstAttempt(ids[1]!, '23 hours 10 minutes');
    const result = await retryFailedEvents(h.services.pool, { selection: { ids }, actor: operator });
    expect(result.moved).toBe(2);
    expect(result.movedIds).toEqual([ids[0], ids[2]].sort());
    expect(result.refused).toEqual([expect.objectContaining({ id: ids[1], reason: 'dedupe_window' })]);
    expect(result.refusedCounts).toEqual({ dedupe_window: 1 });
    expect(await statuses(ids)).toEqual(['pending', 'failed', 'pending']);
    expect((await audits()).at(-1)!.after).toMatchObject({ moved: 2, refused: { dedupe_window: 1 } });
  });

  it('refuses a single event past the guard with a typed error and changes nothing', async () => {
    const { ids } = await failedEvents(1);
    await ageFirstAttempt(ids[0]!, '2 days');
    const auditsBefore = (await audits()).length;
    const error = await retryFailedEvents(h.services.pool, { selection: { ids }, actor: operator }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RetryRefusedError);
    expect((error as RetryRefusedError).refusals).toEqual([expect.objectContaining({ id: ids[0], reason: 'dedupe_window' })]);
    expect(await statuses(ids)).toEqual(['failed']);
    expect((await audits()).length).toBe(auditsBefore);
    expect(await jobsQueued()).toBe(0);
  });

  it('forcing needs a reason; with one it moves the event, starts a new dedupe window and audits the reason', async () => {
    const { ids, stripeId } = await failedEvents(1);
    await ageFirstAttempt(ids[0]!, '30 hours');
    await expect(retryFailedEvents(h.services.pool, { selection: { ids }, actor: operator, force: true, reason: '  ' })).rejects.toBeInstanceOf(ValidationError);
    expect(await statuses(ids)).toEqual(['failed']);

    h.sim.addCustomer(stripeId);
    const result = await retryFailedEvents(h.services.pool, {
      selection: { ids },
      actor: operator,
      force: true,
      reason: 'Checked in the Stripe dashboard: identifier never counted',
    });
    expect(result).toMatchObject({ moved: 1, forced: true });
    const [row] = await h.rows<{ status: string; first_attempt_at: Date | null }>(`SELECT status::text, first_attempt_at FROM meter_events WHERE id = $1`, ids);
    expect(row).toEqual({ status: 'pending', first_attempt_at: null });
    expect((await audits()).at(-1)).toMatchObject({ reason: 'Checked in the Stripe dashboard: identifier never counted', after: { force: true, forcedPastGuard: ids } });
    await h.drain();
    expect(await statuses(ids)).toEqual(['reported']);
  });

  it('retries everything matching a filter, scoped to one customer, with a preview count', async () => {
    const a = await failedEvents(4);
    const b = await failedEvents(2);
    await ageFirstAttempt(a.ids[3]!, '25 hours');
    const filter = { customerId: a.customerId, errorCode: 'resource_missing' };
    // Stripe does not know a's customer yet: the preview says a retry would skip all four, and why.
    expect(await previewRetry(h.services.pool, filter)).toMatchObject({ matching: 4, byCause: [{ cause: 'unknown_customer', fixed: 0, unchanged: 4 }] });
    h.sim.addCustomer(a.stripeId); // the operator fixed the cause
    expect(await previewRetry(h.services.pool, filter)).toEqual({
      matching: 4,
      retryable: 3,
      needsForce: 1,
      byCause: [{ cause: 'unknown_customer', label: 'Unknown customer', fixed: 4, unchanged: 0, fix: expect.stringContaining('Stripe does not know this customer') }],
    });
    expect(await previewRetry(h.services.pool, { ...filter, errorCode: 'something_else' })).toEqual({ matching: 0, retryable: 0, needsForce: 0, byCause: [] });

    const result = await retryFailedEvents(h.services.pool, { selection: { filter }, actor: operator });
    expect(result.moved).toBe(3);
    expect(result.refusedCounts).toEqual({ dedupe_window: 1 });
    expect(await statuses(a.ids)).toEqual(['pending', 'pending', 'pending', 'failed']);
    expect(await statuses(b.ids)).toEqual(['failed', 'failed']);
    expect((await audits()).at(-1)!.before).toMatchObject({ selection: { filter: { customerId: a.customerId, errorCode: 'resource_missing' } } });
    await h.drain();
  });

  it("limits an id selection to one customer's events when scoped, and refuses events that are not failed", async () => {
    const a = await failedEvents(1);
    const b = await failedEvents(1);
    h.sim.addCustomer(a.stripeId);
    const result = await retryFailedEvents(h.services.pool, { selection: { ids: [...a.ids, ...b.ids] }, actor: operator, customerId: a.customerId });
    expect(result.moved).toBe(1);
    expect(result.refused).toEqual([expect.objectContaining({ id: b.ids[0], reason: 'out_of_scope' })]);
    await h.drain();
    const again = await retryFailedEvents(h.services.pool, { selection: { ids: [...a.ids, '00000000-0000-7000-8000-000000000000'] }, actor: operator }).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(RetryRefusedError);
    expect((again as RetryRefusedError).refusals.map((r) => r.reason).sort()).toEqual(['not_failed', 'not_found']);
  });

  it('skips the events whose cause is unchanged, says so per cause, and re-sends them only when asked to anyway', async () => {
    const { ids } = await failedEvents(2); // Stripe still does not know the customer
    const refused = await retryFailedEvents(h.services.pool, { selection: { ids }, actor: operator }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(RetryRefusedError);
    expect((refused as RetryRefusedError).message).toBe(
      'None of the 2 events was retried: 2 skipped (Unknown customer): Stripe does not know this customer; create the customer in Stripe (or correct its id), then retry.',
    );
    expect(await statuses(ids)).toEqual(['failed', 'failed']);
    const anyway = await retryFailedEvents(h.services.pool, { selection: { ids }, actor: operator, anyway: true });
    expect(anyway).toMatchObject({ moved: 2, skipped: [] });
    expect((await audits()).at(-1)!.after).toMatchObject({ moved: 2, anyway: true });
  });

  it('re-sends a missing-definition failure once a meter defines the event name, and not before', async () => {
    const { ids, stripeId } = await failedEvents(3);
    h.sim.addCustomer(stripeId);
    // Two of them were refused for a meter nobody had defined (as Stripe's error report says it).
    await h.services.pool.query(
      `UPDATE meter_events SET event_name = 'api_calls_' || $2::text, meter_id = NULL, last_error_code = 'no_meter', last_error_message = 'No meter was found matching event_name.'
        WHERE id = ANY($1::uuid[])`,
      [ids.slice(0, 2), String(n)],
    );
    const first = await retryFailedEvents(h.services.pool, { selection: { ids }, actor: operator });
    expect(first.moved).toBe(1);
    expect(first.skipped).toEqual([{ cause: 'missing_definition', count: 2, sentence: expect.stringMatching(/^2 skipped \(No meter\): No meter defines this event name/) }]);
    expect((await audits()).at(-1)!.after).toMatchObject({ moved: 1, skippedByCause: { missing_definition: 2 } });
    await h.services.pool.query(`INSERT INTO meters (id, event_name, display_name, aggregation, updated_at) VALUES (gen_random_uuid(), $1, 'API calls', 'sum', now())`, [`api_calls_${n}`]);
    const second = await retryFailedEvents(h.services.pool, { selection: { ids: ids.slice(0, 2) }, actor: operator });
    expect(second).toMatchObject({ moved: 2, skipped: [] });
  });
});
