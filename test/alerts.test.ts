// Alert rules against the real stack (ADR 036): events ingested and reported to the Stripe simulator by the real
// worker tasks, each rule kind driven from that data to a firing and a resolution by evaluateAlerts, and each
// opening and resolution delivered by the real alerts__deliver task to a local receiver over HTTP, where the
// webhook's signature is checked with the secret shown once. A channel that answers 500 is retried, shows its answer
// and ends failing, while the other channels are delivered. Bad rules and channels are refused and write nothing.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChannel, sendTestNotification, signAlertBody, verifyAlertSignature } from '../app/billing/alerts/channels';
import { deliverAlert } from '../app/billing/alerts/deliveries';
import { evaluateAlerts } from '../app/billing/alerts/evaluate';
import { createRule, setRuleEnabled } from '../app/billing/alerts/rules';
import type { Actor } from '../app/billing/audit';
import { startReportingHarness, type ReportingHarness } from './support/reporting';

const actor: Actor = { userId: null, label: 'test:alerts', role: 'operator' };
const MIN = 60_000;

interface Received {
  path: string;
  body: string;
  headers: http.IncomingHttpHeaders;
}

describe('alerts', () => {
  let h: ReportingHarness;
  let receiver: http.Server;
  let base: string;
  const received: Received[] = [];
  let secret = '';
  const rule: Record<string, string> = {};

  beforeAll(async () => {
    h = await startReportingHarness({ api: 'v1' });
    receiver = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        received.push({ path: req.url ?? '', body, headers: req.headers });
        if (req.url === '/fail') res.writeHead(500).end('receiver is down');
        else res.writeHead(200).end('ok');
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((r) => receiver?.close(r));
    await h?.close();
  });

  const evaluate = (atMs = Date.now()) => evaluateAlerts(h.services.pool, { now: new Date(atMs) });
  const firings = (ruleId: string) =>
    h.rows<{ id: string; values: Record<string, unknown>; resolved_at: Date | null; resolved_values: Record<string, unknown> | null }>(
      `SELECT id, values, resolved_at, resolved_values FROM alert_firings WHERE rule_id = $1 ORDER BY fired_at`,
      [ruleId],
    );

  it('refuses impossible numbers field by field and writes nothing', async () => {
    const cases: Array<[Parameters<typeof createRule>[2], string]> = [
      [{ name: 'lag', kind: 'reporting_lag', params: { minutes: 0 } }, 'minutes'],
      [{ name: 'lag', kind: 'reporting_lag', params: { minutes: 'soon' } }, 'minutes'],
      [{ name: 'lag', kind: 'reporting_lag', params: { minutes: 1.5 } }, 'minutes'],
      [{ name: 'x', kind: 'telepathy', params: {} }, 'kind'],
      [{ name: '', kind: 'silence', params: { minutes: 5 } }, 'name'],
      [{ name: 'rate', kind: 'failure_rate', params: { minutes: 10, threshold: -1 } }, 'threshold'],
      [{ name: 'rate', kind: 'failure_rate', params: { minutes: 10, threshold: 1, code: 'DROP TABLE' } }, 'code'],
      [{ name: 'ops', kind: 'ops_event', params: { type: 'nonsense', minutes: 10, threshold: 0 } }, 'type'],
      [{ name: 'unpaid', kind: 'windows_unpaid', params: { hours: 100_000 } }, 'hours'],
    ];
    for (const [input, field] of cases) {
      const outcome = await createRule(h.services.pool, actor, input);
      expect(outcome, JSON.stringify(input)).toMatchObject({ ok: false, field });
    }
    for (const [input, field] of [
      [{ name: 'c', kind: 'webhook', url: 'ftp://example.test/hook' }, 'url'],
      [{ name: 'c', kind: 'webhook', url: 'not a url' }, 'url'],
      [{ name: 'c', kind: 'pager', url: `${base}/ok` }, 'kind'],
    ] as const) {
      expect(await createChannel(h.services.pool, actor, input)).toMatchObject({ ok: false, field });
    }
    expect(await h.count(`SELECT count(*) FROM alert_rules`)).toBe(0);
    expect(await h.count(`SELECT count(*) FROM alert_channels`)).toBe(0);
    expect(await h.count(`SELECT count(*) FROM audit_log WHERE action LIKE 'alert_%'`)).toBe(0);
  });

  it('creates rules and channels once, audited; the webhook secret is returned once and listed by prefix only', async () => {
    for (const [name, kind, params] of [
      ['Stripe lag', 'reporting_lag', { minutes: 15 }],
      ['Ledger silent', 'silence', { minutes: 30 }],
      ['Failures', 'failure_rate', { minutes: 60, threshold: 2 }],
      ['Drift or failures', 'ops_event', { type: 'meter_reporting_failed', minutes: 60, threshold: 0 }],
    ] as const) {
      const outcome = await createRule(h.services.pool, actor, { name, kind, params });
      if (!outcome.ok) throw new Error(outcome.message);
      rule[kind] = outcome.value.id;
    }
    expect(await createRule(h.services.pool, actor, { name: 'Stripe lag', kind: 'silence', params: { minutes: 5 } })).toMatchObject({ ok: false, field: 'name' });

    const webhook = await createChannel(h.services.pool, actor, { name: 'on-call', kind: 'webhook', url: `${base}/ok` });
    if (!webhook.ok) throw new Error(webhook.message);
    secret = webhook.value.secret!;
    expect(secret).toMatch(/^whsec_[A-Za-z0-9_-]{32}$/);
    const slack = await createChannel(h.services.pool, actor, { name: 'slack', kind: 'slack', url: `${base}/slack` });
    expect(slack).toMatchObject({ ok: true, value: { secret: null } });
    expect(await createChannel(h.services.pool, actor, { name: 'broken', kind: 'webhook', url: `${base}/fail` })).toMatchObject({ ok: true });
    const [row] = await h.rows<{ secret_prefix: string }>(`SELECT secret_prefix FROM alert_channels WHERE name = 'on-call'`);
    expect(secret.startsWith(row!.secret_prefix)).toBe(true);
    const audit = await h.rows<{ after: Record<string, unknown> }>(`SELECT after FROM audit_log WHERE action = 'alert_channel.create'`);
    expect(audit).toHaveLength(3);
    expect(JSON.stringify(audit)).not.toContain(secret);
    expect(JSON.stringify(audit)).not.toContain('/slack');
  });

  it('reporting lag fires once from a pending event, is delivered signed, and resolves when the event is reported', async () => {
    await h.addCustomer('alert-ok', 'cus_alert_ok');
    const [first] = await h.ingest([{ customer: 'alert-ok', identifier: 'alert-1' }, { customer: 'alert-ok', identifier: 'alert-2' }]);
    expect(await h.count(`SELECT count(*) FROM meter_events WHERE status = 'pending'`)).toBe(2);

    const at = Date.now() + 20 * MIN;
    const pass = await evaluate(at);
    expect(pass.fired.map((f) => f.ruleId)).toEqual([rule.reporting_lag]);
    expect(pass.deliveries).toBe(3);
    const [firing] = await firings(rule.reporting_lag!);
    expect(firing!.values).toMatchObject({ minutes: 15, oldestPendingEventId: first });
    expect(Number(firing!.values.ageMinutes)).toBeGreaterThan(15);
    // Staying true is not a second firing, and not a second notification.
    const again = await evaluate(at + MIN);
    expect(again).toMatchObject({ fired: [], resolved: [], stillFiring: 1, deliveries: 0 });
    expect(await firings(rule.reporting_lag!)).toHaveLength(1);

    // The worker reports the events and runs the deliveries (the failing channel's job is retried later).
    await h.drain({ until: async () => (await h.count(`SELECT count(*) FROM alert_deliveries WHERE state = 'delivered'`)) === 2 });
    const hook = received.find((r) => r.path === '/ok')!;
    const body = JSON.parse(hook.body);
    expect(body).toMatchObject({ type: 'alert.firing', alert: { firingId: firing!.id, rule: { name: 'Stripe lag', kind: 'reporting_lag' }, state: 'firing' } });
    expect(body.links.desk).toBe('/events?status=pending');
    const signature = String(hook.headers['meterdesk-signature']);
    expect(verifyAlertSignature(secret, hook.body, signature)).toBe(true);
    expect(verifyAlertSignature(secret, hook.body.replace('Stripe lag', 'Stripe lug'), signature)).toBe(false);
    expect(verifyAlertSignature('whsec_wrong', hook.body, signature)).toBe(false);
    const t = Number(/t=(\d+)/.exec(signature)![1]);
    expect(verifyAlertSignature(secret, hook.body, signature, { now: t + 301 })).toBe(false);
    expect(signAlertBody(secret, hook.body, t)).toBe(signature);
    const slack = JSON.parse(received.find((r) => r.path === '/slack')!.body);
    expect(slack.text).toContain('Firing: Stripe lag');
    expect(received.find((r) => r.path === '/slack')!.headers['meterdesk-signature']).toBeUndefined();

    // The failing channel: its first attempt is recorded with the answer, and the job is left to retry.
    const [broken] = await h.rows<{ state: string; attempts: number; last_status: number; last_response: string }>(
      `SELECT d.state, d.attempts, d.last_status, d.last_response FROM alert_deliveries d JOIN alert_channels c ON c.id = d.channel_id WHERE c.name = 'broken'`,
    );
    expect(broken).toMatchObject({ state: 'pending', attempts: 1, last_status: 500, last_response: 'receiver is down' });
    expect(await h.count(`SELECT count(*) FROM graphile_worker.jobs WHERE task_identifier = 'alerts__deliver' AND attempts = 1 AND last_error LIKE '%HTTP 500%'`)).toBe(1);

    expect(await h.count(`SELECT count(*) FROM meter_events WHERE status = 'pending'`)).toBe(0);
    const resolved = await evaluate(Date.now());
    expect(resolved.resolved.map((f) => f.ruleId)).toEqual([rule.reporting_lag]);
    const [after] = await firings(rule.reporting_lag!);
    expect(after!.resolved_at).not.toBeNull();
    expect(after!.resolved_values).toMatchObject({ oldestPendingEventId: null });
    await h.drain({ until: async () => received.filter((r) => r.path === '/ok').length === 2 });
    expect(JSON.parse(received.filter((r) => r.path === '/ok')[1]!.body)).toMatchObject({ type: 'alert.resolved', alert: { state: 'resolved' } });
  });

  it('a delivery that uses up its attempts fails and marks its channel failing with the answer; a success clears it', async () => {
    const [pending] = await h.rows<{ id: string }>(
      `SELECT d.id FROM alert_deliveries d JOIN alert_channels c ON c.id = d.channel_id WHERE c.name = 'broken' AND d.state = 'pending' ORDER BY d.created_at LIMIT 1`,
    );
    const outcome = await deliverAlert((fn) => fn(h.services.pool), pending!.id, { attempt: 8, maxAttempts: 8 });
    expect(outcome).toMatchObject({ state: 'failed', status: 500 });
    const [channel] = await h.rows<{ failing_since: Date | null; last_error: string }>(`SELECT failing_since, last_error FROM alert_channels WHERE name = 'broken'`);
    expect(channel!.failing_since).not.toBeNull();
    expect(channel!.last_error).toBe('HTTP 500: receiver is down');
    // Sending it again changes nothing: a delivery is sent until it is delivered or failed, never after.
    expect(await deliverAlert((fn) => fn(h.services.pool), pending!.id, { attempt: 1, maxAttempts: 8 })).toMatchObject({ state: 'skipped' });

    await h.services.pool.query(`UPDATE alert_channels SET url = $1 WHERE name = 'broken'`, [`${base}/ok`]);
    const [broken] = await h.rows<{ id: string }>(`SELECT id FROM alert_channels WHERE name = 'broken'`);
    expect(await sendTestNotification(h.services.pool, actor, { channelId: broken!.id })).toMatchObject({ ok: true });
    await h.drain({ until: async () => (await h.count(`SELECT count(*) FROM alert_deliveries WHERE event = 'test' AND state = 'delivered'`)) === 1 });
    const [healed] = await h.rows<{ failing_since: Date | null }>(`SELECT failing_since FROM alert_channels WHERE name = 'broken'`);
    expect(healed!.failing_since).toBeNull();
    expect(JSON.parse(received.at(-1)!.body)).toMatchObject({ type: 'alert.test', alert: null });
  });

  it('silence fires when no event arrived for N minutes and resolves when usage is recent', async () => {
    const quiet = await evaluate(Date.now() + 45 * MIN);
    expect(quiet.fired.map((f) => f.ruleId)).toContain(rule.silence);
    const [firing] = await firings(rule.silence!);
    expect(Number(firing!.values.quietMinutes)).toBeGreaterThan(30);
    const back = await evaluate(Date.now());
    expect(back.resolved.map((f) => f.ruleId)).toContain(rule.silence);
  });

  it('failure rate and ops events fire from real rejections, by error code too, and resolve once they age out', async () => {
    await h.addCustomer('alert-ghost', 'cus_alert_ghost', { inSimulator: false });
    await h.ingest([1, 2, 3].map((i) => ({ customer: 'alert-ghost', identifier: `alert-ghost-${i}` })));
    await h.drain();
    expect(await h.count(`SELECT count(*) FROM meter_events WHERE status = 'failed'`)).toBe(3);
    const [{ code } = { code: '' }] = await h.rows<{ code: string }>(`SELECT metadata->>'code' AS code FROM ops_events WHERE type = 'meter_reporting_failed' LIMIT 1`);
    expect(code).not.toBe('');
    const byCode = await createRule(h.services.pool, actor, { name: 'Failures by code', kind: 'failure_rate', params: { minutes: 60, threshold: 2, code } });
    const otherCode = await createRule(h.services.pool, actor, { name: 'Other code', kind: 'failure_rate', params: { minutes: 60, threshold: 0, code: 'rate_limit' } });
    if (!byCode.ok || !otherCode.ok) throw new Error('rules');

    const now = Date.now();
    const pass = await evaluate(now);
    const fired = pass.fired.map((f) => f.ruleId);
    expect(fired).toEqual(expect.arrayContaining([rule.failure_rate, rule.ops_event, byCode.value.id]));
    expect(fired).not.toContain(otherCode.value.id);
    const [rate] = await firings(rule.failure_rate!);
    expect(rate!.values).toMatchObject({ source: 'events', failed: 3, threshold: 2, minutes: 60 });

    const later = await evaluate(now + 61 * MIN);
    expect(later.resolved.map((f) => f.ruleId)).toEqual(expect.arrayContaining([rule.failure_rate, rule.ops_event, byCode.value.id]));
  });

  it('turning a rule off resolves its open firing; two passes at once store one firing', async () => {
    await evaluate(Date.now()); // usage is recent: nothing of silence left open from the pass an hour ahead
    expect(await h.count(`SELECT count(*) FROM alert_firings WHERE rule_id = $1 AND resolved_at IS NULL`, [rule.silence])).toBe(0);
    const at = Date.now() + 45 * MIN;
    const [a, b] = await Promise.all([evaluate(at), evaluate(at)]);
    expect([...a.fired, ...b.fired].filter((f) => f.ruleId === rule.silence)).toHaveLength(1);
    expect(await h.count(`SELECT count(*) FROM alert_firings WHERE rule_id = $1 AND resolved_at IS NULL`, [rule.silence])).toBe(1);
    expect(await setRuleEnabled(h.services.pool, actor, { ruleId: rule.silence!, enabled: false })).toMatchObject({ ok: true });
    const off = await evaluate(at);
    expect(off.resolved.map((f) => f.ruleId)).toContain(rule.silence);
    expect(off.fired.map((f) => f.ruleId)).not.toContain(rule.silence);
    expect(await setRuleEnabled(h.services.pool, actor, { ruleId: rule.silence!, enabled: false })).toMatchObject({ ok: false });
  });
});
