// Failure telemetry: persisted for the desk (ops_events) and counted through OpenTelemetry as
// `meterdesk.ops.<type>` with processor/source attributes only (ids never become metric attributes).
import { metrics, type Counter } from '@opentelemetry/api';
import type { Queryable } from './db';
import { toStorableText } from './validation';

export const OPS_EVENT_TYPES = [
  'meter_reporting_failed',
  'metered_renewal_stale_repaired',
  'metered_missing_definition',
  'metered_charge_awaiting_payment_method',
  'metered_charge_failed_exhausted',
  'metered_sale_failed',
  'processor_rate_limited',
  'webhook_rejected',
  'metered_late_usage',
  'ledger_drift',
] as const;
export type OpsEventType = (typeof OPS_EVENT_TYPES)[number];

export interface OpsEventInput {
  type: OpsEventType;
  processor?: 'stripe' | 'braintree' | null;
  /** e.g. sync | reconciler | webhook for meter_reporting_failed. */
  source?: string | null;
  subjectType?: 'meter_event' | 'window' | 'subscription' | 'webhook' | 'charge_attempt' | 'customer' | null;
  subjectId?: string | null;
  /** When set, the event is recorded at most once for this key (e.g. `metered_missing_definition:<windowId>`). */
  dedupeKey?: string | null;
  metadata?: Record<string, unknown> | null;
}

// Created on first use, and again if the global provider changed: a meter taken at import time, before
// startTelemetry() registers the SDK, would be a no-op forever.
let countersProvider: unknown;
const counters = new Map<OpsEventType, Counter>();
function counter(type: OpsEventType): Counter {
  if (metrics.getMeterProvider() !== countersProvider) {
    countersProvider = metrics.getMeterProvider();
    counters.clear();
  }
  let c = counters.get(type);
  if (!c) {
    c = metrics.getMeter('meterdesk.ops').createCounter(`meterdesk.ops.${type}`, { description: `Ops events of type ${type}` });
    counters.set(type, c);
  }
  return c;
}

/**
 * Records ops events (in the caller's transaction when `db` is a client) and returns how many were new; events
 * whose dedupe key was already used are skipped, so a retried transition makes no noise.
 */
export async function recordOpsEvents(db: Queryable, events: readonly OpsEventInput[]): Promise<number> {
  if (events.length === 0) return 0;
  const { rows } = await db.query<{ type: OpsEventType; processor: string | null; source: string | null }>(
    `INSERT INTO ops_events (id, type, processor, source, subject_type, subject_id, dedupe_key, metadata)
     SELECT gen_random_uuid(), * FROM unnest($1::text[], $2::processor[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[])
     ON CONFLICT (dedupe_key) DO NOTHING
     RETURNING type, processor::text AS processor, source`,
    [
      events.map((e) => e.type),
      events.map((e) => e.processor ?? null),
      events.map((e) => e.source ?? null),
      events.map((e) => e.subjectType ?? null),
      events.map((e) => e.subjectId ?? null),
      events.map((e) => e.dedupeKey ?? null),
      // Metadata quotes what went wrong, often hostile input: a NUL or a lone surrogate in it must not lose the event.
      events.map((e) => (e.metadata ? JSON.stringify(e.metadata, (_key, v: unknown) => (typeof v === 'string' ? toStorableText(v) : v)) : null)),
    ],
  );
  for (const r of rows) {
    const attributes: Record<string, string> = {};
    if (r.processor) attributes.processor = r.processor;
    if (r.source) attributes.source = r.source;
    counter(r.type).add(1, attributes);
  }
  return rows.length;
}

export function recordOpsEvent(db: Queryable, event: OpsEventInput): Promise<number> {
  return recordOpsEvents(db, [event]);
}
