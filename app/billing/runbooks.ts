// One runbook per ops event type (ops-events.ts), shown on the desk's telemetry page: what happened, what to
// check, which action fixes it, and the desk page where that action is (already filtered where a filter helps).
// Typed as a Record over OpsEventType so a new ops event type does not compile without its runbook.
import type { OpsEventType } from './ops-events';

export interface Runbook {
  type: OpsEventType;
  title: string;
  /** What happened, in the operator's words. */
  what: string;
  /** What to check before acting. */
  check: string[];
  /** Which action fixes it. */
  fix: string;
  /** The desk page where that action is. */
  action: { label: string; href: string };
}

export const RUNBOOKS: Record<OpsEventType, Runbook> = {
  meter_reporting_failed: {
    type: 'meter_reporting_failed',
    title: 'Stripe rejected a meter event',
    what:
      'A Stripe meter event moved to failed: Stripe refused it when reported (sync), rejected it after accepting it (error-report webhook), or it stayed unreported past the 23 h guard of Stripe\'s 24 h identifier dedupe (sync or reconciler).',
    check: [
      'The error code on the failed events (filter the events page by it): no_meter / no_customer mean the Stripe side is missing a meter or a customer mapping.',
      'Whether the customer\'s processor customer id (cus_...) exists in Stripe.',
      'For dedupe_window_expired: whether Stripe already counted the identifier before retrying with force.',
    ],
    fix: 'Fix the cause in Stripe (or the customer\'s mapping), then retry the failed events: one, a selection, or every event matching the filter.',
    action: { label: 'Retry failed events', href: '/events?status=failed' },
  },
  metered_renewal_stale_repaired: {
    type: 'metered_renewal_stale_repaired',
    title: 'A stale renewal was repaired',
    what:
      'A Braintree subscription\'s period ended without a window for it; the reconciler opened and closed the window late and queued its settlement.',
    check: [
      'Whether the renewal webhook for that subscription arrived (webhook_rejected events around the same time).',
      'That the repaired window\'s invoice covers the period\'s usage and its charge is settling.',
      'Any subscription still listed under Stale renewals.',
    ],
    fix: 'Nothing more if the repaired window settles. Repair any remaining stale renewal now from the windows page instead of waiting for the reconciler.',
    action: { label: 'Review stale renewals and windows', href: '/windows' },
  },
  metered_missing_definition: {
    type: 'metered_missing_definition',
    title: 'Usage without a meter definition',
    what:
      'A closed window had events whose event name no meter defines: they were billed nowhere (unmatched). It fires once per window.',
    check: [
      'The unmatched event names in the missing-definitions inbox: a typo in the host app, or a meter nobody added yet.',
      'Whether the window has been charged already (re-authoring is allowed only before the charge).',
    ],
    fix: 'Add the meter and its prices for the missing event name, then replay (re-author) the windows it blocked.',
    action: { label: 'Add the missing definition', href: '/definitions' },
  },
  metered_charge_awaiting_payment_method: {
    type: 'metered_charge_awaiting_payment_method',
    title: 'A window is waiting for a payment method',
    what: 'A closed Braintree window has an amount to charge but its customer has no default payment method, so no sale was attempted.',
    check: [
      'The customer\'s default payment method token in Braintree.',
      'Whether the customer was told to add a card (support).',
    ],
    fix: 'Once the customer has a default payment method, settle the window again from its page.',
    action: { label: 'Windows awaiting a payment method', href: '/windows?state=awaiting_payment_method' },
  },
  metered_charge_failed_exhausted: {
    type: 'metered_charge_failed_exhausted',
    title: 'A charge failed for good',
    what:
      'A window\'s charge was hard-declined or spent its retry budget; it is never re-charged automatically.',
    check: [
      'The charge attempt\'s response code on the window page (2004+ are hard declines; 2000/2001 are soft).',
      'Whether the customer has since updated their payment method.',
    ],
    fix: 'Settle the window again after the payment method is fixed, or (finance) write the charge off.',
    action: { label: 'Windows that failed, exhausted', href: '/windows?state=failed_exhausted' },
  },
  metered_sale_failed: {
    type: 'metered_sale_failed',
    title: 'A sale was declined or refused',
    what:
      'Braintree declined a window\'s sale (soft or hard), rejected it at the gateway, or refused its request; one ops event per sale sent, with the response code. Soft declines and errors are retried on their own.',
    check: [
      'The response codes: many windows with the same code at once point at the gateway or the merchant account, not the customers.',
      'The windows page: windows retrying, and those that failed for good.',
    ],
    fix: 'Usually nothing for a soft decline (the retry schedule runs). For a hard decline, the window fails for good: see "A charge failed for good".',
    action: { label: 'Windows with a retry scheduled', href: '/windows?state=retry_scheduled' },
  },
  processor_rate_limited: {
    type: 'processor_rate_limited',
    title: 'The processor rate-limited us',
    what: 'Stripe answered 429 to a reporting call; the affected events were released and retried with backoff (one ops event per backoff episode).',
    check: [
      'Whether pending events are still draining (the pending count on the overview goes down).',
      'Another integration sharing the same Stripe key, or one customer and meter receiving bursts (1 concurrent call each).',
    ],
    fix: 'Usually nothing: reporting backs off and catches up. If events keep waiting, look at the pending events and their last error.',
    action: { label: 'Pending events', href: '/events?status=pending' },
  },
  webhook_rejected: {
    type: 'webhook_rejected',
    title: 'A webhook was refused',
    what:
      'A Stripe or Braintree webhook failed its signature check or could not be applied (unknown subscription, plan or malformed data); nothing was changed by it.',
    check: [
      'The reason in the ops event\'s metadata: a signature failure means the webhook secret differs from the processor dashboard\'s.',
      'For data errors: whether the customer or subscription it names exists here.',
    ],
    fix: 'Fix the webhook secret or the missing customer/subscription; the processor redelivers, or repair the affected window by hand.',
    action: { label: 'Review windows', href: '/windows' },
  },
  metered_late_usage: {
    type: 'metered_late_usage',
    title: 'Late usage carried into the next window',
    what:
      'Events occurred inside a window that was already invoiced; they were billed as a labelled late-usage line in the next window (never lost, never billed twice).',
    check: [
      'The host app\'s reporting delay: events arriving after the close grace period.',
      'The late-usage line on the receiving window\'s invoice.',
    ],
    fix: 'No fix needed for the money. If it happens often, have the host report sooner or lengthen the close grace period.',
    action: { label: 'Closed windows and their invoices', href: '/windows?state=closed' },
  },
  ledger_drift: {
    type: 'ledger_drift',
    title: 'The ledger and the processor disagree',
    what:
      'Reconciliation compared what the ledger says was reported or charged with what the processor holds (Stripe meter event summaries per customer, meter and day; Braintree sales per window) and found a difference.',
    check: [
      'The finding on the reconciliation page: its kind (missing at the processor, extra at the processor, a sale missing, a second sale, an amount that differs) and both sides\' figures.',
      'For Stripe: the customer\'s events of that day on the events page (filter by customer and usage time), and any failed or pending ones.',
      'For Braintree: the window\'s charge attempt and the sales found by its order id.',
    ],
    fix: 'Correct the side that is wrong (retry the events Stripe never counted; refund a second sale at the processor), then run reconciliation again: a difference that is gone is resolved.',
    action: { label: 'Open reconciliation', href: '/reconciliation' },
  },
};

export function runbookFor(type: string): Runbook | null {
  return (RUNBOOKS as Record<string, Runbook | undefined>)[type] ?? null;
}
