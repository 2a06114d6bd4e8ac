// Sending one delivery (alerts__deliver): builds the notification, POSTs it with a timeout, and records the attempt
// (status and the start of the answer, or the error) before saying whether to try again. A delivery that uses up its
// attempts is `failed` and marks its channel failing with the answer; the next success clears it. Nothing here holds
// a transaction or a lock while the channel answers, so a slow or unreachable channel delays only its own job.
import type { Queryable } from '../db';
import { RUNBOOKS } from '../runbooks';
import type { OpsEventType } from '../ops-events';
import { SIGNATURE_HEADER, signAlertBody } from './channels';
import { KIND_GUIDE, RULE_KINDS, type RuleKind } from './kinds';

export const DEFAULT_DELIVERY_TIMEOUT_MS = 10_000;
const RESPONSE_EXCERPT = 500;


export interface DeliveryOptions {
  /** The desk's public origin (DESK_URL), for absolute links; without it links are paths. */
  deskUrl?: string;
  timeoutMs?: number;
  /** This attempt's number (1-based) and the job's limit, from graphile-worker. */
  attempt: number;
  maxAttempts: number;
  now?: () => Date;
}

/** Runs `fn` on a connection held only for that call (graphile-worker's withPgClient, or a pool in tests). */
export type WithDb = <T>(fn: (db: Queryable) => Promise<T>) => Promise<T>;

export type DeliveryOutcome = { state: 'delivered' | 'failed' | 'retry' | 'skipped'; status: number | null; response: string | null };

interface DeliveryRow {
  id: string;
  event: 'firing' | 'resolved' | 'test';
  state: string;
  channel_id: string;
  channel_name: string;
  kind: 'webhook' | 'slack';
  url: string;
  secret: string | null;
  enabled: boolean;
  firing_id: string | null;
  fired_at: Date | null;
  resolved_at: Date | null;
  values: Record<string, unknown> | null;
  resolved_values: Record<string, unknown> | null;
  summary: string | null;
  rule_id: string | null;
  rule_name: string | null;
  rule_kind: RuleKind | null;
  params: Record<string, unknown> | null;
}

/** The links a notification carries: the desk page that fixes it, and the runbook. */
export function alertLinks(kind: RuleKind | null, params: Record<string, unknown> | null, deskUrl = ''): { desk: string; runbook: string; check: string } {
  const base = deskUrl.replace(/\/$/, '');
  if (!kind) return { desk: `${base}/alerts`, runbook: `${base}/alerts`, check: 'Nothing: this is a test notification.' };
  const guide = KIND_GUIDE[kind];
  if (kind === 'ops_event') {
    const book = RUNBOOKS[params?.type as OpsEventType];
    if (book) return { desk: `${base}${book.action.href}`, runbook: `${base}/telemetry#runbook-${book.type}`, check: book.check[0] ?? guide.check };
  }
  return { desk: `${base}${guide.href}`, runbook: `${base}/alerts#kind-${kind}`, check: guide.check };
}

export function notificationBody(row: DeliveryRow, deskUrl: string | undefined, now: Date): string {
  const links = alertLinks(row.rule_kind, row.params, deskUrl);
  if (row.kind === 'slack') {
    const head = row.event === 'test' ? `Test from Meterdesk: channel "${row.channel_name}" works.` : `${row.event === 'firing' ? 'Firing' : 'Resolved'}: ${row.rule_name}. ${row.summary}`;
    return JSON.stringify({ text: row.event === 'test' ? head : `${head}\nFix it: ${links.desk}\nRunbook: ${links.runbook}` });
  }
  return JSON.stringify({
    id: row.id,
    type: `alert.${row.event}`,
    created: now.toISOString(),
    channel: { id: row.channel_id, name: row.channel_name },
    alert:
      row.event === 'test'
        ? null
        : {
            firingId: row.firing_id,
            rule: { id: row.rule_id, name: row.rule_name, kind: row.rule_kind, description: row.rule_kind ? RULE_KINDS[row.rule_kind] : null, params: row.params },
            state: row.resolved_at ? 'resolved' : 'firing',
            firedAt: row.fired_at?.toISOString() ?? null,
            resolvedAt: row.resolved_at?.toISOString() ?? null,
            summary: row.summary,
            values: row.values,
            resolvedValues: row.resolved_values,
          },
    links,
  });
}

async function loadDelivery(db: Queryable, deliveryId: string): Promise<DeliveryRow | undefined> {
  const { rows } = await db.query<DeliveryRow>(
    `SELECT d.id, d.event, d.state, c.id AS channel_id, c.name AS channel_name, c.kind, c.url, c.secret, c.enabled,
            f.id AS firing_id, f.fired_at, f.resolved_at, f.values, f.resolved_values, f.summary,
            r.id AS rule_id, r.name AS rule_name, r.kind AS rule_kind, r.params
       FROM alert_deliveries d
       JOIN alert_channels c ON c.id = d.channel_id
       LEFT JOIN alert_firings f ON f.id = d.firing_id
       LEFT JOIN alert_rules r ON r.id = f.rule_id
      WHERE d.id = $1`,
    [deliveryId],
  );
  return rows[0];
}

/** Sends delivery `deliveryId` once and records the attempt; `retry` means the job should throw and run again. */
export async function deliverAlert(withDb: WithDb, deliveryId: string, options: DeliveryOptions): Promise<DeliveryOutcome> {
  const row = await withDb((db) => loadDelivery(db, deliveryId));
  if (!row || row.state !== 'pending') return { state: 'skipped', status: null, response: null };
  const now = options.now?.() ?? new Date();
  if (!row.enabled) {
    await withDb((db) => record(db, row, 'failed', null, 'The channel was turned off before this was sent.'));
    return { state: 'failed', status: null, response: null };
  }
  const body = notificationBody(row, options.deskUrl, now);
  const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'Meterdesk-Alerts/1', 'meterdesk-delivery': row.id };
  if (row.kind === 'webhook' && row.secret) headers[SIGNATURE_HEADER] = signAlertBody(row.secret, body, Math.floor(now.getTime() / 1000));
  let status: number | null = null;
  let response: string;
  try {
    const answer = await fetch(row.url, { method: 'POST', headers, body, redirect: 'manual', signal: AbortSignal.timeout(options.timeoutMs ?? DEFAULT_DELIVERY_TIMEOUT_MS) });
    status = answer.status;
    response = (await answer.text().catch(() => '')).slice(0, RESPONSE_EXCERPT);
  } catch (error) {
    const e = error as Error & { cause?: { code?: string } };
    response = e.name === 'TimeoutError' ? `no answer within ${(options.timeoutMs ?? DEFAULT_DELIVERY_TIMEOUT_MS) / 1000} s` : `${e.cause?.code ?? e.name}: ${e.message}`;
  }
  const ok = status !== null && status >= 200 && status < 300;
  const state = ok ? 'delivered' : options.attempt >= options.maxAttempts ? 'failed' : 'retry';
  await withDb((db) => record(db, row, state, status, response));
  return { state, status, response };
}

async function record(db: Queryable, row: DeliveryRow, state: 'delivered' | 'failed' | 'retry', status: number | null, response: string): Promise<void> {
  const error = state === 'delivered' ? null : `${status === null ? 'no answer' : `HTTP ${status}`}: ${response}`.slice(0, RESPONSE_EXCERPT);
  await db.query(
    `WITH d AS (
       UPDATE alert_deliveries SET attempts = attempts + 1, last_status = $2, last_response = $3, last_attempt_at = now(),
              state = CASE WHEN $4 = 'retry' THEN 'pending' ELSE $4 END,
              delivered_at = CASE WHEN $4 = 'delivered' THEN now() END
        WHERE id = $1 AND state = 'pending'
       RETURNING channel_id
     )
     UPDATE alert_channels c
        SET failing_since = CASE WHEN $4 = 'delivered' THEN NULL WHEN $4 = 'failed' THEN COALESCE(c.failing_since, now()) ELSE c.failing_since END,
            last_error = CASE WHEN $4 = 'delivered' THEN c.last_error ELSE $5 END
       FROM d WHERE c.id = d.channel_id`,
    [row.id, status, response, state, error],
  );
}
