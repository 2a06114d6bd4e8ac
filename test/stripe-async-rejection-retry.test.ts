// The fault campaign's seed 3 (docs/reliability.md): Stripe accepted an event, then rejected it asynchronously (a
// meter error report); the operator's "retry anyway" re-sent it under the same identifier, which Stripe answers as a
// duplicate of the rejected event (v1: from the first call's Idempotency-Key; v2: the identifier is taken for 24 h),
// and counted nothing, while the ledger said reported. ADR 033: such a retry sends a new identifier derived from the
// original, recorded on the event. Both wire APIs, the real reporter and SDK against the simulator, the real webhook
// endpoint and task.
import type Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import type { Actor } from '../app/billing/audit';
import { retryFailedEvents, RetryRefusedError } from '../app/billing/ledger/retry';
import { derivedIdentifier, identifiersSent, resendNumber } from '../app/billing/ledger/sent-identifier';
import { EventDetailPresenter } from '../app/billing/ledger/event-list';
import { checkInvariants, type Accepted } from '../chaos/invariants';
import { METER, useErrorReportHarness } from './support/reporting';

const operator: Actor = { userId: null, label: 'ops@example.test', role: 'operator' };

describe('derivedIdentifier', () => {
  it('appends :r<n>, and keeps within Stripe\'s 100 characters with a prefix and a hash', () => {
    expect(derivedIdentifier('evt-1', 1)).toBe('evt-1:r1');
    expect(derivedIdentifier('evt-1', 12)).toBe('evt-1:r12');
    const long = 'x'.repeat(100);
    const d = derivedIdentifier(long, 1);
    expect(d).toHaveLength(100);
    expect(d).toMatch(/^x+~[0-9a-f]{16}:r1$/);
    // Two long identifiers with the same first 80 characters stay apart.
    expect(derivedIdentifier(`${'y'.repeat(99)}a`, 1)).not.toBe(derivedIdentifier(`${'y'.repeat(99)}b`, 1));
    expect(() => derivedIdentifier('evt', 0)).toThrow(RangeError);
  });

  it('reads back which resend a sent identifier is, and lists every identifier sent', () => {
    expect(resendNumber('evt-1', null)).toBe(0);
    expect(resendNumber('evt-1', 'evt-1:r3')).toBe(3);
    // A caller identifier that merely ends like a derived one is not a resend of another.
    expect(resendNumber('evt-1', 'other:r3')).toBe(0);
    expect(resendNumber('x'.repeat(100), derivedIdentifier('x'.repeat(100), 2))).toBe(2);
    expect(identifiersSent('evt-1', 'evt-1:r2')).toEqual(['evt-1', 'evt-1:r1', 'evt-1:r2']);
    expect(identifiersSent('evt-1', null)).toEqual(['evt-1']);
  });
});

for (const api of ['v1', 'v2'] as const) {
  describe(`retry of an event Stripe rejected after accepting it (${api})`, () => {
    const h = useErrorReportHarness(api);

    const row = async (id: string) =>
      (await h.rows<{ status: string; sent_identifier: string | null; first_attempt_at: Date | null; last_error_source: string | null }>(
        `SELECT status::text, sent_identifier, first_attempt_at, last_error_source::text FROM meter_events WHERE id = $1`,
        [id],
      ))[0]!;

    /** Stripe rejects `identifier` asynchronously: the report is delivered to our endpoint and processed. */
    async function rejectAfterAccept(identifier: string): Promise<void> {
      await h.deliverErrorReport(identifier);
      await h.processWebhooks();
    }

    it('accepted, rejected by an error report, retried anyway: Stripe counts it once under a new identifier and the ledger says reported', async () => {
      const identifier = `seed3-${api}`;
      const [id] = await h.ingest([{ customer: 'acme', identifier, value: 20 }]);
      h.sim.addFault({ kind: 'reject_after_accept', match: { identifier }, errorCode: 'chaos_rejected_after_accept', count: 1, delayMs: 0 });
      await h.drain();
      expect((await row(id!)).status).toBe('reported');
      await rejectAfterAccept(identifier);
      expect(await row(id!)).toMatchObject({ status: 'failed', sent_identifier: null, last_error_source: 'webhook' });
      expect(h.sim.countsByIdentifier().get(identifier)).toBeUndefined();

      // What seed 3 did: the same identifier again. The simulator, as Stripe documents, counts nothing for it.
      const again = await h.stripe.billing.meterEvents
        .create({ event_name: METER, identifier, payload: { stripe_customer_id: 'cus_acme', value: '20' } })
        .then(() => 'accepted', (e: Stripe.errors.StripeError) => e.message);
      expect(again).toBe(`An event already exists with identifier ${identifier}.`);
      expect(h.sim.countsByIdentifier().get(identifier)).toBeUndefined();

      const result = await retryFailedEvents(h.services.pool, { selection: { ids: [id!] }, actor: operator, anyway: true });
      expect(result.moved).toBe(1);
      // Recorded before anything is sent, with a new dedupe window.
      expect(await row(id!)).toMatchObject({ status: 'pending', sent_identifier: `${identifier}:r1`, first_attempt_at: null });
      const [audit] = await h.rows<{ after: { newIdentifiers: number } }>(`SELECT after FROM audit_log WHERE id = $1`, [result.auditId]);
      expect(audit!.after.newIdentifiers).toBe(1);

      await h.drain();
      expect(await row(id!)).toMatchObject({ status: 'reported', sent_identifier: `${identifier}:r1` });
      expect(h.sim.countsByIdentifier().get(`${identifier}:r1`)).toBe(1);
      expect(h.sim.countsByIdentifier().get(identifier)).toBeUndefined();
      expect(h.sim.usageTotal('cus_acme', METER)).toBe(20);

      // The event page names the identifier Stripe knows it by.
      const detail = await EventDetailPresenter.call(h.services.pool, id!);
      expect(detail).toMatchObject({ identifier, sentIdentifier: `${identifier}:r1` });

      // A second retry is refused (the event is reported), and a duplicate send (a report job run again, as after a
      // killed worker) goes out under the same new identifier and never double-counts.
      await expect(retryFailedEvents(h.services.pool, { selection: { ids: [id!] }, actor: operator, anyway: true })).rejects.toBeInstanceOf(RetryRefusedError);
      await h.services.pool.query(`UPDATE meter_events SET status = 'pending' WHERE id = $1`, [id]);
      expect(await h.reporting.reportEvents([id!])).toMatchObject({ claimed: 1, reported: 1 });
      expect((await row(id!)).status).toBe('reported');
      expect(h.sim.countsByIdentifier().get(`${identifier}:r1`)).toBe(1);
      expect(h.sim.usageTotal('cus_acme', METER)).toBe(20);

      // The host app later sends an event of its own under the identifier we derived (ADR 033's open case). Stripe
      // holds that identifier for our resend, so the ledger refuses it with a reason, in a batch and singly, and stores
      // nothing: before, it answered "duplicate" (of an archived event) and the host's event was lost.
      const before = (await h.rows<{ n: number }>(`SELECT count(*)::int AS n FROM meter_events`))[0]!.n;
      const [batch] = await h.services.ledger.reportUsageBatch([{ customer: 'acme', eventName: METER, value: 5, identifier: `${identifier}:r1` }]);
      const single = await h.services.committer.submit({ customer: 'acme', event_name: METER, value: 5, identifier: `${identifier}:r1` });
      for (const r of [batch, single]) {
        expect(r).toEqual({
          result: 'rejected',
          errors: [{ field: 'identifier', code: 'reserved', message: expect.stringContaining(`Meterdesk re-sent event ${identifier} to Stripe under it`) }],
        });
      }
      expect((await h.rows<{ n: number }>(`SELECT count(*)::int AS n FROM meter_events`))[0]!.n).toBe(before);

      // The fault campaign's checker agrees: counted once, under the identifier sent.
      const accepted = new Map<string, Accepted>([[identifier, { identifier, value: 20, customer: 'acme' }]]);
      const sim = { counts: Object.fromEntries(h.sim.countsByIdentifier()), data: h.sim.meterEvents().map((e) => ({ identifier: e.identifier, value: e.value, status: e.status })) };
      const violations = (await checkInvariants(h.services.pool, accepted, sim)).filter((v) => v.includes(identifier));
      expect(violations).toEqual([]);
      // ... and it would see the double count if the original identifier had been counted as well.
      const doubled = { ...sim, counts: { ...sim.counts, [identifier]: 1 } };
      expect((await checkInvariants(h.services.pool, accepted, doubled)).join('\n')).toMatch(new RegExp(`counted more than once by Stripe: \\d+ — .*${identifier}×2`));
    });

    it('a late error report about the identifier left behind does not fail the event sent under the new one; a rejection of the new one leads to :r2', async () => {
      const identifier = `seed3-late-${api}`;
      const [id] = await h.ingest([{ customer: 'acme', identifier, value: 7 }]);
      h.sim.addFault({ kind: 'reject_after_accept', match: { identifier }, errorCode: 'chaos_rejected_after_accept', count: 1, delayMs: 0 });
      await h.drain();
      await rejectAfterAccept(identifier);
      await retryFailedEvents(h.services.pool, { selection: { ids: [id!] }, actor: operator, anyway: true });
      // The new identifier is rejected too (after acceptance), and the report about it fails the event again.
      h.sim.addFault({ kind: 'reject_after_accept', match: { identifier: `${identifier}:r1` }, errorCode: 'chaos_rejected_after_accept', count: 1, delayMs: 0 });
      await h.drain();
      expect((await row(id!)).status).toBe('reported');
      await rejectAfterAccept(`${identifier}:r1`);
      expect(await row(id!)).toMatchObject({ status: 'failed', sent_identifier: `${identifier}:r1` });

      await retryFailedEvents(h.services.pool, { selection: { ids: [id!] }, actor: operator, anyway: true });
      expect((await row(id!)).sent_identifier).toBe(`${identifier}:r2`);
      await h.drain();
      expect((await row(id!)).status).toBe('reported');
      expect([identifier, `${identifier}:r1`, `${identifier}:r2`].map((i) => h.sim.countsByIdentifier().get(i) ?? 0)).toEqual([0, 0, 1]);

      // A report naming the first identifier again (a late or repeated report) leaves the event as it is.
      const client = await h.services.pool.connect();
      try {
        const { applyMeterErrorReport } = await import('../app/billing/processors/stripe/meter-error-reports');
        const note = await applyMeterErrorReport(client, { id: '0', processor_event_id: 'evt_late', type: 'v1.billing.meter.error_report_triggered' } as never, {
          data: { reason: { error_count: 1, error_types: [{ code: 'chaos_rejected_after_accept', error_count: 1, sample_errors: [{ error_message: 'late', request: { identifier } }] }] } },
        });
        expect(note).toBe(`moved 0 to failed; 1 no longer sent under the identifier named, left as they are: ${identifier} (now ${identifier}:r2, reported)`);
      } finally {
        client.release();
      }
      expect((await row(id!)).status).toBe('reported');
    });

    it('a synchronous refusal keeps the identifier: nothing was created at Stripe', async () => {
      const identifier = `sync-${api}`;
      await h.addCustomer('ghost', 'cus_ghost', { inSimulator: false });
      const [id] = await h.ingest([{ customer: 'ghost', identifier, value: 3 }]);
      await h.drain();
      if (api === 'v2') await rejectAfterAccept(identifier); // the stream refuses an unknown customer asynchronously
      const failed = await row(id!);
      expect(failed.status).toBe('failed');
      h.sim.addCustomer('cus_ghost');
      await retryFailedEvents(h.services.pool, { selection: { ids: [id!] }, actor: operator, anyway: true });
      await h.drain();
      // v1 refused it synchronously: same identifier. v2 refused it in an error report: a new one.
      const sentAs = api === 'v1' ? identifier : `${identifier}:r1`;
      expect(await row(id!)).toMatchObject({ status: 'reported', sent_identifier: api === 'v1' ? null : sentAs });
      expect(h.sim.countsByIdentifier().get(sentAs)).toBe(1);
    });
  });
}
