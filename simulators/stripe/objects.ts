// Stripe objects as the simulator answers them, shaped like Stripe's own examples (stripe/openapi fixtures3.json
// and stripe-node's generated examples; test/conformance/stripe checks every key and JSON type against them).
import type { CustomerRecord, MeterEventAdjustmentRecord, MeterRecord, SummaryWindow } from './meter-events';

const iso = (ms: number) => new Date(ms).toISOString();

export function meterJson(m: MeterRecord, livemode: boolean): Record<string, unknown> {
  return {
    id: m.id,
    object: 'billing.meter',
    created: m.created,
    customer_mapping: { event_payload_key: m.customerKey, type: 'by_id' },
    default_aggregation: { formula: m.aggregation },
    display_name: m.display_name,
    event_name: m.event_name,
    event_time_window: null,
    livemode,
    status: m.status,
    status_transitions: { deactivated_at: m.deactivated_at },
    updated: m.updated,
    value_settings: { event_payload_key: m.valueKey },
  };
}

export function customerJson(c: CustomerRecord, livemode: boolean): Record<string, unknown> {
  return {
    id: c.id,
    object: 'customer',
    address: null,
    balance: 0,
    created: c.created,
    currency: null,
    default_source: null,
    delinquent: false,
    description: null,
    discount: null,
    email: c.email,
    invoice_prefix: c.id.slice(4, 12).toUpperCase(),
    invoice_settings: { custom_fields: null, default_payment_method: null, footer: null, rendering_options: null },
    livemode,
    metadata: c.metadata,
    name: c.name,
    next_invoice_sequence: 1,
    phone: null,
    preferred_locales: [],
    shipping: null,
    tax_exempt: 'none',
    test_clock: null,
  };
}

export function meterEventJson(
  api: 'v1' | 'v2',
  e: { eventName: string; identifier: string; payload: Record<string, string>; timestampSec: number; createdMs: number },
  livemode: boolean,
): Record<string, unknown> {
  return api === 'v1'
    ? {
        object: 'billing.meter_event',
        created: Math.floor(e.createdMs / 1000),
        event_name: e.eventName,
        identifier: e.identifier,
        livemode,
        payload: e.payload,
        timestamp: e.timestampSec,
      }
    : {
        object: 'v2.billing.meter_event',
        created: iso(e.createdMs),
        event_name: e.eventName,
        identifier: e.identifier,
        livemode,
        payload: e.payload,
        timestamp: iso(e.timestampSec * 1000),
      };
}

export function adjustmentJson(api: 'v1' | 'v2', adj: MeterEventAdjustmentRecord, livemode: boolean): Record<string, unknown> {
  const common = { cancel: { identifier: adj.identifier }, event_name: adj.event_name, livemode, status: 'pending', type: 'cancel' };
  return api === 'v1'
    ? { object: 'billing.meter_event_adjustment', ...common }
    : { id: adj.id, object: 'v2.billing.meter_event_adjustment', created: iso(adj.created), ...common };
}

export function sessionJson(s: { id: string; token: string; createdMs: number; expiresAtMs: number }, livemode: boolean): Record<string, unknown> {
  return {
    id: s.id,
    object: 'v2.billing.meter_event_session',
    authentication_token: s.token,
    created: iso(s.createdMs),
    expires_at: iso(s.expiresAtMs),
    livemode,
  };
}

export function summaryJson(meter: MeterRecord, customer: string, w: SummaryWindow, livemode: boolean): Record<string, unknown> {
  return {
    id: `mtrusg_test_${Buffer.from(`${meter.id}|${customer}|${w.startTime}|${w.endTime}`).toString('base64url')}`,
    object: 'billing.meter_event_summary',
    aggregated_value: w.value,
    end_time: w.endTime,
    livemode,
    meter: meter.id,
    start_time: w.startTime,
  };
}
