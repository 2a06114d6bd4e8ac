// Notification channels (ADR 036): a signed webhook, a Slack-compatible incoming webhook, or email through SMTP (its
// addresses kept in `url` as a `mailto:` URL; creatable only when the server has SMTP_URL). A webhook channel's
// signing secret is made here and returned once (the desk shows it in the encrypted flash, like an API key); the
// desk lists only its prefix afterwards. The signature scheme (README, "Alert webhooks"):
//   Meterdesk-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
// A receiver recomputes v1 over the raw body and refuses a t older than its tolerance (replays).
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type pg from 'pg';
import { z } from 'zod';
import type { AdminResult } from '../access/desk-users';
import { writeAudit, type Actor } from '../audit';
import { withTransaction } from '../db';
import { firstFieldRefusal } from '../validation';
import { queueDeliveries } from './evaluate';
import { CHANNEL_KINDS, type ChannelKind } from './kinds';

export { CHANNEL_KINDS, type ChannelKind };
export const SIGNATURE_HEADER = 'Meterdesk-Signature';
export const DEFAULT_TOLERANCE_SECONDS = 300;

export const MAX_EMAIL_RECIPIENTS = 20;
export const EMAIL_NEEDS_SMTP = 'Email needs SMTP_URL set on the server.';

const channelSchema = z.object({
  name: z.string({ error: 'Name the channel' }).trim().min(1, 'Name the channel').max(100, 'Use at most 100 characters'),
  kind: z.enum(Object.keys(CHANNEL_KINDS) as [ChannelKind, ...ChannelKind[]], { error: 'must be webhook, slack or email' }),
  url: z.string({ error: 'Give the URL or email address to send to' }).trim().max(2_000, 'Use at most 2,000 characters'),
});
const webUrl = z.object({
  url: z.string().refine((u) => URL.canParse(u) && ['http:', 'https:'].includes(new URL(u).protocol), 'must be an http:// or https:// URL'),
});
const emailAddress = z.email();
// `oncall@example.com, ops@example.com` or `mailto:oncall@example.com,ops@example.com`, stored as the latter.
const mailtoUrl = z.object({
  url: z.string().transform((text, ctx) => {
    const refuse = (message: string) => {
      ctx.addIssue({ code: 'custom', message });
      return z.NEVER;
    };
    const list = text.replace(/^mailto:/i, '');
    if (list.includes('?')) return refuse('must be email addresses only (no ?subject= or other mailto: parts)');
    let decoded: string;
    try {
      decoded = decodeURIComponent(list);
    } catch {
      return refuse('must be an email address, or several separated by commas');
    }
    const addresses = decoded.split(',').map((a) => a.trim()).filter((a) => a !== '');
    if (addresses.length === 0) return refuse('must be an email address, or several separated by commas (e.g. oncall@example.com)');
    if (addresses.length > MAX_EMAIL_RECIPIENTS) return refuse(`Use at most ${MAX_EMAIL_RECIPIENTS} addresses`);
    const bad = addresses.find((a) => !emailAddress.safeParse(a).success);
    if (bad !== undefined) return refuse(`"${bad.slice(0, 100)}" is not an email address`);
    return `mailto:${[...new Set(addresses)].join(',')}`;
  }),
});
const TARGET: Record<ChannelKind, z.ZodType<{ url: string }, { url: string }>> = { webhook: webUrl, slack: webUrl, email: mailtoUrl };

/** The addresses of an email channel's `mailto:` URL. */
export function mailtoAddresses(url: string): string[] {
  return url.replace(/^mailto:/i, '').split(',').filter((a) => a !== '');
}

export interface ChannelOptions {
  /** SMTP is configured (SMTP_URL): email channels may be created. The web process sets it from its environment. */
  email?: boolean;
}

/** `t=…,v1=…` for `body` signed at `timestamp` (unix seconds). */
export function signAlertBody(secret: string, body: string, timestamp: number): string {
  const v1 = createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex');
  return `t=${timestamp},v1=${v1}`;
}

/** What a receiver does: true when `header` signs `body` with `secret` within the tolerance. */
export function verifyAlertSignature(secret: string, body: string, header: string | null | undefined, options: { now?: number; toleranceSeconds?: number } = {}): boolean {
  if (!header) return false;
  const parts = new Map(header.split(',').map((p) => p.split('=', 2) as [string, string]));
  const t = Number(parts.get('t'));
  const v1 = parts.get('v1');
  if (!Number.isInteger(t) || !v1 || !/^[0-9a-f]{64}$/.test(v1)) return false;
  const now = options.now ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - t) > (options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS)) return false;
  const expected = Buffer.from(signAlertBody(secret, body, t).slice(`t=${t},v1=`.length), 'hex');
  return timingSafeEqual(expected, Buffer.from(v1, 'hex'));
}

export async function createChannel(
  pool: pg.Pool,
  actor: Actor,
  input: { name: unknown; kind: unknown; url: unknown; reason?: string },
  options: ChannelOptions = {},
): Promise<AdminResult<{ id: string; name: string; secret: string | null }>> {
  const parsed = channelSchema.safeParse(input);
  if (!parsed.success) return firstFieldRefusal(parsed.error);
  const { name, kind } = parsed.data;
  if (kind === 'email' && !options.email) return { ok: false, field: 'kind', message: EMAIL_NEEDS_SMTP };
  const target = TARGET[kind].safeParse({ url: parsed.data.url });
  if (!target.success) return firstFieldRefusal(target.error);
  const { url } = target.data;
  const secret = kind === 'webhook' ? `whsec_${randomBytes(24).toString('base64url')}` : null;
  const secretPrefix = secret ? secret.slice(0, 10) : null;
  return withTransaction(pool, async (tx) => {
    const { rows } = await tx.query<{ id: string }>(
      `INSERT INTO alert_channels (id, name, kind, url, secret, secret_prefix) VALUES (gen_random_uuid(), $1, $2, $3, $4, $5)
       ON CONFLICT (name) DO NOTHING RETURNING id`,
      [name, kind, url, secret, secretPrefix],
    );
    const id = rows[0]?.id;
    if (!id) return { ok: false, field: 'name', message: `A channel named "${name}" already exists.` };
    // The audit keeps the URL's origin only: a Slack URL is itself a credential. Email addresses are not.
    const where = kind === 'email' ? { to: mailtoAddresses(url) } : { origin: new URL(url).origin };
    await writeAudit(tx, { actor, action: 'alert_channel.create', subjectType: 'alert_channel', subjectId: id, reason: input.reason, after: { name, kind, ...where, secretPrefix } });
    return { ok: true, value: { id, name, secret } };
  });
}

/** Queues a test notification to one channel ("send test"); it is delivered and recorded like a firing's. */
export async function sendTestNotification(pool: pg.Pool, actor: Actor, input: { channelId: string }): Promise<AdminResult<{ name: string }>> {
  return withTransaction(pool, async (tx) => {
    const { rows } = await tx.query<{ name: string; enabled: boolean }>(`SELECT name, enabled FROM alert_channels WHERE id = $1`, [input.channelId]);
    const channel = rows[0];
    if (!channel) return { ok: false, message: 'That channel does not exist.' };
    if (!channel.enabled) return { ok: false, message: `Channel "${channel.name}" is turned off.` };
    await queueDeliveries(tx, [{ id: null, event: 'test' }], input.channelId);
    await writeAudit(tx, { actor, action: 'alert_channel.test', subjectType: 'alert_channel', subjectId: input.channelId });
    return { ok: true, value: { name: channel.name } };
  });
}
