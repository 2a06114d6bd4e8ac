// Why a Stripe event failed, in the words an operator acts on: every error code we store (Stripe's synchronous errors,
// its asynchronous meter error reports, our own) belongs to one cause, and a cause says what fixes it and whether a
// retry can tell that it was fixed. Retry groups a selection by cause and re-sends only the events whose cause is
// gone (ledger/retry.ts); the desk shows the cause beside the code.

export type FailureCause = 'missing_definition' | 'unknown_customer' | 'invalid_value' | 'dedupe_window' | 'processor_unavailable' | 'other';

export interface FailureCauseWords {
  label: string;
  /** What it means and what fixes it, one sentence. */
  fix: string;
  /**
   * How a retry knows the cause is gone: `meter` (a meter now defines the event name), `customer` (Stripe now knows the
   * customer, asked before the retry), `never` (nothing here can tell: only "retry anyway" re-sends), `always`
   * (transient or unknown: a retry is the way to find out).
   */
  fixedWhen: 'meter' | 'customer' | 'never' | 'always';
}

export const FAILURE_CAUSES: Record<FailureCause, FailureCauseWords> = {
  missing_definition: {
    label: 'No meter',
    fix: 'No meter defines this event name; add the definition (and the meter at Stripe), then retry.',
    fixedWhen: 'meter',
  },
  unknown_customer: {
    label: 'Unknown customer',
    fix: 'Stripe does not know this customer; create the customer in Stripe (or correct its id), then retry.',
    fixedWhen: 'customer',
  },
  invalid_value: {
    label: 'Invalid event',
    fix: 'Stripe refused the event itself (its value or time); the host app must send it corrected under a new identifier.',
    fixedWhen: 'never',
  },
  dedupe_window: {
    label: 'Past the dedupe window',
    fix: 'Its first attempt may have reached Stripe more than 23 hours ago; retry with force and a reason only if Stripe did not count it.',
    fixedWhen: 'always',
  },
  processor_unavailable: {
    label: 'Stripe unavailable',
    fix: 'Stripe did not answer or asked us to slow down until reporting gave up; a retry sends it again.',
    fixedWhen: 'always',
  },
  other: {
    label: 'Other',
    fix: 'Read the error message on the event; a retry sends it again.',
    fixedWhen: 'always',
  },
};

export const FAILURE_CAUSE_ORDER = Object.keys(FAILURE_CAUSES) as FailureCause[];

const BY_CODE: Record<string, FailureCause> = {
  no_meter: 'missing_definition',
  archived_meter: 'missing_definition',
  meter_event_customer_not_found: 'unknown_customer',
  meter_event_no_customer_defined: 'unknown_customer',
  unknown_customer: 'unknown_customer',
  meter_event_invalid_value: 'invalid_value',
  meter_event_value_not_found: 'invalid_value',
  meter_event_value_too_many_digits: 'invalid_value',
  meter_event_dimension_count_too_high: 'invalid_value',
  timestamp_in_future: 'invalid_value',
  timestamp_too_far_in_past: 'invalid_value',
  dedupe_window_expired: 'dedupe_window',
  rate_limit: 'processor_unavailable',
  rate_limited: 'processor_unavailable',
  api_error: 'processor_unavailable',
  api_connection_error: 'processor_unavailable',
  timeout: 'processor_unavailable',
};

/**
 * The cause of a stored failure. Stripe's synchronous answer for both a missing meter and an unknown customer is
 * `resource_missing`; its message ("No active meter found…" / "No such customer…") tells them apart.
 */
export function causeOf(code: string | null | undefined, message?: string | null): FailureCause {
  if (!code) return 'other';
  const known = BY_CODE[code];
  if (known) return known;
  if (code === 'resource_missing') {
    if (/customer/i.test(message ?? '')) return 'unknown_customer';
    if (/meter|event_name/i.test(message ?? '')) return 'missing_definition';
  }
  return 'other';
}

/**
 * Whether a retry may re-send an event of this cause: `meterDefined`, a meter now defines its event name;
 * `customerKnown`, Stripe answered for its customer just now (false when it was not asked).
 */
export function causeFixed(cause: FailureCause, facts: { meterDefined: boolean; customerKnown: boolean }): boolean {
  const when = FAILURE_CAUSES[cause].fixedWhen;
  return when === 'always' || (when === 'meter' && facts.meterDefined) || (when === 'customer' && facts.customerKnown);
}

/**
 * SQL (over `last_error_code`, `last_error_message`) that tells apart what causeOf tells apart by the message alone:
 * 'customer' / 'meter' for a resource_missing, '' otherwise. For grouping failures so no group mixes two causes.
 */
export const CAUSE_OF_MESSAGE_SQL = `CASE WHEN last_error_code = 'resource_missing' THEN
    CASE WHEN last_error_message ILIKE '%customer%' THEN 'customer' WHEN last_error_message ~* '(meter|event_name)' THEN 'meter' ELSE '' END
  ELSE '' END`;

const sqlList = (codes: readonly string[]) => codes.map((c) => `'${c.replaceAll("'", "''")}'`).join(', ');

/**
 * SQL true for the failures causeOf gives `cause` (the same rules, over `${col}last_error_code` and
 * `${col}last_error_message`), for the events list's cause filter and a retry by it. No caller text: the codes are
 * this module's own.
 */
export function causeSql(cause: FailureCause, col = ''): string {
  const code = `${col}last_error_code`;
  const message = `COALESCE(${col}last_error_message, '')`;
  const customerRule = `(${code} = 'resource_missing' AND ${message} ILIKE '%customer%')`;
  const meterRule = `(${code} = 'resource_missing' AND NOT ${message} ILIKE '%customer%' AND ${message} ~* '(meter|event_name)')`;
  const codesOf = (c: FailureCause) => Object.keys(BY_CODE).filter((k) => BY_CODE[k] === c);
  const byCode = (codes: readonly string[]) => (codes.length > 0 ? `COALESCE(${code} IN (${sqlList(codes)}), false)` : 'false');
  if (cause === 'other') return `NOT (${byCode(Object.keys(BY_CODE))} OR COALESCE(${customerRule}, false) OR COALESCE(${meterRule}, false))`;
  const rule = cause === 'unknown_customer' ? ` OR ${customerRule}` : cause === 'missing_definition' ? ` OR ${meterRule}` : '';
  return `(${byCode(codesOf(cause))}${rule})`;
}

/** The skipped events of one cause as a sentence: "3 skipped (No meter): No meter defines …". */
export function skippedSentence(cause: FailureCause, count: number): string {
  return `${count.toLocaleString('en-US')} skipped (${FAILURE_CAUSES[cause].label}): ${FAILURE_CAUSES[cause].fix}`;
}
