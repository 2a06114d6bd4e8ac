import type pg from 'pg';

/** One event as the API shows it (snake_case, the customer and subscription by their external ids). */
export async function getEvent(pool: pg.Pool, by: { id: string } | { identifier: string }) {
  // By identifier through meter_event_identifiers, the ledger's one index of identifiers (ADR 032).
  const condition = 'id' in by ? 'e.id = $1' : 'e.id = (SELECT event_id FROM meter_event_identifiers WHERE identifier = $1)';
  const value = 'id' in by ? by.id : by.identifier;
  if (value.includes('\u0000')) return null;
  const { rows } = await pool.query(
    `SELECT e.id, e.identifier, c.external_id AS customer, s.processor_subscription_id AS subscription, e.event_name,
            e.value::float8 AS value, e.occurred_at AS timestamp, e.received_at, e.processor::text AS processor,
            e.status::text AS status, e.attempts, e.reported_at, e.properties, e.meter_id IS NULL AS missing_definition,
            CASE WHEN e.last_error_code IS NULL THEN NULL ELSE json_build_object('code', e.last_error_code,
              'message', e.last_error_message, 'source', e.last_error_source) END AS last_error,
            e.attention_reason, e.trace_id, e.window_id
       FROM meter_events e JOIN customers c ON c.id = e.customer_id
       LEFT JOIN subscriptions s ON s.id = e.subscription_id
      WHERE ${condition}`,
    [value],
  );
  return rows[0] ?? null;
}
