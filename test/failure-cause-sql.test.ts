// The events list's cause filter and a retry by cause select in SQL what causeOf says in TypeScript: for every code
// the module knows, Stripe's two-meaning resource_missing with each kind of message, unknown codes and nulls, exactly
// one cause's SQL is true on a real PostgreSQL, and it is causeOf's.
import { describe, expect, it } from 'vitest';
import { CAUSE_OF_MESSAGE_SQL, causeOf, causeSql, FAILURE_CAUSE_ORDER } from '../app/billing/ledger/failure-causes';
import { useTestDatabaseClient } from './support/database';

const db = useTestDatabaseClient();

const CODES = [
  'no_meter', 'archived_meter', 'meter_event_customer_not_found', 'meter_event_no_customer_defined', 'unknown_customer', 'meter_event_invalid_value',
  'timestamp_too_far_in_past', 'dedupe_window_expired', 'rate_limit', 'api_error', 'timeout', 'resource_missing', 'something_new', "it's_quoted", null,
];
const MESSAGES = [
  "No such customer: 'cus_demo_wayne'",
  'No active meter found for event name "api_calls".',
  'Invalid event_name',
  'No such CUSTOMER and no meter',
  'Something else entirely',
  '',
  null,
];

describe('causeSql', () => {
  it('is true for exactly the cause causeOf gives, for every code and message', async () => {
    const pairs = CODES.flatMap((code) => MESSAGES.map((message) => ({ code, message })));
    const columns = FAILURE_CAUSE_ORDER.map((c, i) => `(${causeSql(c, 't.')}) AS c${i}`).join(', ');
    const { rows } = await db().query<Record<string, boolean | number | string>>(
      `SELECT t.n, ${columns}
         FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(last_error_code, last_error_message, n) ORDER BY t.n`,
      [pairs.map((p) => p.code), pairs.map((p) => p.message)],
    );
    expect(rows).toHaveLength(pairs.length);
    for (const [i, pair] of pairs.entries()) {
      const row = rows[i]!;
      const trueCauses = FAILURE_CAUSE_ORDER.filter((_, k) => row[`c${k}`] === true);
      expect(trueCauses, JSON.stringify(pair)).toEqual([causeOf(pair.code, pair.message)]);
    }
  });

  it('groups a resource_missing apart by what its message names, as causeOf does', async () => {
    const { rows } = await db().query<{ part: string }>(
      `SELECT ${CAUSE_OF_MESSAGE_SQL} AS part FROM (VALUES ('resource_missing', 'No such customer: x'), ('resource_missing', 'No active meter found'), ('resource_missing', 'gone'), ('no_meter', 'No such customer')) AS t(last_error_code, last_error_message)`,
    );
    expect(rows.map((r) => r.part)).toEqual(['customer', 'meter', '', '']);
  });
});
