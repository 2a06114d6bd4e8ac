// The Stripe simulator's own routes under /__simulator/* (besides the common fault, reset and clock routes of
// simulators/kit): what it recorded, objects to seed, webhooks to send, and its configuration.
import { isObject, str, type ControlHandler } from '../kit/server';
import type { MeterOptions } from './meter-events';
import type { ConfigureOptions, SendWebhookOptions, StripeSimulator } from './types';

export function stripeControlRoutes(sim: StripeSimulator & { readonly webhookTarget: string | undefined }): Record<string, ControlHandler> {
  return {
    'GET /__simulator/meter_events': ({ query }) => {
      const identifier = query.get('identifier');
      const status = query.get('status');
      const data = sim.meterEvents().filter((e) => (!identifier || e.identifier === identifier) && (!status || e.status === status));
      return [200, { object: 'list', data, counts: Object.fromEntries(sim.countsByIdentifier()) }];
    },
    'POST /__simulator/customers': ({ fields: b }) => [200, { id: sim.addCustomer(str(b.id)) }],
    'POST /__simulator/meters': ({ fields: b }) => {
      const eventName = str(b.event_name);
      if (!eventName) return [400, { error: 'event_name is required' }];
      const opts: MeterOptions = {};
      if (str(b.id)) opts.id = str(b.id)!;
      if (str(b.display_name)) opts.displayName = str(b.display_name)!;
      if (str(b.customer_payload_key)) opts.customerPayloadKey = str(b.customer_payload_key)!;
      if (str(b.value_payload_key)) opts.valuePayloadKey = str(b.value_payload_key)!;
      const agg = str(b.aggregation);
      if (agg === 'sum' || agg === 'count' || agg === 'last') opts.aggregation = agg;
      const st = str(b.status);
      if (st === 'active' || st === 'inactive') opts.status = st;
      return [200, { id: sim.addMeter(eventName, opts) }];
    },
    'POST /__simulator/webhooks': async ({ fields: b }) => {
      const type = str(b.type);
      const object = isObject(b.object) ? b.object : isObject(b.data) ? b.data : undefined;
      if (!type || !object) return [400, { error: 'type and object (or data) are required' }];
      const opts: SendWebhookOptions = {};
      if (isObject(b.previous_attributes)) opts.previousAttributes = b.previous_attributes;
      if (isObject(b.related_object)) opts.relatedObject = b.related_object as unknown as SendWebhookOptions['relatedObject'];
      const r = await sim.sendWebhook(type, object, opts);
      return [200, { status: r.status, ok: r.ok, event_id: r.event_id, event: r.event }];
    },
    'GET /__simulator/webhook_deliveries': () => [200, { data: sim.webhookDeliveries() }],
    'GET /__simulator/events': () => [200, { data: sim.sentEvents() }],
    'POST /__simulator/flush_error_reports': async () => [200, { events: await sim.flushErrorReports() }],
    'GET /__simulator/adjustments': () => [200, { data: sim.adjustments() }],
    'POST /__simulator/config': ({ fields: b }) => {
      const opts: ConfigureOptions = {};
      if (b.webhook_url === null || typeof b.webhook_url === 'string') opts.webhookUrl = b.webhook_url;
      if (typeof b.webhook_secret === 'string') opts.webhookSecret = b.webhook_secret;
      if (typeof b.v1_rate_per_second === 'number') opts.v1RatePerSecond = b.v1_rate_per_second;
      if (typeof b.v2_events_per_second === 'number') opts.v2EventsPerSecond = b.v2_events_per_second;
      if (typeof b.latency_ms === 'number') opts.latencyMs = b.latency_ms;
      sim.configure(opts);
      return [200, { webhook_url: sim.webhookTarget ?? null, webhook_secret: sim.webhookSecret }];
    },
  };
}
