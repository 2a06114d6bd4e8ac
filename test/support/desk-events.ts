// Ledger rows for the desk's events and customers tests, written straight with SQL (as a failed Stripe report
// leaves them): a customer with a subscription, and events in any status with their attempt log.
import { randomUUID } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import type { Queryable } from '../../app/billing/db';

export interface SeededCustomer {
  id: string;
  externalId: string;
  email: string;
  processorCustomerId: string;
}

export async function insertCustomer(db: Queryable, tag = randomUUID().slice(0, 8)): Promise<SeededCustomer> {
  const externalId = `cust-${tag}`;
  const email = `billing+${tag}@customer.test`;
  const processorCustomerId = `cus_${tag}`;
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO customers (id, external_id, name, email, processor, processor_customer_id, updated_at)
     VALUES (gen_random_uuid(), $1, $2, $3, 'stripe', $4, now()) RETURNING id`,
    [externalId, `Customer ${tag}`, email, processorCustomerId],
  );
  const id = rows[0]!.id;
  await db.query(
    `INSERT INTO subscriptions (id, customer_id, plan_id, processor, processor_subscription_id, status, current_period_start, current_period_end, updated_at)
     SELECT gen_random_uuid(), $1, p.id, 'stripe', $2, 'active', now() - interval '10 days', now() + interval '20 days', now()
       FROM plans p WHERE p.code = 'business'`,
    [id, `sub_${tag}`],
  );
  return { id, externalId, email, processorCustomerId };
}

export interface SeedEventOptions {
  status?: 'pending' | 'reported' | 'failed' | 'recorded';
  processor?: 'stripe' | 'braintree';
  eventName?: string;
  errorCode?: string;
  errorMessage?: string;
  /** How long ago the first attempt reached Stripe (past 23 h a retry needs force). Default 1 hour. */
  firstAttemptAgo?: string;
  occurredAt?: Date;
  identifier?: string;
}

/** Inserts `count` events (ids ascending = oldest first), each failed one with one rejected attempt. Returns their ids. */
export async function insertEvents(db: Queryable, customerId: string, count: number, options: SeedEventOptions = {}): Promise<string[]> {
  const status = options.status ?? 'failed';
  const processor = options.processor ?? 'stripe';
  const failed = status === 'failed';
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const id = uuidv7();
    ids.push(id);
    const identifier = options.identifier && count === 1 ? options.identifier : `evt-${id}`;
    const errorCode = failed ? (options.errorCode ?? 'resource_missing') : null;
    // A resource_missing about neither a meter nor a customer: cause "other", which a retry always re-sends (failure-causes.ts).
    const errorMessage = failed ? (options.errorMessage ?? 'No such object: the Stripe resource does not exist') : null;
    const traceId = randomUUID().replaceAll('-', '');
    // Claimed as the ledger's insert claims it (ADR 032), so lookups by identifier find it.
    await db.query('INSERT INTO meter_event_identifiers (identifier, event_id) VALUES ($1, $2)', [identifier, id]);
    await db.query(
      `INSERT INTO meter_events (id, identifier, customer_id, event_name, value, occurred_at, processor, status, attempts,
                                 first_attempt_at, last_error_code, last_error_message, last_error_source, trace_id)
       VALUES ($1, $2, $3, $4, 1250, $5, $6, $7::meter_event_status, $8,
               CASE WHEN $8::int > 0 THEN now() - $9::interval END, $10::text, $11::text, CASE WHEN $10::text IS NOT NULL THEN 'sync'::error_source END, $12)`,
      [
        id,
        identifier,
        customerId,
        options.eventName ?? 'ai_tokens',
        options.occurredAt ?? new Date(),
        processor,
        status,
        failed || status === 'reported' ? 1 : 0,
        options.firstAttemptAgo ?? '1 hour',
        errorCode,
        errorMessage,
        traceId,
      ],
    );
    if (failed) {
      await db.query(
        `INSERT INTO event_attempts (id, meter_event_id, started_at, duration_ms, source, outcome, http_status, error_code, error_message, response, trace_id)
         VALUES (gen_random_uuid(), $1, now() - $2::interval, 84, 'sync', 'rejected', 400, $3, $4, $5, $6)`,
        [
          id,
          options.firstAttemptAgo ?? '1 hour',
          errorCode,
          errorMessage,
          JSON.stringify({ error: { type: 'invalid_request_error', code: errorCode, message: errorMessage, param: 'payload[stripe_customer_id]' } }),
          traceId,
        ],
      );
    }
  }
  return ids;
}
