// What each reconciliation difference means and what to do about it, with the desk page whose action resolves it
// (the way runbooks.ts does it for ops event types). A Record over DriftKind: a new kind does not compile without
// its hint, and hints.test.ts checks every kind the reconciler names has one that links somewhere real.
import { DAY_MS, type DriftKind } from './model';

/** The parts of a finding a hint's link needs. */
export interface HintSubject {
  customerId: string;
  /** Null when the customer row is gone: the ledger names a customer the desk cannot find. */
  customerExternalId: string | null;
  eventName: string | null;
  windowId: string | null;
  /** ISO start of the UTC day (Stripe) or of the window (Braintree). */
  periodStart: string;
}

export interface DriftHint {
  /** What the difference means, in the operator's words. */
  meaning: string;
  /** What to do about it. */
  todo: string;
  action: (subject: HintSubject) => { label: string; href: string };
}

/** The events page filtered to one customer's events of one meter and UTC day of usage time (`status` if given). */
function dayEvents(s: HintSubject, status?: 'failed'): string {
  const day = Date.parse(s.periodStart);
  const minute = (ms: number) => new Date(ms).toISOString().slice(0, 16);
  const params = new URLSearchParams({
    ...(status ? { status } : {}),
    customer: s.customerExternalId ?? '',
    eventName: s.eventName ?? '',
    time: 'occurred',
    from: minute(day),
    to: minute(day + DAY_MS),
  });
  return `/events?${params}`;
}

const windowPage = (s: HintSubject) => (s.windowId ? `/windows/${s.windowId}` : `/customers/${s.customerId}`);

export const DRIFT_HINTS: Record<DriftKind, DriftHint> = {
  missing_at_processor: {
    meaning: 'Stripe counted less usage for this customer, meter and day than the ledger marked as reported: some events never reached Stripe’s meter or were rejected after being accepted.',
    todo: 'Look at that day’s failed events for the customer and meter, fix the cause (a missing Stripe customer or meter), and retry them; the next run resolves the difference.',
    action: (s) => ({ label: 'Failed events of that day, to retry', href: dayEvents(s, 'failed') }),
  },
  extra_at_processor: {
    meaning: 'Stripe counted more usage than the ledger reported: usage reached Stripe twice (a forced retry after the dedupe window) or from outside Meterdesk (another integration on the same key).',
    todo: 'Compare that day’s events with Stripe’s meter event summary; cancel the extra usage in Stripe (a meter event adjustment) or stop the other sender.',
    action: (s) => ({ label: 'Events of that day', href: dayEvents(s) }),
  },
  value_mismatch: {
    meaning: 'For a meter that bills the last value, Stripe’s last value for this day is not the ledger’s last reported value: a later event failed or arrived at Stripe out of order.',
    todo: 'Find the day’s latest event for the meter; if it failed, retry it so Stripe’s last value is the ledger’s.',
    action: (s) => ({ label: 'Events of that day', href: dayEvents(s) }),
  },
  no_processor_meter: {
    meaning: 'Stripe has no meter for this event name, so everything reported under it was counted nowhere at Stripe.',
    todo: 'Create the meter in Stripe for this event name (or correct the definition’s Stripe meter), then retry the failed events.',
    action: () => ({ label: 'Meter definitions', href: '/definitions' }),
  },
  sale_missing: {
    meaning: 'The ledger has this window paid, but Braintree has no approved sale under its order id: the money was never taken.',
    todo: 'Open the window and settle it again; it finds no sale and charges the customer once.',
    action: (s) => ({ label: 'The window, to settle again', href: windowPage(s) }),
  },
  duplicate_sale: {
    meaning: 'Braintree holds more than one approved sale for this window: the customer paid twice.',
    todo: 'Refund (or void) every sale but the one the window’s charge attempt recorded, at Braintree; the next run resolves the difference.',
    action: (s) => ({ label: 'The window and its charge attempt', href: windowPage(s) }),
  },
  amount_mismatch: {
    meaning: 'Braintree’s sale for this window is for a different amount (or currency) than the ledger charged.',
    todo: 'Check the window’s invoice against the sale; refund the excess at Braintree or, for finance, write off or charge the rest.',
    action: (s) => ({ label: 'The window and its invoice', href: windowPage(s) }),
  },
  unrecorded_sale: {
    meaning: 'Braintree took a sale for this window but the ledger does not have it paid: the sale’s answer was lost before it was recorded.',
    todo: 'Open the window and settle it again: it finds the sale by its order id and records it instead of charging twice.',
    action: (s) => ({ label: 'The window, to settle again', href: windowPage(s) }),
  },
};

/**
 * The hint for a finding. A customer the desk cannot find (its row gone: the ledger names an unknown customer) sends
 * the operator to the customer search first: that customer's own page would be a 404, and every other link is
 * filtered by the customer.
 */
export function driftHint(kind: DriftKind, subject: HintSubject): { meaning: string; todo: string; action: { label: string; href: string } } {
  const hint = DRIFT_HINTS[kind];
  if (subject.customerExternalId === null) {
    return {
      meaning: hint.meaning,
      todo: 'The ledger names a customer the desk cannot find: look the customer up (by its processor customer id) and restore or map it, then act on the difference.',
      action: { label: 'Find the customer', href: '/customers' },
    };
  }
  return { meaning: hint.meaning, todo: hint.todo, action: hint.action(subject) };
}
