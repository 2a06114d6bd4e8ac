// The alerts page (ADR 036): firings open now and recently resolved, the rules, the channels (never their secret
// or full URL: a Slack URL is a credential), and recent deliveries with their answers.
import type { Queryable } from '../billing/db';
import { RULE_KINDS, type RuleKind } from '../billing/alerts/rules';

export interface FiringItem {
  id: string;
  ruleId: string;
  ruleName: string;
  kind: string;
  summary: string;
  values: Record<string, unknown>;
  firedAt: string;
  lastEvaluatedAt: string;
  resolvedAt: string | null;
}

export interface RuleItem {
  id: string;
  name: string;
  kind: string;
  description: string;
  params: Record<string, unknown>;
  enabled: boolean;
  firing: boolean;
  lastFiredAt: string | null;
  /** The last evaluation's sentence and time (null: not evaluated yet, or turned off before). */
  lastSummary: string | null;
  lastEvaluatedAt: string | null;
}

export interface ChannelItem {
  id: string;
  name: string;
  kind: string;
  origin: string;
  secretPrefix: string | null;
  enabled: boolean;
  failingSince: string | null;
  lastError: string | null;
}

export interface DeliveryItem {
  id: string;
  channelName: string;
  /** `email` answers are SMTP replies (250, 451, 550…); the others HTTP statuses. */
  channelKind: string;
  event: string;
  ruleName: string | null;
  state: string;
  attempts: number;
  lastStatus: number | null;
  lastResponse: string | null;
  lastAttemptAt: string | null;
  createdAt: string;
}

export interface AlertsPage {
  open: FiringItem[];
  resolved: FiringItem[];
  rules: RuleItem[];
  channels: ChannelItem[];
  deliveries: DeliveryItem[];
}

type FiringRow = { id: string; rule_id: string; rule_name: string; kind: string; summary: string; values: Record<string, unknown>; fired_at: Date; last_evaluated_at: Date; resolved_at: Date | null };
const firing = (r: FiringRow): FiringItem => ({
  id: r.id,
  ruleId: r.rule_id,
  ruleName: r.rule_name,
  kind: r.kind,
  summary: r.summary,
  values: r.values,
  firedAt: r.fired_at.toISOString(),
  lastEvaluatedAt: r.last_evaluated_at.toISOString(),
  resolvedAt: r.resolved_at?.toISOString() ?? null,
});

const FIRING_SQL = `SELECT f.id, f.rule_id, r.name AS rule_name, r.kind, f.summary, f.values, f.fired_at, f.last_evaluated_at, f.resolved_at
                      FROM alert_firings f JOIN alert_rules r ON r.id = f.rule_id`;

/** The firings open now, newest first (the overview's list too). */
export async function readOpenFirings(db: Queryable): Promise<FiringItem[]> {
  const { rows } = await db.query<FiringRow>(`${FIRING_SQL} WHERE f.resolved_at IS NULL ORDER BY f.fired_at DESC LIMIT 100`);
  return rows.map(firing);
}

export async function readAlertsPage(db: Queryable): Promise<AlertsPage> {
  const [open, resolved, rules, channels, deliveries] = await Promise.all([
    readOpenFirings(db),
    db.query<FiringRow>(`${FIRING_SQL} WHERE f.resolved_at IS NOT NULL ORDER BY f.resolved_at DESC LIMIT 20`),
    db.query<{ id: string; name: string; kind: string; params: Record<string, unknown>; enabled: boolean; firing: boolean; last_fired_at: Date | null; last_summary: string | null; last_evaluated_at: Date | null }>(
      `SELECT r.id, r.name, r.kind, r.params, r.enabled,
              EXISTS (SELECT 1 FROM alert_firings f WHERE f.rule_id = r.id AND f.resolved_at IS NULL) AS firing,
              (SELECT max(f.fired_at) FROM alert_firings f WHERE f.rule_id = r.id) AS last_fired_at,
              r.last_summary, r.last_evaluated_at
         FROM alert_rules r ORDER BY r.name`,
    ),
    db.query<{ id: string; name: string; kind: string; url: string; secret_prefix: string | null; enabled: boolean; failing_since: Date | null; last_error: string | null }>(
      `SELECT id, name, kind, url, secret_prefix, enabled, failing_since, last_error FROM alert_channels ORDER BY name`,
    ),
    db.query<{ id: string; channel_name: string; channel_kind: string; event: string; rule_name: string | null; state: string; attempts: number; last_status: number | null; last_response: string | null; last_attempt_at: Date | null; created_at: Date }>(
      `SELECT d.id, c.name AS channel_name, c.kind AS channel_kind, d.event, r.name AS rule_name, d.state, d.attempts, d.last_status, d.last_response, d.last_attempt_at, d.created_at
         FROM alert_deliveries d JOIN alert_channels c ON c.id = d.channel_id
         LEFT JOIN alert_firings f ON f.id = d.firing_id LEFT JOIN alert_rules r ON r.id = f.rule_id
        ORDER BY d.created_at DESC LIMIT 30`,
    ),
  ]);
  return {
    open,
    resolved: resolved.rows.map(firing),
    rules: rules.rows.map((r) => ({
      id: r.id,
      name: r.name,
      kind: r.kind,
      description: RULE_KINDS[r.kind as RuleKind] ?? r.kind,
      params: r.params,
      enabled: r.enabled,
      firing: r.firing,
      lastFiredAt: r.last_fired_at?.toISOString() ?? null,
      lastSummary: r.last_summary,
      lastEvaluatedAt: r.last_evaluated_at?.toISOString() ?? null,
    })),
    channels: channels.rows.map((c) => ({
      id: c.id,
      name: c.name,
      kind: c.kind,
      // An email channel shows its addresses (not a credential); a URL only its origin (a Slack URL is one).
      origin: c.kind === 'email' ? c.url.replace(/^mailto:/i, '').replaceAll(',', ', ') : URL.canParse(c.url) ? new URL(c.url).origin : '(invalid URL)',
      secretPrefix: c.secret_prefix,
      enabled: c.enabled,
      failingSince: c.failing_since?.toISOString() ?? null,
      lastError: c.last_error,
    })),
    deliveries: deliveries.rows.map((d) => ({
      id: d.id,
      channelName: d.channel_name,
      channelKind: d.channel_kind,
      event: d.event,
      ruleName: d.rule_name,
      state: d.state,
      attempts: d.attempts,
      lastStatus: d.last_status,
      lastResponse: d.last_response,
      lastAttemptAt: d.last_attempt_at?.toISOString() ?? null,
      createdAt: d.created_at.toISOString(),
    })),
  };
}
