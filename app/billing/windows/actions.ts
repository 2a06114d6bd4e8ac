// What an operator may do to a window, decided in one place: the desk offers an action only where its verdict
// allows it, and the action itself (reauthorWindow, settleAgain, writeOffWindow) refuses with the same sentence when
// it does not (the state may have moved between the page and the click). Reasons are sentences for a person, with
// no ids: the page already says which window it is.
import { stateWords } from '../states';
import type { WindowState } from './types';

/** What the rules read: the window's state and its charge attempt (none until the window is closed). */
export interface WindowFacts {
  state: WindowState;
  /** Sales sent so far (charge_attempts.tries); 0 or no attempt: nothing ever reached Braintree. */
  saleTries: number;
  /** charge_attempts.status, or null when there is no charge attempt. */
  chargeStatus: string | null;
  /** The decline code of the last failure, when there was one. */
  lastFailureCode?: string | null;
}

export type Verdict = { allowed: true } | { allowed: false; reason: string };

/** The state as a phrase for a sentence ("This window is paid"). */
export function stateInWords(state: WindowState): string {
  return stateWords('window', state).phrase ?? stateWords('window', state).label.toLowerCase();
}

export const REAUTHOR_STATES: readonly WindowState[] = ['closed', 'awaiting_payment_method'];
export const SETTLE_AGAIN_STATES: readonly WindowState[] = ['awaiting_payment_method', 'retry_scheduled', 'failed_exhausted'];
export const WRITE_OFF_STATES: readonly WindowState[] = ['failed_exhausted'];

const allowed: Verdict = { allowed: true };
const refused = (reason: string): Verdict => ({ allowed: false, reason });

/** Re-author: rebuild the invoice from the ledger, only while no sale has ever been sent. */
export function reauthorVerdict(w: WindowFacts): Verdict {
  if (w.state === 'open') return refused('This window is still open; its invoice is authored when its period ends.');
  if (!REAUTHOR_STATES.includes(w.state)) {
    return refused(`This window is ${stateInWords(w.state)}; a window can be re-authored only before any sale is sent.`);
  }
  if (w.saleTries > 0) {
    return refused(`A sale was already sent for this window (${w.saleTries === 1 ? 'once' : `${w.saleTries} times`}); its invoice can no longer change.`);
  }
  return allowed;
}

/**
 * Settle again: a fresh retry budget and a charge now. After a hard decline only with an explicit override (the
 * customer's bank said never; charging again is a person's decision, recorded in the audit log).
 */
export function settleAgainVerdict(w: WindowFacts, opts: { overrideHardDecline?: boolean } = {}): Verdict & { needsOverride: boolean } {
  const needsOverride = w.chargeStatus === 'hard_declined';
  if (!SETTLE_AGAIN_STATES.includes(w.state)) {
    return { ...refused(`This window is ${stateInWords(w.state)}; only a window waiting for a retry, a payment method, or with its retries used up can be settled again.`), needsOverride };
  }
  if (needsOverride && !opts.overrideHardDecline) {
    return { ...refused(`The last sale was hard declined${w.lastFailureCode ? ` (${w.lastFailureCode})` : ''}; charging again needs the explicit override.`), needsOverride };
  }
  return { ...allowed, needsOverride };
}

/** Write off: finance ends an exhausted charge without a sale; it is never charged again. */
export function writeOffVerdict(w: WindowFacts): Verdict {
  if (!WRITE_OFF_STATES.includes(w.state)) {
    return refused(`This window is ${stateInWords(w.state)}; only a window whose retries are used up can be written off.`);
  }
  return allowed;
}

/**
 * Every action's verdict, for a page that offers them. Settle again is judged as with the override: the page offers
 * it where it can succeed and, when `needsOverride`, asks for the override with it.
 */
export function windowActions(w: WindowFacts): { reauthor: Verdict; settleAgain: Verdict & { needsOverride: boolean }; writeOff: Verdict } {
  return { reauthor: reauthorVerdict(w), settleAgain: settleAgainVerdict(w, { overrideHardDecline: true }), writeOff: writeOffVerdict(w) };
}
