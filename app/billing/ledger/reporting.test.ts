// StripeReporting's bookkeeping against real PostgreSQL, with the in-memory processor fake (the Stripe paths
// with the real SDK and simulator are in test/stripe-reporting.test.ts).
import { beforeAll, expect, it } from 'vitest';
import { FakeMeterEventReporter } from '../../../test/support/fake-meter-event-reporter';
import { seedBase } from '../../seed/base';
import { StripeReporting } from './reporting';
import { useTestServices } from '../../../test/support/services';

const t = useTestServices();

beforeAll(async () => {
  await seedBase(t.services.prisma);
  await t.services.prisma.customer.create({ data: { externalId: 'fake', processor: 'stripe', processorCustomerId: 'cus_fake' } });
});

async function ingest(identifiers: string[]): Promise<string[]> {
  const results = await t.services.ledger.reportUsageBatch(identifiers.map((identifier) => ({ customer: 'fake', eventName: 'ai_tokens', identifier })));
  return results.map((r) => (r.result === 'rejected' ? '' : r.event.id));
}

it('concurrent runs over the same ids send each event once (SKIP LOCKED claim, claim guard)', async () => {
  const fake = new FakeMeterEventReporter({ batchSize: 50 });
  const reporting = new StripeReporting({ pool: t.services.pool, processor: fake });
  const ids = await ingest(Array.from({ length: 400 }, (_, i) => `conc-${i}`));
  const summaries = await Promise.all([reporting.reportEvents(ids), reporting.reportEvents(ids), reporting.reportEvents([...ids].reverse())]);
  expect(summaries.reduce((n, s) => n + s.claimed, 0)).toBe(400);
  expect(summaries.reduce((n, s) => n + s.reported, 0)).toBe(400);
  const sent = fake.calls.flat().map((e) => e.identifier);
  expect(sent).toHaveLength(400);
  expect(new Set(sent).size).toBe(400);
  const { rows } = await t.services.pool.query(`SELECT count(*)::int AS n FROM meter_events WHERE id = ANY($1::uuid[]) AND status = 'reported' AND attempts = 1`, [ids]);
  expect(rows[0].n).toBe(400);
});

it('an ambiguous answer keeps the event pending for a retry with the same identifier, which then counts as reported', async () => {
  const fake = new FakeMeterEventReporter().script('amb-1', { outcome: 'ambiguous', code: 'timeout', applied: true });
  const reporting = new StripeReporting({ pool: t.services.pool, processor: fake, transientBackoff: { baseMs: 1, maxMs: 1 } });
  const [id] = await ingest(['amb-1']);
  expect(await reporting.reportEvents([id!])).toMatchObject({ claimed: 1, retrying: 1, reported: 0 });
  const pending = await t.services.pool.query(`SELECT status::text, claimed_at, last_error_code, last_error_source::text FROM meter_events WHERE id = $1`, [id]);
  expect(pending.rows[0]).toEqual({ status: 'pending', claimed_at: null, last_error_code: 'timeout', last_error_source: 'sync' });
  // The backoff re-enqueued a report job for it.
  const jobs = await t.services.pool.query(`SELECT count(*)::int AS n FROM graphile_worker._private_jobs WHERE payload::jsonb->'eventIds' ? $1`, [id]);
  expect(jobs.rows[0].n).toBeGreaterThanOrEqual(1);

  expect(await reporting.reportEvents([id!])).toMatchObject({ claimed: 1, reported: 1 });
  expect(fake.counts.get('amb-1')).toBe(1);
  const attempts = await t.services.pool.query(`SELECT outcome::text FROM event_attempts WHERE meter_event_id = $1 ORDER BY started_at, id`, [id]);
  expect(attempts.rows.map((r) => r.outcome)).toEqual(['ambiguous', 'duplicate']);
});

it('a rejection fails the event once; a second run neither resends it nor records another ops event', async () => {
  const fake = new FakeMeterEventReporter().script('rej-1', { outcome: 'rejected', code: 'some_future_code', message: 'Stripe says no', httpStatus: 400 });
  const reporting = new StripeReporting({ pool: t.services.pool, processor: fake });
  const [id] = await ingest(['rej-1']);
  expect(await reporting.reportEvents([id!])).toMatchObject({ failed: 1 });
  expect(await reporting.reportEvents([id!])).toMatchObject({ claimed: 0, failed: 0 });
  expect(fake.calls.flat().filter((e) => e.identifier === 'rej-1')).toHaveLength(1);
  const row = await t.services.pool.query(`SELECT status::text, last_error_code, last_error_message FROM meter_events WHERE id = $1`, [id]);
  expect(row.rows[0]).toEqual({ status: 'failed', last_error_code: 'some_future_code', last_error_message: 'Stripe says no' });
  const ops = await t.services.pool.query(`SELECT count(*)::int AS n FROM ops_events WHERE type = 'meter_reporting_failed' AND subject_id = $1`, [id]);
  expect(ops.rows[0].n).toBe(1);
});
