// Scriptable faults for the Stripe simulator. A rule matches a request by path prefix and, for meter event
// calls, by identifier / customer / event name; it fires `count` times or with `probability` (simulators/kit).
import { RuleReader, TRANSPORT_FAULT_KINDS, type FaultRuleBase } from '../kit/faults';

export { FaultBook, seededRandom } from '../kit/faults';

export const FAULT_KINDS = [...TRANSPORT_FAULT_KINDS, 'reject_after_accept'] as const;

export type FaultKind = (typeof FAULT_KINDS)[number];

export interface FaultMatch {
  /** Path prefix, e.g. `/v1/billing/meter_events` or `/v2/billing/meter_event_stream`. */
  path?: string;
  method?: string;
  /** Meter event identifier (any event of a v2 stream batch). */
  identifier?: string;
  /** `payload[stripe_customer_id]` (any event of a v2 stream batch). */
  customer?: string;
  eventName?: string;
}

export interface FaultRule extends FaultRuleBase {
  kind: FaultKind;
  match?: FaultMatch;
  /** reject_after_accept: error code in the error report (open-ended: unknown codes are allowed). */
  errorCode?: string;
  /** reject_after_accept: sample error message. */
  errorMessage?: string;
}

/** What the simulator knows about a request when choosing a fault. */
export interface FaultSubjects {
  identifiers?: readonly string[];
  customers?: readonly string[];
  eventNames?: readonly string[];
}

/** Throws with a readable message if `raw` is not a usable rule (the HTTP control API feeds it JSON). */
export function validateFaultRule(raw: unknown): FaultRule {
  const r = new RuleReader(raw, FAULT_KINDS);
  const rule: FaultRule = r.base();
  const errorCode = r.str('errorCode');
  if (errorCode !== undefined) rule.errorCode = errorCode;
  const errorMessage = r.str('errorMessage');
  if (errorMessage !== undefined) rule.errorMessage = errorMessage;
  const match = r.match<Required<FaultMatch>>(['path', 'method', 'identifier', 'customer', 'eventName']);
  if (match) rule.match = match;
  return rule;
}

/** Whether a rule matches a request (its method, path and the meter events it carries). */
export function ruleMatches(rule: FaultRule, method: string, path: string, subjects: FaultSubjects | undefined): boolean {
  const match = rule.match;
  if (!match) return true;
  if (match.path !== undefined && !path.startsWith(match.path)) return false;
  if (match.method !== undefined && match.method.toUpperCase() !== method) return false;
  if (match.identifier !== undefined && !subjects?.identifiers?.includes(match.identifier)) return false;
  if (match.customer !== undefined && !subjects?.customers?.includes(match.customer)) return false;
  if (match.eventName !== undefined && !subjects?.eventNames?.includes(match.eventName)) return false;
  return true;
}

/** Whether one event of a (possibly batched) request is the one a rule names. */
export function ruleNamesEvent(rule: FaultRule, event: { identifier: string; customer: string; eventName: string }): boolean {
  const m = rule.match;
  if (!m) return true;
  if (m.identifier !== undefined && m.identifier !== event.identifier) return false;
  if (m.customer !== undefined && m.customer !== event.customer) return false;
  if (m.eventName !== undefined && m.eventName !== event.eventName) return false;
  return true;
}
