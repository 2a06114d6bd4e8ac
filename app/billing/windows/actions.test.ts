// The action rules the desk and the domain share: every state against every action, and sentences without ids.
import { describe, expect, it } from 'vitest';
import { reauthorVerdict, settleAgainVerdict, windowActions, writeOffVerdict, type WindowFacts } from './actions';
import type { WindowState } from './types';

const STATES: WindowState[] = ['open', 'closed', 'settling', 'paid', 'retry_scheduled', 'failed_exhausted', 'awaiting_payment_method', 'written_off'];
const facts = (state: WindowState, extra: Partial<WindowFacts> = {}): WindowFacts => ({ state, saleTries: 0, chargeStatus: null, ...extra });

describe('window actions', () => {
  it('re-author only before any sale, in closed or awaiting_payment_method', () => {
    const allowed = STATES.filter((s) => reauthorVerdict(facts(s)).allowed);
    expect(allowed).toEqual(['closed', 'awaiting_payment_method']);
    expect(reauthorVerdict(facts('awaiting_payment_method', { saleTries: 1 }))).toEqual({
      allowed: false,
      reason: 'A sale was already sent for this window (once); its invoice can no longer change.',
    });
    expect(reauthorVerdict(facts('open'))).toEqual({ allowed: false, reason: 'This window is still open; its invoice is authored when its period ends.' });
  });

  it('settle again from the retry, payment-method and exhausted states; a hard decline only with the override', () => {
    expect(STATES.filter((s) => settleAgainVerdict(facts(s)).allowed)).toEqual(['retry_scheduled', 'failed_exhausted', 'awaiting_payment_method']);
    const hard = facts('failed_exhausted', { saleTries: 1, chargeStatus: 'hard_declined', lastFailureCode: '2004' });
    expect(settleAgainVerdict(hard)).toEqual({ allowed: false, needsOverride: true, reason: 'The last sale was hard declined (2004); charging again needs the explicit override.' });
    expect(settleAgainVerdict(hard, { overrideHardDecline: true })).toEqual({ allowed: true, needsOverride: true });
    // The page offers it with the override, and says so.
    expect(windowActions(hard).settleAgain).toEqual({ allowed: true, needsOverride: true });
    expect(settleAgainVerdict(facts('paid')).allowed).toBe(false);
  });

  it('write off only an exhausted charge', () => {
    expect(STATES.filter((s) => writeOffVerdict(facts(s)).allowed)).toEqual(['failed_exhausted']);
  });

  it('every refusal is a sentence naming the state in words, never a raw state or an id', () => {
    for (const state of STATES) {
      for (const verdict of Object.values(windowActions(facts(state, { saleTries: 2, chargeStatus: 'soft_declined' })))) {
        if (verdict.allowed) continue;
        expect(verdict.reason).toMatch(/^[A-Z].*\.$/);
        expect(verdict.reason).not.toMatch(/[a-z]+_[a-z]+/);
        expect(verdict.reason).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}/);
      }
    }
  });
});
