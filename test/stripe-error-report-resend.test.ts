// A meter error report about an earlier send of an event the ledger sent again. The fault campaign's seed 5 found it
// (reconciliation: processor 934 above the ledger for one customer): a worker sent an event, Stripe answered 2xx and
// then refused it asynchronously (reject_after_accept), the worker died before recording the answer, the claim
// expired and the event was sent again, which the simulator then counted (it freed a refused identifier); the error
// report about the first send, processed after that, failed an event it counted. ADR 033 settled that freeing as
// unsupported by Stripe's docs (identifier uniqueness for at least 24 hours, no exception for rejected events): the
// later send is a duplicate that counts nothing, so the report's verdict stands, with an attention reason in case
// Stripe did count it, and only a forced retry (under a new identifier) re-sends it. Here the same sequence runs
// deterministically (both wire APIs): the real reporter, the real SDK, the simulator, the webhook endpoint and task.
import { describe, expect, it } from 'vitest';
import { previewRetry, retryFailedEvents, RetryRefusedError } from '../app/billing/ledger/retry';
import { RESENT_AFTER_REPORT_ATTENTION } from '../app/billing/processors/stripe/meter-error-reports';
import { METER, useErrorReportHarness } from './support/reporting';

for (const api of ['v1', 'v2'] as const) {
  describe(`meter error report about an earlier send (${api})`, () => {
    const h = useErrorReportHarness(api);

    const event = (id: string) => h.rows<{ status: string; last_error_code: string | null }>(`SELECT status::text, last_error_code FROM meter_events WHERE id = $1`, [id]).then((r) => r[0]!);

    const note = async (stripeEventId: string) =>
      (await h.rows<{ processed_at: Date | null; note: string | null }>(`SELECT processed_at, last_error AS note FROM webhook_events WHERE processor_event_id = $1`, [stripeEventId]))[0];

    /** What a worker that died between Stripe's 2xx and its own record of it had sent. */
    async function sendAndDie(id: string, identifier: string, value: number): Promise<void> {
      const [outcome] = await h.processor.reportMeterEvents([{ id, identifier, eventName: METER, processorCustomerId: 'cus_acme', value, occurredAt: new Date() }]);
      expect(outcome).toMatchObject({ outcome: 'reported' });
    }

    it('an event sent again after the refused send is failed by the report, counted nowhere; a forced retry sends a new identifier Stripe counts once', async () => {
      const identifier = `resent-${api}`;
      const [id] = await h.ingest([{ customer: 'acme', identifier, value: 934 }]);
      h.sim.addFault({ kind: 'reject_after_accept', match: { identifier }, errorCode: 'chaos_rejected_after_accept', count: 1, delayMs: 0 });
      await sendAndDie(id!, identifier, 934);
      const stripeEventId = await h.deliverErrorReport(identifier);
      await new Promise((r) => setTimeout(r, 5)); // the report's validation window ends before the next send begins

      await h.drain();
      expect(await event(id!)).toMatchObject({ status: 'reported' });
      await h.processWebhooks();
      const stored = await note(stripeEventId);
      expect(stored?.processed_at).toBeInstanceOf(Date);
      // v2: the identifier is taken, so the stream dropped the second send as a duplicate; v1: the same Idempotency-Key
      // was answered from the refused first call. Either way Stripe counted nothing and the report's verdict stands.
      expect(h.sim.countsByIdentifier().get(identifier)).toBeUndefined();
      expect(await event(id!)).toEqual({ status: 'failed', last_error_code: 'chaos_rejected_after_accept' });
      const [row] = await h.rows<{ attention_reason: string | null }>(`SELECT attention_reason FROM meter_events WHERE id = $1`, [id]);
      const attempts = await h.rows<{ response: { idempotent_replayed?: boolean } }>(`SELECT response FROM event_attempts WHERE meter_event_id = $1 AND outcome = 'reported' AND source = 'sync'`, [id]);
      if (api === 'v2') {
        expect(row!.attention_reason).toBe(RESENT_AFTER_REPORT_ATTENTION);
        expect(stored?.note).toBe(`moved 1 to failed; 1 had been sent again after the report's validation window, failed with an attention reason: ${identifier}`);
      } else {
        expect(attempts.map((a) => a.response.idempotent_replayed)).toEqual([true]);
        expect(row!.attention_reason).toBeNull();
        expect(stored?.note).toBeNull();
      }

      // A retry "anyway" without force is refused for the re-sent v2 event (Stripe might have counted that send); with
      // force (v2) or plainly (v1) it goes out under a new identifier and Stripe counts it once.
      const actor = { userId: null, label: 'ops@example.test', role: 'operator' as const };
      // The preview before "retry all matching" says so too: this event needs force (v2), or not (v1).
      const customerId = h.customers.get('acme')!;
      expect(await previewRetry(h.services.pool, { customerId, errorCode: 'chaos_rejected_after_accept' })).toMatchObject({
        matching: 1,
        needsForce: api === 'v2' ? 1 : 0,
        retryable: api === 'v2' ? 0 : 1,
      });
      if (api === 'v2') {
        await expect(retryFailedEvents(h.services.pool, { selection: { ids: [id!] }, actor, anyway: true })).rejects.toBeInstanceOf(RetryRefusedError);
        await retryFailedEvents(h.services.pool, { selection: { ids: [id!] }, actor, anyway: true, force: true, reason: 'checked Stripe: not counted' });
      } else {
        await retryFailedEvents(h.services.pool, { selection: { ids: [id!] }, actor, anyway: true });
      }
      await h.drain();
      expect(await event(id!)).toEqual({ status: 'reported', last_error_code: null });
      expect(h.sim.countsByIdentifier().get(`${identifier}:r1`)).toBe(1);
      expect(h.sim.countsByIdentifier().get(identifier)).toBeUndefined();
      expect(h.sim.usageTotal('cus_acme', METER)).toBe(934);
    });

    it('the report still fails an event whose only send it refused', async () => {
      const identifier = `refused-${api}`;
      const [id] = await h.ingest([{ customer: 'acme', identifier, value: 5 }]);
      h.sim.addFault({ kind: 'reject_after_accept', match: { identifier }, errorCode: 'meter_event_customer_not_found', count: 1, delayMs: 0 });
      await h.drain();
      expect(await event(id!)).toMatchObject({ status: 'reported' });
      await h.deliverErrorReport(identifier);
      await h.processWebhooks();
      expect(await event(id!)).toEqual({ status: 'failed', last_error_code: 'meter_event_customer_not_found' });
      expect(h.sim.countsByIdentifier().get(identifier)).toBeUndefined();
    });
  });
}
