// Alerts in the fault campaign (issue 18, ADR 036): each seed creates alert rules its faults really trip and two
// signed webhook channels, each a local receiver in this process — one that answers at random (500, 429, a hang past
// the delivery timeout, a closed socket, or a 2xx after checking the HMAC signature), driven by the seed's own stream,
// and one that always answers 2xx, to show that a failing channel blocks no other. Evaluation runs all along the seed,
// concurrently with the faults, from more than one process at once:
// - the worker processes run the production `alerts__evaluate` task, from jobs this campaign queues (one to three at a
//   time, no job key, so several passes start together on different workers). The crontab's own entry fires once a
//   minute, which is about once a seed, and the campaign worker (test/support/campaign-worker.ts) runs no crontab: it
//   enqueues its recurring tasks itself, and alerts__evaluate is not among them;
// - this process runs `evaluateAlerts` passes of its own on its own connections, sometimes two at once, at moments
//   the seed's stream picks.
// The design says passes serialize (a transaction-scoped advisory lock); the invariants check what that must give
// (chaos/invariants.ts, checkAlerts). An operator also turns a rule off and on again now and then (setRuleEnabled), so
// firings resolve and open again during the faults. Deliveries are sent by the workers' `alerts__deliver` jobs.
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import pg from 'pg';
import { createChannel, sendTestNotification, SIGNATURE_HEADER, verifyAlertSignature } from '../app/billing/alerts/channels';
import { DEFAULT_DELIVERY_TIMEOUT_MS } from '../app/billing/alerts/deliveries';
import { evaluateAlerts } from '../app/billing/alerts/evaluate';
import { createRule, setRuleEnabled, type RuleInput } from '../app/billing/alerts/rules';
import type { Actor } from '../app/billing/audit';
import { addJob, jobsByPayloadField } from '../app/db/graphile-jobs';
import { checkOpenFirings, isStuck, type AlertChannelRecords, type AlertReceipt, type AlertRecords } from './invariants';
import { sleep } from './plan';

/** How the random receiver answers a notification (its `kind` in the seed line). */
export const RANDOM_ANSWERS = ['accept', 'server_error', 'rate_limit', 'hang', 'close'] as const;
type RandomAnswer = (typeof RANDOM_ANSWERS)[number];
/** Weights of RANDOM_ANSWERS: about a third of the notifications are accepted. */
const ANSWER_WEIGHTS: Record<RandomAnswer, number> = { accept: 0.35, server_error: 0.2, rate_limit: 0.15, hang: 0.12, close: 0.18 };
/** A hang holds the request past the workers' delivery timeout (they give up first), then drops the socket. */
const HANG_MS = DEFAULT_DELIVERY_TIMEOUT_MS + 2_000;

const actor: Actor = { userId: null, label: 'chaos:operator', role: 'operator' };

/**
 * A webhook receiver on loopback. Each notification is recorded (delivery id, answer, status, whether the signature
 * verifies with the channel's secret, the ids its body carries) before it is answered, so that a delivery the ledger
 * records as delivered is always in the record already. Every answer closes its connection (no keep-alive socket
 * the receiver could close under a worker's next request: every attempt a worker records reached the receiver).
 */
export class AlertReceiver {
  private readonly received: AlertReceipt[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly hangs = new Set<NodeJS.Timeout>();
  private secret = '';
  /** Requests being answered now (a hang is one until the worker gives up). */
  open = 0;
  url = '';

  private constructor(
    private readonly server: http.Server,
    /** The seed's stream for the random receiver; null: always 2xx. */
    private readonly random: (() => number) | null,
  ) {}

  static async start(random: (() => number) | null): Promise<AlertReceiver> {
    let self!: AlertReceiver;
    const server = http.createServer((req, res) => self.handle(req, res));
    self = new AlertReceiver(server, random);
    server.on('connection', (socket) => {
      self.sockets.add(socket);
      socket.once('close', () => self.sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    self.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/alerts`;
    return self;
  }

  setSecret(secret: string): void {
    this.secret = secret;
  }

  /** What it received so far, in arrival order (a copy). */
  receipts(): AlertReceipt[] {
    return this.received.map((r) => ({ ...r }));
  }

  private pick(): RandomAnswer {
    if (!this.random) return 'accept';
    let r = this.random();
    for (const kind of RANDOM_ANSWERS) {
      r -= ANSWER_WEIGHTS[kind];
      if (r < 0) return kind;
    }
    return 'accept';
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.open++;
    let ended = false;
    const done = () => {
      if (!ended) this.open--;
      ended = true;
    };
    res.once('close', done);
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      const header = req.headers[SIGNATURE_HEADER.toLowerCase()];
      const signatureValid = verifyAlertSignature(this.secret, body, Array.isArray(header) ? header[0] : header);
      let parsed: AlertReceipt['body'] = null;
      try {
        const json = JSON.parse(body) as { id?: unknown; type?: unknown; channel?: { id?: unknown }; alert?: { firingId?: unknown } | null };
        parsed = { id: json.id, type: json.type, channelId: json.channel?.id, firingId: json.alert?.firingId ?? null };
      } catch {
        parsed = null;
      }
      const id = req.headers['meterdesk-delivery'];
      const deliveryId = typeof id === 'string' ? id : null;
      // A receiver refuses what it cannot verify; the answer is drawn first, so the stream does not depend on it.
      const drawn = this.pick();
      const answer = drawn === 'accept' && !signatureValid ? 'bad_signature' : drawn;
      const status =
        answer === 'accept' ? (this.random ? ([200, 202, 204] as const)[Math.floor(this.random() * 3)]! : 200) : answer === 'server_error' ? 500 : answer === 'rate_limit' ? 429 : answer === 'bad_signature' ? 401 : null;
      // Recorded before the answer leaves: whatever the worker records after it, the receipt is already here.
      this.received.push({ deliveryId, answer, status, signatureValid, body: parsed, at: Date.now() });
      switch (answer) {
        case 'hang': {
          const timer = setTimeout(() => {
            this.hangs.delete(timer);
            req.socket.destroy();
          }, HANG_MS);
          this.hangs.add(timer);
          res.once('close', () => {
            clearTimeout(timer);
            this.hangs.delete(timer);
          });
          return;
        }
        case 'close':
          req.socket.destroy();
          return;
        default:
          res.writeHead(status!, { connection: 'close', 'content-type': 'text/plain', ...(status === 429 ? { 'retry-after': '1' } : {}) });
          res.end(status === 204 ? undefined : answer === 'accept' ? 'ok' : `chaos receiver: ${answer}`);
      }
    });
  }

  async close(): Promise<void> {
    for (const t of this.hangs) clearTimeout(t);
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export interface AlertStats {
  /** Passes this process ran (ok, failed: its connection cut by a fault), and worker passes queued and run. */
  passes: { ok: number; failed: number };
  workerPasses: { queued: number; ran: number };
  /** Rules turned off or on again by the operator. */
  toggles: number;
  /** Firings at the end of the seed: opened, resolved, still open. */
  firings: { opened: number; resolved: number; open: number; byKind: Record<string, number> };
  /** Deliveries by channel and state at the end. */
  deliveries: Record<'random' | 'healthy', Record<string, number>>;
  /** Random channel deliveries answered 2xx whose record was lost (the worker died or the database went away). */
  unrecorded: number;
  /** Deliveries whose job is locked by a worker that died (graphile-worker keeps such a lock for 4 hours). */
  stuck: number;
  /** The receivers' answers by kind. */
  answers: Record<'random' | 'healthy', Record<string, number>>;
  /** Checks of "one open firing per rule" made during the seed. */
  monitorChecks: number;
}

export interface CampaignAlertsOptions {
  seed: number;
  connectionString: string;
  /** The seed's alert stream: the rules' numbers, the evaluation schedule, the toggles. */
  random: () => number;
  /** The random receiver's answers (a stream of its own, so the schedule's draws do not move it). */
  answerRandom: () => number;
  log: (line: string) => void;
  violations: string[];
}

export class CampaignAlerts {
  readonly stats: AlertStats = {
    passes: { ok: 0, failed: 0 },
    workerPasses: { queued: 0, ran: 0 },
    toggles: 0,
    firings: { opened: 0, resolved: 0, open: 0, byKind: {} },
    deliveries: { random: {}, healthy: {} },
    unrecorded: 0,
    stuck: 0,
    answers: { random: {}, healthy: {} },
    monitorChecks: 0,
  };
  private readonly pool: pg.Pool;
  private random!: AlertReceiver;
  private healthy!: AlertReceiver;
  private channelIds = { random: '', healthy: '' };
  private ruleIds: string[] = [];
  private running = false;
  private loop: Promise<void> = Promise.resolve();
  private readonly inFlight = new Set<Promise<void>>();
  private workerPassIds: string[] = [];
  private readonly flagged = new Set<string>();

  constructor(private readonly o: CampaignAlertsOptions) {
    // Its own connections (as the crontab's task has its own), named so a kill aimed at settling workers skips them.
    this.pool = new pg.Pool({ connectionString: o.connectionString, max: 4, application_name: 'chaos-alerts' });
    this.pool.on('error', () => undefined);
    this.pool.on('connect', (client) => client.on('error', () => undefined));
  }

  /** The receivers, the two channels (domain functions, as the desk creates them), the rules, a test notification each. */
  async setup(): Promise<void> {
    const r = this.o.random;
    this.random = await AlertReceiver.start(this.o.answerRandom);
    this.healthy = await AlertReceiver.start(null);
    for (const [role, receiver] of [
      ['random', this.random],
      ['healthy', this.healthy],
    ] as const) {
      const made = await createChannel(this.pool, actor, { name: `chaos-${role}`, kind: 'webhook', url: receiver.url });
      if (!made.ok) throw new Error(`alert channel ${role}: ${made.message}`);
      receiver.setSecret(made.value.secret!);
      this.channelIds[role] = made.value.id;
    }
    // Rules the seed's faults trip: the unknown customer's events fail (failure_rate, ops_event), rate limits and
    // failed sales come from the processor faults, the stale subscriber's window is unpaid an hour after its period
    // ended until settled, the first pass runs before any event (silence), and pending events may age past a minute.
    const rules: RuleInput[] = [
      { name: 'chaos: Stripe failures in the last hour', kind: 'failure_rate', params: { minutes: 60, threshold: 0 } },
      { name: 'chaos: Stripe failures in a minute', kind: 'failure_rate', params: { minutes: 1, threshold: 2 + Math.floor(r() * 20) } },
      // v1 refuses the unknown customer's events at once (resource_missing); the processor fault's rejections after
      // acceptance carry a code of their own.
      { name: 'chaos: unknown customer (v1)', kind: 'failure_rate', params: { minutes: 60, threshold: 0, code: 'resource_missing' } },
      { name: 'chaos: rejected after acceptance', kind: 'failure_rate', params: { minutes: 60, threshold: 0, code: 'chaos_rejected_after_accept' } },
      { name: 'chaos: silence', kind: 'silence', params: { minutes: 1 } },
      { name: 'chaos: reporting lag', kind: 'reporting_lag', params: { minutes: 1 } },
      { name: 'chaos: windows unpaid', kind: 'windows_unpaid', params: { hours: 1 } },
      { name: 'chaos: rate limited', kind: 'ops_event', params: { type: 'processor_rate_limited', minutes: 1, threshold: Math.floor(r() * 3) } },
      { name: 'chaos: sales failing', kind: 'ops_event', params: { type: 'metered_sale_failed', minutes: 1, threshold: 0 } },
      { name: 'chaos: stale renewal', kind: 'ops_event', params: { type: 'metered_renewal_stale_repaired', minutes: 60, threshold: 0 } },
      { name: 'chaos: late usage', kind: 'ops_event', params: { type: 'metered_late_usage', minutes: 1, threshold: Math.floor(r() * 5) } },
    ];
    for (const rule of rules) {
      const made = await createRule(this.pool, actor, rule);
      if (!made.ok) throw new Error(`alert rule ${String(rule.name)}: ${made.message}`);
      this.ruleIds.push(made.value.id);
    }
    for (const id of Object.values(this.channelIds)) {
      const sent = await sendTestNotification(this.pool, actor, { channelId: id });
      if (!sent.ok) throw new Error(`test notification: ${sent.message}`);
    }
    this.o.log(`  seed ${this.o.seed}: alerts: ${rules.length} rules, channels random (${this.random.url}) and healthy (${this.healthy.url})`);
  }

  /** One pass of this process's own, on a connection of its own; a pass cut by a fault rolls back and is counted. */
  private async pass(): Promise<void> {
    let client: pg.PoolClient | undefined;
    let broken: Error | undefined;
    try {
      client = await this.pool.connect();
      await evaluateAlerts(client);
      this.stats.passes.ok++;
    } catch (error) {
      broken = error as Error;
      this.stats.passes.failed++;
    } finally {
      client?.release(broken);
    }
  }

  private track(p: Promise<void>): void {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  private async queueWorkerPasses(n: number): Promise<void> {
    for (let k = 0; k < n; k++) {
      // No job key: passes queued together start together on different workers. The task ignores the payload; the
      // campaign's id in it finds the job again at the end (jobs that ran are gone).
      const id = `${this.o.seed}-${this.stats.workerPasses.queued + k}`;
      try {
        await addJob(this.pool, 'alerts__evaluate', { chaosPass: id }, { maxAttempts: 1 });
        this.workerPassIds.push(id);
      } catch {
        // the database is restarting: that pass is not queued
      }
    }
    this.stats.workerPasses.queued = this.workerPassIds.length;
  }

  /** An operator turns a rule off (its firing resolves at the next pass) or back on. */
  private async toggle(ruleId: string): Promise<void> {
    try {
      const { rows } = await this.pool.query<{ enabled: boolean }>(`SELECT enabled FROM alert_rules WHERE id = $1`, [ruleId]);
      if (!rows[0]) return;
      const done = await setRuleEnabled(this.pool, actor, { ruleId, enabled: !rows[0].enabled, reason: 'chaos campaign' });
      if (done.ok) this.stats.toggles++;
    } catch {
      // cut by a fault; the next toggle reads the state again
    }
  }

  /** "At most one open firing per rule", checked while the faults run; each offence reported once. */
  private async monitor(): Promise<void> {
    try {
      const found = await checkOpenFirings(this.pool);
      this.stats.monitorChecks++;
      for (const v of found) {
        if (this.flagged.has(v)) continue;
        this.flagged.add(v);
        this.o.violations.push(`during the seed: ${v}`);
      }
    } catch {
      // the database is restarting
    }
  }

  /** The first pass before any event is sent (the silence rule fires), then the schedule until stop(). */
  async start(): Promise<void> {
    await this.pass();
    await this.queueWorkerPasses(1);
    this.running = true;
    const r = this.o.random;
    this.loop = (async () => {
      while (this.running) {
        await sleep(250 + Math.floor(r() * 900));
        if (!this.running) break;
        const workers = Math.floor(r() * 3);
        const own = r() < 0.6 ? (r() < 0.3 ? 2 : 1) : 0;
        const toggle = r() < 0.05 ? this.ruleIds[Math.floor(r() * this.ruleIds.length)]! : null;
        void this.queueWorkerPasses(workers);
        for (let k = 0; k < own; k++) this.track(this.pass());
        if (toggle) this.track(this.toggle(toggle));
        this.track(this.monitor());
      }
    })();
  }

  /**
   * The end of a seed (after the ledger has settled): evaluation stops; a last pass of its own; the worker passes
   * already queued are left to run; then every delivery to the healthy channel must arrive (retries of a record lost
   * to a fault back off 2.7, 7.4, 20, 55 s: within the bound), while the random channel's deliveries may stay pending
   * in their retries: its invariants are about consistency, not completion. A request still open at the random
   * receiver (a hang) is given time to end.
   */
  async drain(): Promise<void> {
    this.running = false;
    await this.loop;
    await Promise.all([...this.inFlight]);
    for (let attempt = 0; attempt < 10; attempt++) {
      const before = this.stats.passes.ok;
      await this.pass();
      if (this.stats.passes.ok > before) break;
      await sleep(500);
    }
    const passesDeadline = Date.now() + 30_000;
    for (;;) {
      const jobs = await jobsByPayloadField(this.pool, 'chaosPass', this.workerPassIds);
      const waiting = jobs.filter((j) => (j.lockedAt === null && j.attempts < j.maxAttempts) || (j.lockedAt !== null && !isStuck(j)));
      if (waiting.length === 0) break;
      if (Date.now() > passesDeadline) {
        this.o.violations.push(`${waiting.length} alerts__evaluate jobs still waiting or running 30 s after evaluation stopped`);
        break;
      }
      await sleep(250);
    }
    const deliveredDeadline = Date.now() + 120_000;
    for (;;) {
      const { rows } = await this.pool.query<{ id: string }>(`SELECT id::text FROM alert_deliveries WHERE channel_id = $1 AND state <> 'delivered'`, [this.channelIds.healthy]);
      if (rows.length === 0) break;
      // Waiting helps only a delivery whose job will still run; one locked by a dead worker is the checker's to report.
      const jobs = await jobsByPayloadField(this.pool, 'deliveryId', rows.map((r) => r.id));
      const live = jobs.filter((j) => j.attempts < j.maxAttempts || j.lockedAt !== null).filter((j) => !isStuck(j));
      if (live.length === 0 || Date.now() > deliveredDeadline) break;
      await sleep(250);
    }
    const openDeadline = Date.now() + HANG_MS + 2_000;
    while (this.random.open > 0 && Date.now() < openDeadline) await sleep(100);
  }

  /** What the checker compares with the ledger (receipts are read by the checker after the ledger). */
  records(): AlertRecords {
    const channel = (role: 'random' | 'healthy'): AlertChannelRecords => {
      const receiver = role === 'random' ? this.random : this.healthy;
      return { id: this.channelIds[role], name: `chaos-${role}`, alwaysAccepts: role === 'healthy', received: () => receiver.receipts() };
    };
    return { channels: [channel('random'), channel('healthy')] };
  }

  /** The seed line's figures, from the ledger and the receivers at the end. */
  async summarize(): Promise<AlertStats> {
    const s = this.stats;
    const remaining = await jobsByPayloadField(this.pool, 'chaosPass', this.workerPassIds);
    s.workerPasses.ran = this.workerPassIds.length - remaining.length;
    const { rows: firings } = await this.pool.query<{ kind: string; opened: number; resolved: number }>(
      `SELECT r.kind, count(*)::int AS opened, count(f.resolved_at)::int AS resolved FROM alert_firings f JOIN alert_rules r ON r.id = f.rule_id GROUP BY r.kind`,
    );
    s.firings = { opened: 0, resolved: 0, open: 0, byKind: {} };
    for (const f of firings) {
      s.firings.opened += f.opened;
      s.firings.resolved += f.resolved;
      s.firings.byKind[f.kind] = f.opened;
    }
    s.firings.open = s.firings.opened - s.firings.resolved;
    const { rows: deliveries } = await this.pool.query<{ id: string; channel_id: string; state: string; attempts: number }>(
      `SELECT id::text, channel_id::text, state, attempts FROM alert_deliveries`,
    );
    s.deliveries = { random: {}, healthy: {} };
    const role = (channelId: string) => (channelId === this.channelIds.random ? 'random' : 'healthy');
    for (const d of deliveries) s.deliveries[role(d.channel_id)][d.state] = (s.deliveries[role(d.channel_id)][d.state] ?? 0) + 1;
    const receipts = { random: this.random.receipts(), healthy: this.healthy.receipts() };
    s.answers = { random: {}, healthy: {} };
    for (const k of ['random', 'healthy'] as const) for (const r of receipts[k]) s.answers[k][r.answer] = (s.answers[k][r.answer] ?? 0) + 1;
    const accepted = new Set(receipts.random.filter((r) => r.status !== null && r.status < 300).map((r) => r.deliveryId));
    s.unrecorded = deliveries.filter((d) => d.channel_id === this.channelIds.random && d.state === 'pending' && accepted.has(d.id)).length;
    const pending = deliveries.filter((d) => d.state === 'pending').map((d) => d.id);
    const jobs = await jobsByPayloadField(this.pool, 'deliveryId', pending);
    s.stuck = jobs.filter((j) => isStuck(j)).length;
    return s;
  }

  async close(): Promise<void> {
    this.running = false;
    await this.loop.catch(() => undefined);
    await Promise.all([...this.inFlight]).catch(() => undefined);
    await Promise.all([this.random?.close(), this.healthy?.close()]).catch(() => undefined);
    await this.pool.end().catch(() => undefined);
  }
}
