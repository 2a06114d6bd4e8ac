// What the Stripe simulator knows about Billing Meters: customers, meters, every meter event it took or refused, the
// 24 h identifier window, cancellations, and the per-customer summaries. Validation follows Stripe's documented
// rules and error codes (docs/conformance.md lists the sources); the HTTP side is in ./api.ts.
import { str } from '../kit/server';
import { invalidRequest, missingParam, randomId, type ApiMode, type WireResponse } from './wire';

/**
 * The meter event error codes Stripe documents, for error reports (v1.billing.meter.error_report_triggered /
 * no_meter_found) and the v2 stream's asynchronous validation: the "Handle meter event errors" guide
 * (docs.stripe.com/billing/subscriptions/usage-based/recording-usage-api) and the API's open enum (stripe-node
 * 23.1.0, V2/Core/Events.d.ts ErrorType.Code). The list is open-ended on Stripe's side: consumers store unknown codes.
 * The simulator produces the ones its validation can find; every one of them can be scripted with a
 * `reject_after_accept` fault (`errorCode`).
 */
export const METER_ERROR_CODES = [
  'archived_meter',
  'meter_event_customer_not_found',
  'meter_event_dimension_count_too_high',
  'meter_event_invalid_value',
  'meter_event_no_customer_defined',
  // In the guide's list, not in the API enum: kept, since the guide is what integrators read.
  'meter_event_value_not_found',
  // Since API version 2026-04-22.dahlia (changelog "billing-meter-event-values-validation").
  'meter_event_value_too_many_digits',
  'missing_dimension_payload_keys',
  // Only ever in v1.billing.meter.no_meter_found.
  'no_meter',
  'timestamp_in_future',
  'timestamp_too_far_in_past',
] as const;
export type MeterErrorCode = (typeof METER_ERROR_CODES)[number];

const DAY_MS = 86_400_000;
const PAST_WINDOW_SEC = 35 * 86_400;
const FUTURE_WINDOW_SEC = 5 * 60;
/** Stripe refuses values with more than 15 significant digits (API 2026-04-22.dahlia). */
const MAX_VALUE_DIGITS = 15;

export interface MeterOptions {
  id?: string;
  displayName?: string;
  /** customer_mapping.event_payload_key, default stripe_customer_id. */
  customerPayloadKey?: string;
  /** value_settings.event_payload_key, default value. */
  valuePayloadKey?: string;
  aggregation?: 'sum' | 'count' | 'last';
  status?: 'active' | 'inactive';
}

export type MeterEventStatus = 'accepted' | 'rejected' | 'cancelled';

export interface RecordedMeterEvent {
  identifier: string;
  event_name: string;
  customer: string;
  value: number;
  /** Unix seconds (the event's usage time). */
  timestamp: number;
  payload: Record<string, string>;
  api: 'v1' | 'v2' | 'v2_stream';
  /** Business clock ms when the simulator accepted (or rejected) it. */
  received_at: number;
  status: MeterEventStatus;
  /** For rejected events: the error report code. */
  error_code?: string;
  error_message?: string;
  meter_id?: string;
  /** How many times Stripe has counted this identifier (accepted or later cancelled, not rejected). Must be 1. */
  accepted: number;
}

export interface MeterEventAdjustmentRecord {
  id: string;
  api: 'v1' | 'v2';
  event_name: string;
  identifier: string;
  /** Whether a counted event with that identifier was found and cancelled. */
  applied: boolean;
  created: number;
}

export interface MeterRecord {
  id: string;
  event_name: string;
  display_name: string;
  status: 'active' | 'inactive';
  customerKey: string;
  valueKey: string;
  aggregation: 'sum' | 'count' | 'last';
  created: number;
  updated: number;
  deactivated_at: number | null;
}

export interface CustomerRecord {
  id: string;
  created: number;
  email: string | null;
  name: string | null;
  metadata: Record<string, string>;
}

export type MeterEventRecord = Omit<RecordedMeterEvent, 'accepted'>;

/** An error waiting for the next error report. */
export interface PendingError {
  code: string;
  message: string;
  identifier: string;
  meterId: string | undefined;
  at: number;
}

export type Verdict =
  | { ok: true; meter: MeterRecord; customer: string; value: number }
  | { ok: false; code: string; message: string; meter: MeterRecord | undefined; duplicate?: true; sync: (api: ApiMode) => WireResponse };

export interface SummaryWindow {
  startTime: number;
  endTime: number;
  value: number;
}

export function stringPayload(payload: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(payload)) {
    const s = str(v);
    if (s !== undefined) out[k] = s;
  }
  return out;
}

/** Digits of a decimal number without sign, point, leading zeros and (after a point) trailing zeros. */
export function significantDigits(raw: string): number {
  const m = /^[+-]?(\d*)(?:\.(\d*))?(?:[eE][+-]?\d+)?$/.exec(raw.trim());
  if (!m) return 0;
  const fraction = (m[2] ?? '').replace(/0+$/, '');
  return `${m[1] ?? ''}${fraction}`.replace(/^0+/, '').length;
}

export class MeterEventBook {
  readonly customers = new Map<string, CustomerRecord>();
  readonly metersById = new Map<string, MeterRecord>();
  readonly metersByEvent = new Map<string, MeterRecord>();
  records: MeterEventRecord[] = [];
  /**
   * Latest record per identifier Stripe received, counted or rejected later: the 24 h uniqueness window. Stripe
   * documents "We will enforce uniqueness within a rolling period of at least 24 hours" (v1 `identifier`; v2: "within a
   * rolling 24 hour period") and names no exception for an event its asynchronous validation refused, nor says that
   * such an identifier is free again. The simulator takes the reading a client cannot get wrong by relying on it: an
   * identifier is taken from the moment Stripe received it, whatever became of its event, so a re-send under it is a
   * duplicate (v1 400 "An event already exists", the stream drops it). Documented separately, a v1 re-send with the
   * same Idempotency-Key is answered from the first call ("Subsequent requests with the same key return the same
   * result", docs.stripe.com/api/idempotent_requests) and runs nothing. Meterdesk re-sends a rejected event under a
   * new identifier (docs/decisions/032-resend-under-a-derived-identifier.md).
   */
  private readonly byIdentifier = new Map<string, MeterEventRecord>();
  readonly counts = new Map<string, number>();
  adjustments: MeterEventAdjustmentRecord[] = [];
  duplicateIdentifiers = 0;
  rejectedAfterAccept = 0;
  cancelled = 0;

  constructor(
    private readonly now: () => number,
    /** Called for every asynchronous rejection, to be sent in the next error report. */
    private readonly onError: (error: PendingError) => void,
  ) {}

  /** Forgets traffic; `all` also forgets customers and meters. */
  reset(all: boolean): void {
    this.records = [];
    this.byIdentifier.clear();
    this.counts.clear();
    this.adjustments = [];
    this.duplicateIdentifiers = 0;
    this.rejectedAfterAccept = 0;
    this.cancelled = 0;
    if (all) {
      this.customers.clear();
      this.metersById.clear();
      this.metersByEvent.clear();
    }
  }

  addCustomer(id?: string): CustomerRecord {
    const customerId = id ?? randomId('cus_', 14);
    let c = this.customers.get(customerId);
    if (!c) {
      c = { id: customerId, created: Math.floor(this.now() / 1000), email: null, name: null, metadata: {} };
      this.customers.set(customerId, c);
    }
    return c;
  }

  addMeter(eventName: string, opts: MeterOptions = {}): MeterRecord {
    const existing = this.metersByEvent.get(eventName);
    if (existing && existing.status === 'active' && (opts.status ?? 'active') === 'active' && !opts.id) return existing;
    const nowSec = Math.floor(this.now() / 1000);
    const meter: MeterRecord = {
      id: opts.id ?? randomId('mtr_test_', 24),
      event_name: eventName,
      display_name: opts.displayName ?? eventName,
      status: opts.status ?? 'active',
      customerKey: opts.customerPayloadKey ?? 'stripe_customer_id',
      valueKey: opts.valuePayloadKey ?? 'value',
      aggregation: opts.aggregation ?? 'sum',
      created: nowSec,
      updated: nowSec,
      deactivated_at: opts.status === 'inactive' ? nowSec : null,
    };
    this.metersById.set(meter.id, meter);
    this.metersByEvent.set(eventName, meter);
    return meter;
  }

  setMeterStatus(meter: MeterRecord, status: 'active' | 'inactive'): void {
    const nowSec = Math.floor(this.now() / 1000);
    meter.status = status;
    meter.updated = nowSec;
    meter.deactivated_at = status === 'inactive' ? nowSec : null;
    if (status === 'active') this.metersByEvent.set(meter.event_name, meter);
  }

  /** The customer a request's payload names, by the meter's customer mapping (for faults and the per-customer lock). */
  customerOf(eventName: string | undefined, payload: Record<string, unknown>): string | undefined {
    const meter = eventName ? this.metersByEvent.get(eventName) : undefined;
    return str(payload[meter?.customerKey ?? 'stripe_customer_id']);
  }

  validate(eventName: string, payload: Record<string, unknown>, identifier: string, tsSec: number): Verdict {
    const meter = this.metersByEvent.get(eventName);
    if (!meter || meter.status !== 'active') {
      // verified: "No active meter found for event name" (sync) and "No meter was found matching event_name X." (async).
      const sync = (api: ApiMode) =>
        invalidRequest(api, `No active meter found for event name "${eventName}".`, { code: 'resource_missing', param: 'event_name' });
      return meter
        ? { ok: false, code: 'archived_meter', message: `Meter ${meter.id} for event_name ${eventName} is not active.`, meter, sync }
        : { ok: false, code: 'no_meter', message: `No meter was found matching event_name ${eventName}.`, meter: undefined, sync };
    }
    const fail = (code: MeterErrorCode, message: string, sync: (api: ApiMode) => WireResponse): Verdict => ({ ok: false, code, message, meter, sync });
    const customer = str(payload[meter.customerKey]);
    if (!customer) {
      // verified wording (Stripe docs example).
      return fail('meter_event_no_customer_defined', `Customer mapping key ${meter.customerKey} not found in payload.`, (api) => missingParam(api, `payload[${meter.customerKey}]`));
    }
    if (!this.customers.has(customer)) {
      return fail('meter_event_customer_not_found', `Customer ${customer} not found.`, (api) =>
        invalidRequest(api, `No such customer: '${customer}'`, { code: 'resource_missing', param: `payload[${meter.customerKey}]` }),
      );
    }
    let value = 1;
    const rawValue = str(payload[meter.valueKey]);
    if (rawValue === undefined) {
      if (meter.aggregation !== 'count') {
        return fail('meter_event_value_not_found', `Value key ${meter.valueKey} not found in payload.`, (api) => missingParam(api, `payload[${meter.valueKey}]`));
      }
    } else {
      value = rawValue.trim() === '' ? Number.NaN : Number(rawValue);
      if (!Number.isFinite(value)) {
        return fail('meter_event_invalid_value', `Value ${rawValue} for key ${meter.valueKey} is not a valid number.`, (api) =>
          invalidRequest(api, `Invalid value for payload[${meter.valueKey}]: '${rawValue}' is not a number.`, { param: `payload[${meter.valueKey}]` }),
        );
      }
      if (significantDigits(rawValue) > MAX_VALUE_DIGITS) {
        // verified wording (changelog 2026-04-22.dahlia, "billing-meter-event-values-validation").
        const message = `The value in the event payload can have at most ${MAX_VALUE_DIGITS} digits. Received ${rawValue}.`;
        return fail('meter_event_value_too_many_digits', message, (api) => invalidRequest(api, message, { param: `payload[${meter.valueKey}]` }));
      }
    }
    const nowSec = Math.floor(this.now() / 1000);
    if (tsSec < nowSec - PAST_WINDOW_SEC) {
      const message = 'Timestamp must be within the past 35 calendar days.';
      return fail('timestamp_too_far_in_past', message, (api) => invalidRequest(api, message, { param: 'timestamp' }));
    }
    if (tsSec > nowSec + FUTURE_WINDOW_SEC) {
      const message = 'Timestamp must not be more than 5 minutes in the future.';
      return fail('timestamp_in_future', message, (api) => invalidRequest(api, message, { param: 'timestamp' }));
    }
    const previous = this.byIdentifier.get(identifier);
    if (previous && previous.received_at + DAY_MS > this.now()) {
      // Stripe documents that an identifier is unique over a rolling 24 h and gives a duplicate no error code. The
      // synchronous APIs answer this 400 (its message is what integrations match on); the stream drops it silently.
      const message = `An event already exists with identifier ${identifier}.`;
      return { ok: false, code: '', message, meter, duplicate: true, sync: (api) => invalidRequest(api, message, { param: 'identifier' }) };
    }
    return { ok: true, meter, customer, value };
  }

  accept(api: MeterEventRecord['api'], identifier: string, eventName: string, payload: Record<string, string>, tsSec: number, verdict: Extract<Verdict, { ok: true }>): MeterEventRecord {
    const record: MeterEventRecord = {
      identifier,
      event_name: eventName,
      customer: verdict.customer,
      value: verdict.value,
      timestamp: tsSec,
      payload,
      api,
      received_at: this.now(),
      status: 'accepted',
      meter_id: verdict.meter.id,
    };
    this.records.push(record);
    this.byIdentifier.set(identifier, record);
    this.counts.set(identifier, (this.counts.get(identifier) ?? 0) + 1);
    return record;
  }

  /** Asynchronous rejection of a stream event: recorded as rejected and sent in the next error report. */
  rejectAsync(identifier: string, eventName: string, payload: Record<string, string>, tsSec: number, verdict: Extract<Verdict, { ok: false }>): void {
    const value = Number(payload[verdict.meter?.valueKey ?? 'value']);
    const record: MeterEventRecord = {
      identifier,
      event_name: eventName,
      customer: payload[verdict.meter?.customerKey ?? 'stripe_customer_id'] ?? '',
      value: Number.isFinite(value) ? value : 0,
      timestamp: tsSec,
      payload,
      api: 'v2_stream',
      received_at: this.now(),
      status: 'rejected',
      error_code: verdict.code,
      error_message: verdict.message,
    };
    if (verdict.meter) record.meter_id = verdict.meter.id;
    this.records.push(record);
    this.byIdentifier.set(identifier, record);
    this.onError({ code: verdict.code, message: verdict.message, identifier, meterId: verdict.meter?.id, at: this.now() });
  }

  /** Stripe took the call, then its asynchronous pipeline refuses the event (a `reject_after_accept` fault). */
  rejectAccepted(record: MeterEventRecord, code: string, message: string): void {
    if (record.status !== 'accepted') return;
    record.status = 'rejected';
    record.error_code = code;
    record.error_message = message;
    const n = (this.counts.get(record.identifier) ?? 1) - 1;
    if (n > 0) this.counts.set(record.identifier, n);
    else this.counts.delete(record.identifier);
    // The identifier stays taken (see byIdentifier): a re-send under it within 24 h is a duplicate, not a new event.
    this.rejectedAfterAccept += 1;
    this.onError({ code, message, identifier: record.identifier, meterId: record.meter_id, at: this.now() });
  }

  cancel(api: 'v1' | 'v2', eventName: string, identifier: string): MeterEventAdjustmentRecord {
    const record = this.byIdentifier.get(identifier);
    const applied = !!record && record.status === 'accepted' && record.event_name === eventName;
    if (applied) {
      record.status = 'cancelled';
      this.cancelled += 1;
    }
    const adj: MeterEventAdjustmentRecord = { id: randomId(api === 'v1' ? 'bmea_' : 'mea_test_', 24), api, event_name: eventName, identifier, applied, created: this.now() };
    this.adjustments.push(adj);
    return adj;
  }

  view(): RecordedMeterEvent[] {
    return this.records.map((r) => ({ ...r, payload: { ...r.payload }, accepted: this.counts.get(r.identifier) ?? 0 }));
  }

  usageTotal(customer: string, eventName: string): number {
    let total = 0;
    for (const r of this.records) if (r.status === 'accepted' && r.customer === customer && r.event_name === eventName) total += r.value;
    return total;
  }

  /**
   * A customer's counted events (accepted, not cancelled or rejected) by usage time in [start, end), aggregated with
   * the meter's formula per window of `step` seconds, newest first. Windows without events are left out.
   */
  summaries(meter: MeterRecord, customer: string, start: number, end: number, step: number): SummaryWindow[] {
    // Records are appended in acceptance order, so "last" is the latest usage time, then the latest accepted.
    const windows = new Map<number, { value: number; lastTs: number }>();
    for (const r of this.records) {
      if (r.status !== 'accepted' || r.meter_id !== meter.id || r.customer !== customer || r.timestamp < start || r.timestamp >= end) continue;
      const index = Math.floor((r.timestamp - start) / step);
      const w = windows.get(index);
      if (!w) windows.set(index, { value: meter.aggregation === 'count' ? 1 : r.value, lastTs: r.timestamp });
      else if (meter.aggregation === 'sum') w.value += r.value;
      else if (meter.aggregation === 'count') w.value += 1;
      else if (r.timestamp >= w.lastTs) {
        w.value = r.value;
        w.lastTs = r.timestamp;
      }
    }
    return [...windows.entries()]
      .sort((a, b) => b[0] - a[0])
      .map(([index, w]) => {
        const startTime = start + index * step;
        return { startTime, endTime: Math.min(end, startTime + step), value: w.value };
      });
  }
}
