// The words for alert rule and channel kinds, shared by the domain and the desk's forms (no server imports here:
// the alerts page's client bundle reads them).
export const RULE_KINDS = {
  reporting_lag: 'Reporting lag: the oldest Stripe event still pending is older than N minutes',
  windows_unpaid: 'Windows unpaid: a Braintree window is not paid N hours after its period ended',
  failure_rate: 'Failure rate: more than T Stripe events (or Braintree sales) failed in the last M minutes, optionally with one error code',
  silence: 'Silence: no usage event received for N minutes, from the whole ledger, one customer or one meter, optionally only during its usual hours',
  usage_anomaly: 'Usage anomaly: a customer’s usage of a meter in the last hour (or day) above K times its median of the 24 hours (or 7 days) before',
  budget: 'Budget: a customer’s upcoming charges reach 50, 80 or 100 % of an amount',
  ops_event: 'Ops event: more than T ops events of one type in the last M minutes (e.g. ledger_drift)',
} as const;
export type RuleKind = keyof typeof RULE_KINDS;

/** Each kind's runbook: where it is fixed on the desk, and what to check first (the Alerts page, #kind-<kind>). */
export const KIND_GUIDE: Record<RuleKind, { href: string; check: string }> = {
  reporting_lag: { href: '/events?status=pending', check: 'Whether the worker runs and Stripe answers: the telemetry page shows reporting and rate limits.' },
  windows_unpaid: { href: '/windows', check: 'The windows page by state: a failed or retrying charge, a missing payment method, or a window that never closed.' },
  failure_rate: {
    href: '/events?status=failed',
    check: 'Events: the failed events grouped by error code on the events page; fix the cause in Stripe, then retry them. Sales: the windows page’s failed charges and their response codes.',
  },
  silence: { href: '/telemetry', check: 'Whether the host app still sends usage: its logs, its API key (revoked?), and the API answers on the telemetry page.' },
  usage_anomaly: {
    href: '/events',
    check: 'The customer’s recent events of that meter: a host app sending twice (same values, new identifiers), a retry loop, or real growth to tell finance about.',
  },
  budget: { href: '/invoices', check: 'The customer’s upcoming charges on the invoices page, line by line; tell the account owner before the window closes.' },
  ops_event: { href: '/telemetry', check: 'The ops event type’s runbook on the telemetry page.' },
};

export const CHANNEL_KINDS = {
  webhook: 'Webhook: JSON, signed with HMAC-SHA256 and a timestamp',
  slack: 'Slack-compatible incoming webhook',
  email: 'Email: sent through SMTP (SMTP_URL) to one or several addresses',
} as const;
export type ChannelKind = keyof typeof CHANNEL_KINDS;
