// In-scope peer cases the simulator deliberately answers differently, each with the reason. The conformance test
// fails when a case listed here passes (the entry is stale) or when an in-scope case fails without an entry.
export const STRIPE_DEPARTURES: Record<string, string> = {
  'Generated tests > test_core_events_get':
    "the example is an event about a v2 resource change and carries `changes`; the simulator's thin events are meter error reports, which Stripe documents without `changes` (docs.stripe.com/api/v2/core/events/event-types: v1.billing.meter.error_report_triggered)",
};
