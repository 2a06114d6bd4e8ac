// The Braintree simulator's own control routes (`/__simulator/*`, beside the kit's common ones): sales and
// customers as recorded, vault setup, signed webhooks, settlement and run-time configuration.
import type { ControlHandler } from '../kit/server';
import { isObject, str } from '../kit/server';
import type { BraintreeSimulator, ConfigureOptions, CustomerDetails, PaymentMethodOptions } from './types';
import type { WebhookSubject } from './webhooks';
import type { TransactionStatus } from './wire';

function subjectFrom(b: Record<string, unknown>): WebhookSubject {
  const subject = isObject(b.subject) ? b.subject : b;
  const out: WebhookSubject = {};
  if (isObject(subject.subscription)) out.subscription = subject.subscription as unknown as WebhookSubject['subscription'];
  if (typeof subject.xml === 'string') out.xml = subject.xml;
  return out;
}

export function controlRoutes(sim: BraintreeSimulator, config: () => Record<string, unknown>): Record<string, ControlHandler> {
  return {
    'GET /__simulator/sales': ({ query }) => {
      const orderId = query.get('order_id') ?? undefined;
      const status = (query.get('status') ?? undefined) as TransactionStatus | undefined;
      const filter: { orderId?: string; status?: TransactionStatus } = {};
      if (orderId !== undefined) filter.orderId = orderId;
      if (status !== undefined) filter.status = status;
      return [200, { data: sim.sales(filter), counts: Object.fromEntries(sim.salesByOrderId()), approved_counts: Object.fromEntries(sim.approvedSalesByOrderId()) }];
    },
    'GET /__simulator/sales/:id': (_c, id) => {
      const view = sim.transaction(id);
      return view ? [200, view] : [404, { error: 'no such transaction' }];
    },
    'POST /__simulator/customers': ({ fields: b }) => {
      const details: CustomerDetails = {};
      if (typeof b.first_name === 'string') details.firstName = b.first_name;
      if (typeof b.last_name === 'string') details.lastName = b.last_name;
      if (typeof b.email === 'string') details.email = b.email;
      if (typeof b.company === 'string') details.company = b.company;
      return [200, { id: sim.addCustomer(str(b.id), details) }];
    },
    'GET /__simulator/customers/:id': (_c, id) => {
      const view = sim.customer(id);
      return view ? [200, view] : [404, { error: 'no such customer' }];
    },
    'POST /__simulator/payment_methods': ({ fields: b }) => {
      const customerId = str(b.customer_id);
      if (!customerId) return [400, { error: 'customer_id is required' }];
      const opts: PaymentMethodOptions = {};
      if (b.kind === 'credit_card' || b.kind === 'paypal_account') opts.kind = b.kind;
      if (typeof b.make_default === 'boolean') opts.makeDefault = b.make_default;
      return [200, { token: sim.addPaymentMethod(customerId, str(b.token), opts) }];
    },
    'DELETE /__simulator/payment_methods/:id': (_c, id) => [200, { deleted: sim.removePaymentMethod(id) }],
    'POST /__simulator/webhooks': async ({ fields: b }) => {
      const kind = str(b.kind);
      if (!kind) return [400, { error: 'kind is required' }];
      const r = await sim.sendWebhook(kind, subjectFrom(b));
      return [200, { status: r.status, ok: r.ok, bt_signature: r.webhook.bt_signature, bt_payload: r.webhook.bt_payload }];
    },
    'POST /__simulator/webhooks/build': ({ fields: b }) => {
      const kind = str(b.kind);
      if (!kind) return [400, { error: 'kind is required' }];
      const w = sim.buildWebhook(kind, subjectFrom(b));
      return [200, { bt_signature: w.bt_signature, bt_payload: w.bt_payload }];
    },
    'GET /__simulator/webhook_deliveries': () => [200, { data: sim.webhookDeliveries() }],
    'POST /__simulator/settle': ({ fields: b }) => [200, { settled: sim.settle(str(b.transaction_id)) }],
    'POST /__simulator/config': ({ fields: b }) => {
      const opts: ConfigureOptions = {};
      if (b.webhook_url === null || typeof b.webhook_url === 'string') opts.webhookUrl = b.webhook_url;
      if (typeof b.latency_ms === 'number') opts.latencyMs = b.latency_ms;
      if (typeof b.sale_latency_ms === 'number') opts.saleLatencyMs = b.sale_latency_ms;
      if (typeof b.amount_rules === 'boolean') opts.amountRules = b.amount_rules;
      if (typeof b.token_rules === 'boolean') opts.tokenRules = b.token_rules;
      if (typeof b.duplicate_window_ms === 'number') opts.duplicateWindowMs = b.duplicate_window_ms;
      if (typeof b.rate_per_second === 'number') opts.ratePerSecond = b.rate_per_second;
      sim.configure(opts);
      return [200, config()];
    },
  };
}
