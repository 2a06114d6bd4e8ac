// Email alert channels against a real SMTP server on loopback (smtp-server, by nodemailer's authors): a channel is
// refused while SMTP is not configured and for a bad address list, a silence rule driven from the real ledger fires
// and the real alerts__deliver task sends it through nodemailer, and what the server received is parsed (mailparser)
// and checked: the envelope, the subject, the summary and both links. A server that answers 550 or 451 leaves its code
// and text on the attempt, the job retries, the last attempt marks the channel failing, and a test send that the
// server accepts clears it.
import type { AddressInfo } from 'node:net';
import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChannel, EMAIL_NEEDS_SMTP, sendTestNotification } from '../app/billing/alerts/channels';
import { deliverAlert } from '../app/billing/alerts/deliveries';
import { evaluateAlerts } from '../app/billing/alerts/evaluate';
import { createRule } from '../app/billing/alerts/rules';
import type { Actor } from '../app/billing/audit';
import { createTaskList } from '../jobs/tasks';
import { freePort } from './support/free-port';
import { startReportingHarness, type ReportingHarness } from './support/reporting';

const actor: Actor = { userId: null, label: 'test:alerts-email', role: 'operator' };
const MIN = 60_000;
const DESK = 'https://desk.example.test';
const FROM = 'Meterdesk Alerts <alerts@meterdesk.test>';

interface Received {
  rcptTo: string[];
  mail: ParsedMail;
}

const smtpError = (responseCode: number, message: string) => Object.assign(new Error(message), { responseCode });

describe('email alert channels', () => {
  let h: ReportingHarness;
  let smtp: SMTPServer;
  let smtpUrl = '';
  const received: Received[] = [];
  /** Recipients the server refuses at RCPT TO (550), and those whose message it defers at DATA (451). */
  const refuseRcpt = new Set<string>(['pager@refuse.test']);
  const deferData = new Set<string>(['queue@defer.test']);
  const channel: Record<string, string> = {};

  beforeAll(async () => {
    h = await startReportingHarness({ api: 'v1' });
    smtp = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS'],
      logger: false,
      onRcptTo(address, _session, callback) {
        if (refuseRcpt.has(address.address)) return callback(smtpError(550, `5.1.1 <${address.address}>: mailbox unavailable`));
        callback();
      },
      onData(stream, session, callback) {
        const rcptTo = session.envelope.rcptTo.map((a) => a.address);
        simpleParser(stream)
          .then((mail) => {
            if (rcptTo.some((a) => deferData.has(a))) return callback(smtpError(451, '4.3.0 try again later'));
            received.push({ rcptTo, mail });
            callback(null, 'queued as test-1');
          })
          .catch(callback);
      },
    });
    await new Promise<void>((r) => smtp.listen(0, '127.0.0.1', r));
    smtpUrl = `smtp://127.0.0.1:${(smtp.server.address() as AddressInfo).port}`;
    h.tasks = createTaskList({ stripeReporting: h.reporting, alerts: { deskUrl: DESK, timeoutMs: 5_000, email: { smtpUrl, from: FROM } } });
  });
  afterAll(async () => {
    await new Promise<void>((r) => (smtp ? smtp.close(r) : r()));
    await h?.close();
  });

  const evaluate = (atMs: number) => evaluateAlerts(h.services.pool, { now: new Date(atMs) });
  const deliveriesOf = (name: string) =>
    h.rows<{ id: string; event: string; state: string; attempts: number; last_status: number | null; last_response: string | null }>(
      `SELECT d.id, d.event, d.state, d.attempts, d.last_status, d.last_response FROM alert_deliveries d JOIN alert_channels c ON c.id = d.channel_id
        WHERE c.name = $1 ORDER BY d.created_at`,
      [name],
    );
  const to = (address: string) => received.filter((r) => r.rcptTo.includes(address));

  it('refuses an email channel without SMTP configured, and a bad address list naming the field; nothing written', async () => {
    expect(await createChannel(h.services.pool, actor, { name: 'mail', kind: 'email', url: 'oncall@example.com' })).toEqual({ ok: false, field: 'kind', message: EMAIL_NEEDS_SMTP });
    expect(EMAIL_NEEDS_SMTP).toBe('Email needs SMTP_URL set on the server.');
    for (const [url, message] of [
      ['not-an-address', '"not-an-address" is not an email address'],
      ['oncall@example.com, nope@', '"nope@" is not an email address'],
      ['', 'must be an email address, or several separated by commas (e.g. oncall@example.com)'],
      [' , ,', 'must be an email address, or several separated by commas (e.g. oncall@example.com)'],
      ['mailto:oncall@example.com?subject=hi', 'must be email addresses only (no ?subject= or other mailto: parts)'],
      ['https://example.test/hook', '"https://example.test/hook" is not an email address'],
      [Array.from({ length: 21 }, (_, i) => `a${i}@example.com`).join(','), 'Use at most 20 addresses'],
    ] as const) {
      expect(await createChannel(h.services.pool, actor, { name: 'mail', kind: 'email', url }, { email: true }), url).toEqual({ ok: false, field: 'url', message });
    }
    // A mailto: URL is not a webhook's URL either.
    expect(await createChannel(h.services.pool, actor, { name: 'hook', kind: 'webhook', url: 'mailto:oncall@example.com' }, { email: true })).toMatchObject({ ok: false, field: 'url' });
    expect(await h.count(`SELECT count(*) FROM alert_channels`)).toBe(0);
    expect(await h.count(`SELECT count(*) FROM audit_log WHERE action LIKE 'alert_%'`)).toBe(0);
  });

  it('a silence firing is emailed once to every address with the subject, the summary and both links; the attempt keeps the 250', async () => {
    const created = await createChannel(h.services.pool, actor, { name: 'mail', kind: 'email', url: ' mailto:oncall@example.com, ops@example.com ' }, { email: true });
    if (!created.ok) throw new Error(created.message);
    expect(created.value.secret).toBeNull();
    channel.mail = created.value.id;
    const [row] = await h.rows<{ url: string; secret: string | null }>(`SELECT url, secret FROM alert_channels WHERE id = $1`, [channel.mail]);
    expect(row).toEqual({ url: 'mailto:oncall@example.com,ops@example.com', secret: null });
    const [audit] = await h.rows<{ after: Record<string, unknown> }>(`SELECT after FROM audit_log WHERE action = 'alert_channel.create'`);
    expect(audit!.after).toMatchObject({ name: 'mail', kind: 'email', to: ['oncall@example.com', 'ops@example.com'] });

    const rule = await createRule(h.services.pool, actor, { name: 'Ledger silent', kind: 'silence', params: { minutes: 30 } });
    if (!rule.ok) throw new Error(rule.message);
    await h.addCustomer('mail-ok', 'cus_mail_ok');
    await h.ingest([{ customer: 'mail-ok', identifier: 'mail-1' }]);
    const pass = await evaluate(Date.now() + 45 * MIN);
    expect(pass.fired.map((f) => f.ruleId)).toEqual([rule.value.id]);
    const [firing] = await h.rows<{ summary: string; values: Record<string, unknown> }>(`SELECT summary, values FROM alert_firings WHERE rule_id = $1`, [rule.value.id]);

    await h.drain({ until: async () => (await deliveriesOf('mail')).every((d) => d.state !== 'pending') });
    expect(received).toHaveLength(1);
    const [{ rcptTo, mail }] = received as [Received];
    expect(rcptTo).toEqual(['oncall@example.com', 'ops@example.com']);
    expect(mail.from?.text).toBe('"Meterdesk Alerts" <alerts@meterdesk.test>');
    expect(mail.subject).toBe('[Meterdesk] FIRING: Ledger silent');
    expect(mail.text).toContain(firing!.summary);
    expect(mail.text).toContain(`quietMinutes: ${firing!.values.quietMinutes}`);
    expect(mail.text).toContain(`Fix it: ${DESK}/telemetry`);
    expect(mail.text).toContain(`Runbook: ${DESK}/alerts#kind-silence`);
    expect(mail.html).toContain(`<a href="${DESK}/telemetry">`);
    expect(mail.html).toContain(`<a href="${DESK}/alerts#kind-silence">`);
    const [delivery] = await deliveriesOf('mail');
    expect(mail.headers.get('meterdesk-delivery')).toBe(delivery!.id);
    expect(delivery).toMatchObject({ event: 'firing', state: 'delivered', attempts: 1, last_status: 250, last_response: '250 queued as test-1' });

    // Resolving is one more email, RESOLVED, with the values of that moment.
    const back = await evaluate(Date.now());
    expect(back.resolved.map((f) => f.ruleId)).toEqual([rule.value.id]);
    await h.drain({ until: async () => (await deliveriesOf('mail')).every((d) => d.state !== 'pending') });
    expect(received).toHaveLength(2);
    expect(received[1]!.mail.subject).toBe('[Meterdesk] RESOLVED: Ledger silent');
    expect(received[1]!.mail.text).toContain('Values when it resolved');
    // Turned off so the channels below get only their own test sends.
    await h.services.pool.query(`UPDATE alert_rules SET enabled = false WHERE id = $1`, [rule.value.id]);
  });

  it('"send test" sends one email to the channel', async () => {
    const before = received.length;
    expect(await sendTestNotification(h.services.pool, actor, { channelId: channel.mail! })).toMatchObject({ ok: true, value: { name: 'mail' } });
    await h.drain({ until: async () => (await deliveriesOf('mail')).every((d) => d.state !== 'pending') });
    expect(received).toHaveLength(before + 1);
    const test = received.at(-1)!;
    expect(test.rcptTo).toEqual(['oncall@example.com', 'ops@example.com']);
    expect(test.mail.subject).toBe('[Meterdesk] Test: channel "mail"');
    expect(test.mail.text).toContain('Test from Meterdesk: channel "mail" works.');
    expect((await deliveriesOf('mail')).at(-1)).toMatchObject({ event: 'test', state: 'delivered', last_status: 250 });
  });

  it('a 550 or 451 answer is recorded and retried; the last attempt marks the channel failing; an accepted test send clears it', async () => {
    for (const [name, url] of [
      ['refused', 'pager@refuse.test'],
      ['deferred', 'queue@defer.test'],
    ] as const) {
      const created = await createChannel(h.services.pool, actor, { name, kind: 'email', url }, { email: true });
      if (!created.ok) throw new Error(created.message);
      channel[name] = created.value.id;
      expect(await sendTestNotification(h.services.pool, actor, { channelId: created.value.id })).toMatchObject({ ok: true });
    }
    const before = received.length;
    await h.runJobsOnce();
    expect(received).toHaveLength(before);
    const [refused] = await deliveriesOf('refused');
    expect(refused).toMatchObject({ state: 'pending', attempts: 1, last_status: 550 });
    expect(refused!.last_response).toMatch(/^550 5\.1\.1 <pager@refuse\.test>: mailbox unavailable/);
    const [deferred] = await deliveriesOf('deferred');
    expect(deferred).toMatchObject({ state: 'pending', attempts: 1, last_status: 451, last_response: '451 4.3.0 try again later' });
    // The job failed with the SMTP answer and is scheduled again (graphile-worker's backoff).
    const jobs = await h.rows<{ attempts: number; last_error: string }>(`SELECT attempts, last_error FROM graphile_worker.jobs WHERE task_identifier = 'alerts__deliver'`);
    expect(jobs.map((j) => j.attempts)).toEqual([1, 1]);
    expect(jobs.filter((j) => j.last_error.includes(`alert delivery ${refused!.id}: SMTP 550 5.1.1 <pager@refuse.test>: mailbox unavailable`))).toHaveLength(1);
    expect(jobs.filter((j) => j.last_error.includes(`alert delivery ${deferred!.id}: SMTP 451 4.3.0 try again later`))).toHaveLength(1);
    expect(await h.count(`SELECT count(*) FROM alert_channels WHERE failing_since IS NOT NULL`)).toBe(0);

    // Retried: the next run of the job is another attempt with the same answer.
    await h.services.pool.query(`UPDATE graphile_worker._private_jobs SET run_at = now() WHERE task_id = (SELECT id FROM graphile_worker._private_tasks WHERE identifier = 'alerts__deliver')`);
    await h.runJobsOnce();
    expect((await deliveriesOf('refused'))[0]).toMatchObject({ state: 'pending', attempts: 2, last_status: 550 });
    expect((await deliveriesOf('deferred'))[0]).toMatchObject({ state: 'pending', attempts: 2, last_status: 451 });

    // The last attempt: failed, and the channel is failing with the server's answer.
    const options = { email: { smtpUrl, from: FROM }, deskUrl: DESK, attempt: 8, maxAttempts: 8 };
    expect(await deliverAlert((fn) => fn(h.services.pool), refused!.id, options)).toMatchObject({ state: 'failed', status: 550 });
    const [failing] = await h.rows<{ failing_since: Date | null; last_error: string }>(`SELECT failing_since, last_error FROM alert_channels WHERE name = 'refused'`);
    expect(failing!.failing_since).not.toBeNull();
    expect(failing!.last_error).toMatch(/^SMTP 550 5\.1\.1 <pager@refuse\.test>: mailbox unavailable/);
    expect((await deliveriesOf('refused'))[0]).toMatchObject({ state: 'failed', attempts: 3 });

    // The mailbox exists again: a test send is accepted and the channel is healthy.
    refuseRcpt.delete('pager@refuse.test');
    expect(await sendTestNotification(h.services.pool, actor, { channelId: channel.refused! })).toMatchObject({ ok: true });
    await h.drain({ until: async () => (await deliveriesOf('refused')).at(-1)!.state === 'delivered' });
    expect(to('pager@refuse.test')).toHaveLength(1);
    expect(to('pager@refuse.test')[0]!.mail.subject).toBe('[Meterdesk] Test: channel "refused"');
    const [healed] = await h.rows<{ failing_since: Date | null }>(`SELECT failing_since FROM alert_channels WHERE name = 'refused'`);
    expect(healed!.failing_since).toBeNull();
  });

  it('an SMTP server that is not there, or SMTP not configured on the worker, is a recorded attempt without a code', async () => {
    const [deferred] = await deliveriesOf('deferred');
    const closedPort = await freePort();
    const unreachable = await deliverAlert((fn) => fn(h.services.pool), deferred!.id, { email: { smtpUrl: `smtp://127.0.0.1:${closedPort}`, from: FROM }, attempt: 3, maxAttempts: 8 });
    expect(unreachable).toMatchObject({ state: 'retry', status: null });
    expect(unreachable.response).toContain('ECONNREFUSED');
    const unconfigured = await deliverAlert((fn) => fn(h.services.pool), deferred!.id, { attempt: 4, maxAttempts: 8 });
    expect(unconfigured).toMatchObject({ state: 'retry', status: null, response: 'SMTP_URL is not set on the worker: email channels cannot be sent.' });
    expect((await deliveriesOf('deferred'))[0]).toMatchObject({ state: 'pending', attempts: 4, last_status: null, last_response: unconfigured.response });
  });
});
