// Sending one delivery (alerts__deliver): builds the notification, POSTs it (or, for an email channel, hands it to the
// SMTP server) with a timeout, and records the attempt (the HTTP status or SMTP reply code and the start of the answer,
// or the error) before saying whether to try again. A delivery that uses up its
// attempts is `failed` and marks its channel failing with the answer; the next success clears it. Nothing here holds
// a transaction or a lock while the channel answers, so a slow or unreachable channel delays only its own job.
import nodemailer from 'nodemailer';
import type { Queryable } from '../db';
import { RUNBOOKS } from '../runbooks';
import type { OpsEventType } from '../ops-events';
import { mailtoAddresses, SIGNATURE_HEADER, signAlertBody } from './channels';
import { KIND_GUIDE, RULE_KINDS, type RuleKind } from './kinds';

export const DEFAULT_DELIVERY_TIMEOUT_MS = 10_000;
const RESPONSE_EXCERPT = 500;


/** Where email channels are sent through (SMTP_URL) and who they are from (ALERTS_EMAIL_FROM). */
export interface EmailOptions {
  smtpUrl: string;
  from: string;
}

export interface DeliveryOptions {
  /** The desk's public origin (DESK_URL), for absolute links; without it links are paths. */
  deskUrl?: string;
  /** The SMTP server for email channels; without it their attempts fail (and are retried) saying so. */
  email?: EmailOptions;
  timeoutMs?: number;
  /** This attempt's number (1-based) and the job's limit, from graphile-worker. */
  attempt: number;
  maxAttempts: number;
  now?: () => Date;
}

/** Runs `fn` on a connection held only for that call (graphile-worker's withPgClient, or a pool in tests). */
export type WithDb = <T>(fn: (db: Queryable) => Promise<T>) => Promise<T>;

/** `status` is the HTTP status, or for email the SMTP reply code; `answer` the two as one line (null when skipped). */
export type DeliveryOutcome = { state: 'delivered' | 'failed' | 'retry' | 'skipped'; status: number | null; response: string | null; answer: string | null };

interface DeliveryRow {
  id: string;
  event: 'firing' | 'resolved' | 'test';
  state: string;
  channel_id: string;
  channel_name: string;
  kind: 'webhook' | 'slack' | 'email';
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
  if (row.kind === 'slack') {
    const links = alertLinks(row.rule_kind, row.params, deskUrl);
    const head = row.event === 'test' ? `Test from Meterdesk: channel "${row.channel_name}" works.` : `${row.event === 'firing' ? 'Firing' : 'Resolved'}: ${row.rule_name}. ${row.summary}`;
    return JSON.stringify({ text: row.event === 'test' ? head : `${head}\nFix it: ${links.desk}\nRunbook: ${links.runbook}` });
  }
  return JSON.stringify(notificationPayload(row, deskUrl, now));
}

/** The webhook's JSON payload; the email is written from the same object. */
export function notificationPayload(row: DeliveryRow, deskUrl: string | undefined, now: Date) {
  const links = alertLinks(row.rule_kind, row.params, deskUrl);
  return {
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
  };
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const valueText = (v: unknown) => (v === null || v === undefined ? 'none' : typeof v === 'object' ? JSON.stringify(v) : String(v));

/** An email channel's message: the webhook payload's summary, values and links, as plain text and a small HTML. */
export function notificationEmail(row: DeliveryRow, deskUrl: string | undefined, now: Date): { subject: string; text: string; html: string } {
  const { alert, links, channel } = notificationPayload(row, deskUrl, now);
  if (!alert) {
    const line = `Test from Meterdesk: channel "${channel.name}" works.`;
    return {
      subject: `[Meterdesk] Test: channel "${channel.name}"`,
      text: `${line}\n\nAlerts: ${links.desk}\n`,
      html: `<p>${escapeHtml(line)}</p><p><a href="${escapeHtml(links.desk)}">Alerts</a></p>`,
    };
  }
  const head = `${alert.state === 'firing' ? 'FIRING' : 'RESOLVED'}: ${alert.rule.name}`;
  const sections: Array<[string, Record<string, unknown> | null]> = [
    [`Values when it fired (${alert.firedAt})`, alert.values],
    ...(alert.resolvedAt ? [[`Values when it resolved (${alert.resolvedAt})`, alert.resolvedValues] as [string, Record<string, unknown> | null]] : []),
  ];
  const text = [
    head,
    alert.summary ?? '',
    '',
    ...sections.flatMap(([title, values]) => [`${title}:`, ...Object.entries(values ?? {}).map(([k, v]) => `  ${k}: ${valueText(v)}`), '']),
    `What to check: ${links.check}`,
    `Fix it: ${links.desk}`,
    `Runbook: ${links.runbook}`,
    '',
    `Rule: ${alert.rule.description ?? alert.rule.kind}`,
    `Delivery ${row.id} to channel "${channel.name}".`,
  ].join('\n');
  const table = ([title, values]: [string, Record<string, unknown> | null]) =>
    `<h3>${escapeHtml(title)}</h3><table>${Object.entries(values ?? {})
      .map(([k, v]) => `<tr><th align="left">${escapeHtml(k)}</th><td>${escapeHtml(valueText(v))}</td></tr>`)
      .join('')}</table>`;
  const html = [
    `<h2>${escapeHtml(head)}</h2>`,
    `<p>${escapeHtml(alert.summary ?? '')}</p>`,
    ...sections.map(table),
    `<p>What to check: ${escapeHtml(links.check)}</p>`,
    `<p><a href="${escapeHtml(links.desk)}">Fix it on the desk</a> · <a href="${escapeHtml(links.runbook)}">Runbook</a></p>`,
    `<p style="color:#666">Rule: ${escapeHtml(alert.rule.description ?? String(alert.rule.kind))}</p>`,
  ].join('\n');
  return { subject: `[Meterdesk] ${head}`, text, html };
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
  if (!row || row.state !== 'pending') return { state: 'skipped', status: null, response: null, answer: null };
  const now = options.now?.() ?? new Date();
  if (!row.enabled) {
    await withDb((db) => record(db, row, 'failed', null, 'The channel was turned off before this was sent.'));
    return { state: 'failed', status: null, response: null, answer: null };
  }
  const sent = row.kind === 'email' ? await sendEmail(row, options, now) : await postWebhook(row, options, now);
  const ok = sent.status !== null && sent.status >= 200 && sent.status < 300;
  const state = ok ? 'delivered' : options.attempt >= options.maxAttempts ? 'failed' : 'retry';
  await withDb((db) => record(db, row, state, sent.status, sent.response));
  return { state, ...sent, answer: answerLine(row.kind, sent.status, sent.response) };
}

type Sent = { status: number | null; response: string };

async function postWebhook(row: DeliveryRow, options: DeliveryOptions, now: Date): Promise<Sent> {
  const body = notificationBody(row, options.deskUrl, now);
  const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'Meterdesk-Alerts/1', 'meterdesk-delivery': row.id };
  if (row.kind === 'webhook' && row.secret) headers[SIGNATURE_HEADER] = signAlertBody(row.secret, body, Math.floor(now.getTime() / 1000));
  try {
    const answer = await fetch(row.url, { method: 'POST', headers, body, redirect: 'manual', signal: AbortSignal.timeout(options.timeoutMs ?? DEFAULT_DELIVERY_TIMEOUT_MS) });
    return { status: answer.status, response: (await answer.text().catch(() => '')).slice(0, RESPONSE_EXCERPT) };
  } catch (error) {
    const e = error as Error & { cause?: { code?: string } };
    return { status: null, response: e.name === 'TimeoutError' ? `no answer within ${(options.timeoutMs ?? DEFAULT_DELIVERY_TIMEOUT_MS) / 1000} s` : `${e.cause?.code ?? e.name}: ${e.message}` };
  }
}

/** One SMTP transaction; the attempt records the server's reply line (`250 …`, `451 …`, `550 …`) and its code. */
async function sendEmail(row: DeliveryRow, options: DeliveryOptions, now: Date): Promise<Sent> {
  if (!options.email) return { status: null, response: 'SMTP_URL is not set on the worker: email channels cannot be sent.' };
  const timeoutMs = options.timeoutMs ?? DEFAULT_DELIVERY_TIMEOUT_MS;
  const transport = nodemailer.createTransport({ url: options.email.smtpUrl, connectionTimeout: timeoutMs, greetingTimeout: timeoutMs, socketTimeout: timeoutMs });
  const message = notificationEmail(row, options.deskUrl, now);
  try {
    const info = await transport.sendMail({ from: options.email.from, to: mailtoAddresses(row.url), ...message, headers: { 'Meterdesk-Delivery': row.id } });
    const reply = String(info.response ?? '');
    // Some recipients refused while others were accepted: delivered, and the refused ones said in the answer.
    const refused = info.rejected ?? [];
    const response = refused.length ? `${reply} (refused: ${refused.join(', ')})` : reply;
    // sendMail resolves only once the server accepted the message (a 2xx to DATA), so a reply without a code is a 250.
    return { status: Number(/^\d{3}/.exec(reply)?.[0] ?? 250), response: response.slice(0, RESPONSE_EXCERPT) };
  } catch (error) {
    const e = error as Error & { code?: string; responseCode?: number; response?: string };
    if (e.responseCode) return { status: e.responseCode, response: (e.response ?? e.message).slice(0, RESPONSE_EXCERPT) };
    const response = e.code === 'ETIMEDOUT' ? `no answer within ${timeoutMs / 1000} s (${e.message})` : `${e.code ?? e.name}: ${e.message}`;
    return { status: null, response: response.slice(0, RESPONSE_EXCERPT) };
  } finally {
    transport.close();
  }
}

/** `HTTP 500: receiver is down`, `SMTP 550 5.1.1 no such user` (the reply line carries its code), `no answer: …`. */
export function answerLine(kind: DeliveryRow['kind'], status: number | null, response: string): string {
  if (status === null) return `no answer: ${response}`;
  if (kind !== 'email') return `HTTP ${status}: ${response}`;
  return response.startsWith(String(status)) ? `SMTP ${response}` : `SMTP ${status}: ${response}`;
}

async function record(db: Queryable, row: DeliveryRow, state: 'delivered' | 'failed' | 'retry', status: number | null, response: string): Promise<void> {
  const error = state === 'delivered' ? null : answerLine(row.kind, status, response).slice(0, RESPONSE_EXCERPT);
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
