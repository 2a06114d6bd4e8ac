// Meter error reports (`v1.billing.meter.error_report_triggered`, `v1.billing.meter.no_meter_found`): the events
// they name move to `failed` with Stripe's code kept verbatim (the list is open-ended), each with an attempt row and a
// `meter_reporting_failed` ops event. A sample whose message says the identifier already exists is a duplicate
// Stripe already counted (Stripe gives it no code): it never fails our event. A report names the identifier Stripe
// received, which is the event's sent identifier after a retry gave it a new one (ADR 033): an event is matched by
// the identifier it is sent under now, never by one it has left behind.
// An error about an earlier send of an event we sent again (a worker that died between Stripe's 2xx and our record of
// it sends the same identifier again) still fails the event: Stripe documents identifier uniqueness for at least
// 24 hours with no exception for rejected events, so the later send was a duplicate of the refused one and counted
// nothing (v1: an idempotent replay of the refused call). Stripe does not say so outright, so such an event (a send
// that began after `validation_end` and was not an idempotent replay) also gets an attention reason, and a retry of it
// needs force: if Stripe did count that later send, a retry under a new identifier would count it twice (ADR 033,
// which revises ADR 003's rule that left such events to the later send).
import type pg from 'pg';
import { z } from 'zod';
import { recordOpsEvents, type OpsEventInput } from '../../ops-events';
import { IDEMPOTENCY_KEY_PREFIX } from './processor';
import { NotApplicable, type StoredWebhook } from './webhook-types';

/** Thin events (event destinations, `object: 'v2.core.event'`) that carry meter error reports. */
export const METER_ERROR_EVENT_TYPES = ['v1.billing.meter.error_report_triggered', 'v1.billing.meter.no_meter_found'] as const;

// Stripe names a duplicate only by this message (docs: "An event already exists with identifier ...").
const ALREADY_EXISTS = /^An event already exists with identifier/i;

const meterErrorData = z.object({
  // RFC 3339 (v2 event data); the latest error the report covers.
  validation_end: z.string().datetime({ offset: true }).optional(),
  reason: z.object({
    error_count: z.number().int().nonnegative().optional(),
    error_types: z.array(
      z.object({
        // Open-ended on Stripe's side: any code is kept verbatim.
        code: z.string().min(1),
        error_count: z.number().int().nonnegative().optional(),
        sample_errors: z
          .array(
            z.object({
              error_message: z.string().optional().nullable(),
              // Stripe's type (V1BillingMeterErrorReportTriggeredEvent.Data.Reason.ErrorType.SampleError.Request)
              // names the request by `identifier`; older reports name it by the `idempotency_key` it was sent with.
              request: z.object({ identifier: z.string().min(1).optional(), idempotency_key: z.string().min(1).optional() }),
            }),
          )
          .default([]),
      }),
    ),
  }),
});

interface MovedEvent {
  id: string;
  identifier: string;
  previous_status: string;
  code: string;
  message: string | null;
  resent: boolean;
}

/** Why an operator must look at an event the report failed after the same identifier was sent again. */
export const RESENT_AFTER_REPORT_ATTENTION =
  "Stripe rejected this identifier after accepting it, and it was sent again with the same identifier after the report's validation window. That send should have been a duplicate that counted nothing; check Stripe's usage for this customer and meter, and retry with force (and a reason) only if Stripe did not count it.";

export async function applyMeterErrorReport(client: pg.ClientBase, stored: StoredWebhook, payload: Record<string, unknown>): Promise<string | null> {
  const parsed = meterErrorData.safeParse(payload.data);
  if (!parsed.success) throw new NotApplicable('malformed_event_data', `data.reason does not have the shape of a meter error report: ${parsed.error.issues[0]?.message ?? ''}`);
  const { reason } = parsed.data;
  const validationEnd = parsed.data.validation_end ?? null;

  // One verdict per identifier: the first error naming it wins (a report lists an identifier once per code at most).
  const failures = new Map<string, { code: string; message: string | null }>();
  const alreadyCounted = new Set<string>();
  let sampled = 0;
  let unnamed = 0;
  for (const type of reason.error_types) {
    for (const sample of type.sample_errors) {
      sampled += 1;
      const identifier = sampleIdentifier(sample.request);
      if (identifier === undefined) {
        unnamed += 1;
        continue;
      }
      if (ALREADY_EXISTS.test(sample.error_message ?? '')) {
        alreadyCounted.add(identifier);
        continue;
      }
      if (!failures.has(identifier)) failures.set(identifier, { code: type.code, message: sample.error_message ?? null });
    }
  }
  for (const identifier of failures.keys()) alreadyCounted.delete(identifier);

  const identifiers = [...failures.keys()];
  const moved = identifiers.length === 0
    ? []
    : (
        await client.query<MovedEvent>(
          `WITH named AS (
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS n(identifier, code, message)
           ), target AS (
             SELECT m.id, m.status::text AS previous_status, n.identifier, n.code, n.message,
                    ($4::timestamptz IS NOT NULL AND EXISTS (
                      SELECT 1 FROM event_attempts a WHERE a.meter_event_id = m.id AND a.source = 'sync' AND a.outcome = 'reported'
                        AND a.started_at > $4::timestamptz AND a.response->>'idempotent_replayed' IS DISTINCT FROM 'true')) AS resent
             -- Through meter_event_identifiers (ADR 032); only the identifier the event was last sent under moves it.
             FROM named n JOIN meter_event_identifiers i ON i.identifier = n.identifier JOIN meter_events m ON m.id = i.event_id
            WHERE n.identifier = COALESCE(m.sent_identifier, m.identifier)
              AND m.processor = 'stripe' AND m.status IN ('pending', 'reported')
             FOR UPDATE OF m
           )
           UPDATE meter_events m
           SET status = 'failed', last_error_code = t.code, last_error_message = t.message, last_error_source = 'webhook',
               attention_reason = CASE WHEN t.resent THEN $5 ELSE m.attention_reason END
           FROM target t
           WHERE m.id = t.id AND m.status IN ('pending', 'reported')
           RETURNING m.id, t.identifier, t.previous_status, t.code, t.message, t.resent`,
          [identifiers, identifiers.map((i) => failures.get(i)!.code), identifiers.map((i) => failures.get(i)!.message), validationEnd, RESENT_AFTER_REPORT_ATTENTION],
        )
      ).rows;

  if (moved.length > 0) {
    await client.query(
      `INSERT INTO event_attempts (id, meter_event_id, source, outcome, error_code, error_message, response)
       SELECT gen_random_uuid(), a.id, 'webhook', 'rejected', a.code, a.message, a.response
       FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[]) AS a(id, code, message, response)`,
      [
        moved.map((m) => m.id),
        moved.map((m) => m.code),
        moved.map((m) => m.message),
        moved.map((m) => JSON.stringify({ stripe_event_id: stored.processor_event_id, type: stored.type, code: m.code, error_message: m.message, identifier: m.identifier })),
      ],
    );
    await recordOpsEvents(
      client,
      moved.map(
        (m): OpsEventInput => ({
          type: 'meter_reporting_failed',
          processor: 'stripe',
          source: 'webhook',
          subjectType: 'meter_event',
          subjectId: m.id,
          metadata: {
            code: m.code,
            message: m.message,
            identifier: m.identifier,
            previous_status: m.previous_status,
            ...(m.resent ? { sent_again_after_report: true } : {}),
            stripe_event_id: stored.processor_event_id,
            webhook_event_id: stored.id,
          },
        }),
      ),
    );
  }

  // What the report named but did not move: events we never had, events in no state to fail, and identifiers an event
  // was sent under before a retry gave it a new one (a late report about the refused send).
  const movedIds = new Set(moved.map((m) => m.identifier));
  const unmoved = identifiers.filter((i) => !movedIds.has(i));
  const known = unmoved.length === 0
    ? new Map<string, { status: string; sentAs: string }>()
    : new Map(
        (
          await client.query<{ named: string; status: string; sent_as: string }>(
            `SELECT i.identifier AS named, m.status::text AS status, COALESCE(m.sent_identifier, m.identifier) AS sent_as
               FROM meter_event_identifiers i JOIN meter_events m ON m.id = i.event_id WHERE i.identifier = ANY($1::text[])`,
            [unmoved],
          )
        ).rows.map((r) => [r.named, { status: r.status, sentAs: r.sent_as }]),
      );
  const unknown = unmoved.filter((i) => !known.has(i));
  const notes: string[] = [];
  if (unknown.length > 0) notes.push(`${unknown.length} identifier(s) not in the ledger, ignored: ${sample(unknown)}`);
  const superseded = [...known].filter(([i, k]) => k.sentAs !== i);
  const settled = [...known].filter(([i, k]) => k.sentAs === i);
  if (settled.length > 0) notes.push(`${settled.length} already in no state to fail: ${sample(settled.map(([i, k]) => `${i} (${k.status})`))}`);
  if (superseded.length > 0) notes.push(`${superseded.length} no longer sent under the identifier named, left as they are: ${sample(superseded.map(([i, k]) => `${i} (now ${k.sentAs}, ${k.status})`))}`);
  const resent = moved.filter((m) => m.resent).map((m) => m.identifier);
  if (resent.length > 0) notes.push(`${resent.length} had been sent again after the report's validation window, failed with an attention reason: ${sample(resent)}`);
  if (alreadyCounted.size > 0) notes.push(`${alreadyCounted.size} duplicate(s) Stripe already counted, left as they are: ${sample([...alreadyCounted])}`);
  const total = reason.error_count ?? reason.error_types.reduce((n, t) => n + (t.error_count ?? t.sample_errors.length), 0);
  if (total > sampled) notes.push(`${total - sampled} error(s) not named in the report's samples`);
  if (unnamed > 0) notes.push(`${unnamed} sample(s) named no request identifier`);
  return notes.length > 0 ? `moved ${moved.length} to failed; ${notes.join('; ')}` : null;
}

/**
 * The ledger identifier a sample names: `request.identifier`, else the idempotency key our reporter sent the event
 * with (`meterdesk-<identifier>`, processor.ts), else nothing.
 */
export function sampleIdentifier(request: { identifier?: string | undefined; idempotency_key?: string | undefined }): string | undefined {
  if (request.identifier) return request.identifier;
  const key = request.idempotency_key;
  if (!key) return undefined;
  return key.startsWith(IDEMPOTENCY_KEY_PREFIX) ? key.slice(IDEMPOTENCY_KEY_PREFIX.length) || undefined : key;
}

function sample(values: string[], max = 10): string {
  return values.length <= max ? values.join(', ') : `${values.slice(0, max).join(', ')} and ${values.length - max} more`;
}

