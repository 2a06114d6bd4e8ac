// A meter error report about an earlier send of an event the ledger sent again. The fault campaign's seed 5 found it
// (reconciliation: processor 934 above the ledger for one customer): a worker sent an event, Stripe answered 2xx and
// then refused it asynchronously (reject_after_accept), the worker died before recording the answer, the claim
// expired and the event was sent again, which Stripe counted (the refused first send left the identifier free);
// the error report about the first send, processed after that, failed an event Stripe counts. Here the same sequence
// runs deterministically (both wire APIs): the real reporter, the real SDK, the simulator, the webhook endpoint and task.
import { runOnce } from 'graphile-worker';
import Stripe from 'stripe';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createWebhookHandler } from '../app/api/webhooks';
import { graphileLogger } from '../app/db/prepare';
import { startHttpServer, type HttpServer } from '../app/server/http';
import { createProcessWebhookTask } from '../jobs/tasks/stripe__process_webhook';
import { SIMULATOR_SECRET_KEY } from '../simulators/stripe/simulator';
import { METER, startReportingHarness, type ReportingHarness } from './support/reporting';

for (const api of ['v1', 'v2'] as const) {
  describe(`meter error report about an earlier send (${api})`, () => {
    let h: ReportingHarness;
    let http: HttpServer;
    let stripe: Stripe;

    beforeAll(async () => {
      // Error reports leave the simulator only when the test flushes them.
      h = await startReportingHarness({ api, simulator: { errorReportDelayMs: 600_000 } });
      http = await startHttpServer({ port: 0, handlers: [createWebhookHandler({ pool: h.services.pool, stripeWebhookSecret: h.sim.webhookSecret })] });
      h.sim.configure({ webhookUrl: `${http.url}/webhooks/stripe` });
      stripe = new Stripe(SIMULATOR_SECRET_KEY, { ...h.sim.clientConfig, maxNetworkRetries: 0 });
      await h.addCustomer('acme', 'cus_acme');
    });
    afterAll(async () => {
      await http?.close();
      await h?.close();
    });
    afterEach(() => h.sim.clearFaults());

    const event = (id: string) => h.rows<{ status: string; last_error_code: string | null }>(`SELECT status::text, last_error_code FROM meter_events WHERE id = $1`, [id]).then((r) => r[0]!);

    async function processWebhooks(): Promise<void> {
      await runOnce({ pgPool: h.services.pool, logger: graphileLogger, concurrency: 1, noHandleSignals: true }, { stripe__process_webhook: createProcessWebhookTask({ stripe }) });
    }

    /** The refused send's error report, delivered to our endpoint and stored (not processed yet). */
    async function deliverErrorReport(identifier: string): Promise<string> {
      await vi.waitFor(() => expect(h.sim.meterEvents().some((e) => e.identifier === identifier && e.status === 'rejected')).toBe(true));
      expect(await h.sim.flushErrorReports()).toBe(1);
      const delivery = h.sim.webhookDeliveries().at(-1)!;
      expect(delivery).toMatchObject({ type: 'v1.billing.meter.error_report_triggered', status: 200 });
      return delivery.event_id;
    }

    const note = async (stripeEventId: string) =>
      (await h.rows<{ processed_at: Date | null; note: string | null }>(`SELECT processed_at, last_error AS note FROM webhook_events WHERE processor_event_id = $1`, [stripeEventId]))[0];

    /** What a worker that died between Stripe's 2xx and its own record of it had sent. */
    async function sendAndDie(id: string, identifier: string, value: number): Promise<void> {
      const [outcome] = await h.processor.reportMeterEvents([{ id, identifier, eventName: METER, processorCustomerId: 'cus_acme', value, occurredAt: new Date() }]);
      expect(outcome).toMatchObject({ outcome: 'reported' });
    }

    it('an event sent again after the refused send ends as Stripe counts it: reported after a new send (v2), failed after an idempotent replay (v1)', async () => {
      const identifier = `resent-${api}`;
      const [id] = await h.ingest([{ customer: 'acme', identifier, value: 934 }]);
      h.sim.addFault({ kind: 'reject_after_accept', match: { identifier }, errorCode: 'chaos_rejected_after_accept', count: 1, delayMs: 0 });
      await sendAndDie(id!, identifier, 934);
      const stripeEventId = await deliverErrorReport(identifier);
      await new Promise((r) => setTimeout(r, 5)); // the report's validation window ends before the next send begins

      await h.drain();
      expect(await event(id!)).toMatchObject({ status: 'reported' });
      await processWebhooks();
      const stored = await note(stripeEventId);
      expect(stored?.processed_at).toBeInstanceOf(Date);
      if (api === 'v2') {
        // The stream has no idempotency keys: the second send is a new event, and Stripe counts it.
        expect(h.sim.countsByIdentifier().get(identifier)).toBe(1);
        expect(await event(id!)).toEqual({ status: 'reported', last_error_code: null });
        expect(stored?.note).toBe(`moved 0 to failed; 1 sent again after the report's validation window, left to that send: ${identifier} (reported)`);
        expect(h.sim.usageTotal('cus_acme', METER)).toBe(934);
        expect(await h.count(`SELECT count(*) FROM ops_events WHERE type = 'meter_reporting_failed' AND subject_id = $1`, [id])).toBe(0);
      } else {
        // v1 resends with the same Idempotency-Key: Stripe answers from the refused first call and counts nothing,
        // so the report's verdict stands.
        expect(h.sim.countsByIdentifier().get(identifier)).toBeUndefined();
        const attempts = await h.rows<{ response: { idempotent_replayed?: boolean } }>(`SELECT response FROM event_attempts WHERE meter_event_id = $1 AND outcome = 'reported'`, [id]);
        expect(attempts.map((a) => a.response.idempotent_replayed)).toEqual([true]);
        expect(await event(id!)).toEqual({ status: 'failed', last_error_code: 'chaos_rejected_after_accept' });
        expect(stored?.note).toBeNull();
      }
    });

    it('the report still fails an event whose only send it refused', async () => {
      const identifier = `refused-${api}`;
      const [id] = await h.ingest([{ customer: 'acme', identifier, value: 5 }]);
      h.sim.addFault({ kind: 'reject_after_accept', match: { identifier }, errorCode: 'meter_event_customer_not_found', count: 1, delayMs: 0 });
      await h.drain();
      expect(await event(id!)).toMatchObject({ status: 'reported' });
      await deliverErrorReport(identifier);
      await processWebhooks();
      expect(await event(id!)).toEqual({ status: 'failed', last_error_code: 'meter_event_customer_not_found' });
      expect(h.sim.countsByIdentifier().get(identifier)).toBeUndefined();
    });
  });
}
