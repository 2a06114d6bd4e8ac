// Every state the desk shows, in words and with a tone: events, renewal windows (whose state is also the invoice's
// payment state), charge attempts and subscriptions. One table, so a state reads the same on every page, in the
// filters and in the CLI; test/states.test.ts checks it against the database's enums, so a new state without words
// fails the test rather than showing as snake_case text.
import type { WindowState } from './windows/types';

/**
 * What a state asks of a person, at a glance:
 * - `ok`: healthy and live (an open window, an active subscription);
 * - `waiting`: moving on its own, nothing to do yet (pending, settling, retry scheduled);
 * - `attention`: stuck until someone acts (no meter, awaiting a payment method, an ambiguous sale);
 * - `failed`: it went wrong and will not fix itself;
 * - `done`: finished (reported, paid, written off).
 */
export type Tone = 'ok' | 'waiting' | 'attention' | 'failed' | 'done';

export const TONES: readonly Tone[] = ['ok', 'waiting', 'attention', 'failed', 'done'];

/** Words for a tone, for screen readers and the legend: the colour is never the only sign. */
export const TONE_WORDS: Record<Tone, string> = {
  ok: 'Healthy',
  waiting: 'Waiting',
  attention: 'Needs attention',
  failed: 'Failed',
  done: 'Done',
};

export interface StateWords {
  label: string;
  tone: Tone;
  /** One sentence: what the state means and what happens next. */
  meaning: string;
  /** The state inside a sentence ("This window is <phrase>"), where refusals need one. */
  phrase?: string;
}

export type EventStatus = 'pending' | 'reported' | 'failed' | 'recorded' | 'matched' | 'unmatched' | 'unusable';

export type ChargeStatus = 'pending' | 'succeeded' | 'soft_declined' | 'hard_declined' | 'gateway_rejected' | 'error' | 'ambiguous' | 'written_off';

export type SubscriptionStatus = 'trialing' | 'active' | 'past_due' | 'canceled' | 'incomplete' | 'unpaid' | 'paused';

const EVENT: Record<EventStatus, StateWords> = {
  pending: { label: 'Pending', tone: 'waiting', meaning: 'In the ledger, waiting to be reported to Stripe.' },
  reported: { label: 'Reported', tone: 'done', meaning: 'Stripe accepted it.' },
  failed: { label: 'Failed', tone: 'failed', meaning: 'Stripe refused it or reporting gave up; its cause says what to fix before a retry.' },
  recorded: { label: 'Recorded', tone: 'waiting', meaning: 'In the ledger; its renewal window bills it when the period ends.' },
  matched: { label: 'Matched', tone: 'done', meaning: 'Billed on a line of its window’s invoice.' },
  unmatched: { label: 'Unmatched', tone: 'attention', meaning: 'No meter priced its event name; add the definition and re-author the window.' },
  unusable: { label: 'Unusable', tone: 'failed', meaning: 'Its value cannot be billed by its meter’s aggregation.' },
};

const WINDOW: Record<WindowState, StateWords> = {
  open: { label: 'Open', tone: 'ok', meaning: 'The period is running; events are collected.', phrase: 'still open' },
  closed: { label: 'Closed', tone: 'waiting', meaning: 'The period ended and the invoice is authored; the sale comes next.', phrase: 'closed and not yet charged' },
  settling: { label: 'Settling', tone: 'waiting', meaning: 'The sale is being made.', phrase: 'being charged right now' },
  paid: { label: 'Paid', tone: 'done', meaning: 'The sale succeeded, or the total was zero.', phrase: 'paid' },
  retry_scheduled: { label: 'Retry scheduled', tone: 'waiting', meaning: 'A soft decline or an error; the sale is tried again later, within its budget.', phrase: 'waiting for its next charge retry' },
  failed_exhausted: { label: 'Failed, exhausted', tone: 'failed', meaning: 'A hard decline or the retry budget is spent; it is never re-charged on its own.', phrase: 'failed with its retries used up' },
  awaiting_payment_method: { label: 'Awaiting payment method', tone: 'attention', meaning: 'The customer has no default payment method; settle again once they add one.', phrase: 'waiting for a payment method' },
  written_off: { label: 'Written off', tone: 'done', meaning: 'Ended without a charge by an operator, with a reason.', phrase: 'written off' },
};

const CHARGE: Record<ChargeStatus, StateWords> = {
  pending: { label: 'Pending', tone: 'waiting', meaning: 'The sale has not answered yet.' },
  succeeded: { label: 'Succeeded', tone: 'done', meaning: 'Braintree accepted the sale.' },
  soft_declined: { label: 'Soft decline', tone: 'waiting', meaning: 'Declined for now (e.g. insufficient funds); retried within the budget.' },
  hard_declined: { label: 'Hard decline', tone: 'failed', meaning: 'Declined for good (e.g. a closed card); never re-charged automatically.' },
  gateway_rejected: { label: 'Gateway rejected', tone: 'failed', meaning: 'Braintree’s gateway refused the sale (fraud or risk rules).' },
  error: { label: 'Error', tone: 'waiting', meaning: 'The call failed before a verdict; retried within the budget.' },
  ambiguous: { label: 'Ambiguous', tone: 'attention', meaning: 'No clear answer (timeout or reset); the next try searches by order id before charging.' },
  written_off: { label: 'Written off', tone: 'done', meaning: 'The window was written off; no sale follows.' },
};

const SUBSCRIPTION: Record<SubscriptionStatus, StateWords> = {
  trialing: { label: 'Trialing', tone: 'ok', meaning: 'In a trial period.' },
  active: { label: 'Active', tone: 'ok', meaning: 'Live and billed.' },
  past_due: { label: 'Past due', tone: 'attention', meaning: 'A payment is overdue.' },
  canceled: { label: 'Canceled', tone: 'done', meaning: 'Ended.' },
  incomplete: { label: 'Incomplete', tone: 'attention', meaning: 'The first payment has not succeeded yet.' },
  unpaid: { label: 'Unpaid', tone: 'failed', meaning: 'Payments failed and the processor stopped retrying.' },
  paused: { label: 'Paused', tone: 'waiting', meaning: 'Paused; nothing is billed until it resumes.' },
};

export const STATES = { event: EVENT, window: WINDOW, charge: CHARGE, subscription: SUBSCRIPTION } as const;

export type StateKind = keyof typeof STATES;

/** The words for a state; an unknown one (a newer database than this code) reads as itself, needing attention. */
export function stateWords(kind: StateKind, state: string): StateWords {
  const words = (STATES[kind] as Record<string, StateWords>)[state];
  return words ?? { label: state, tone: 'attention', meaning: `A ${kind} state this version of Meterdesk does not know.` };
}

/** `{ value, label }` pairs in the table's order: for filter selects. */
export function stateOptions(kind: StateKind): Array<{ value: string; label: string }> {
  return Object.entries(STATES[kind]).map(([value, w]) => ({ value, label: w.label }));
}
