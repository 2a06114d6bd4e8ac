// The words for alert rule and channel kinds, shared by the domain and the desk's forms (no server imports here:
// the alerts page's client bundle reads them).
export const RULE_KINDS = {
  reporting_lag: 'Reporting lag: the oldest Stripe event still pending is older than N minutes',
  windows_unpaid: 'Windows unpaid: a Braintree window is not paid N hours after its period ended',
  failure_rate: 'Failure rate: more than T Stripe events failed in the last M minutes (optionally one error code)',
  silence: 'Silence: no usage event received for N minutes',
  ops_event: 'Ops event: more than T ops events of one type in the last M minutes (e.g. ledger_drift)',
} as const;
export type RuleKind = keyof typeof RULE_KINDS;

export const CHANNEL_KINDS = {
  webhook: 'Webhook: JSON, signed with HMAC-SHA256 and a timestamp',
  slack: 'Slack-compatible incoming webhook',
} as const;
export type ChannelKind = keyof typeof CHANNEL_KINDS;
