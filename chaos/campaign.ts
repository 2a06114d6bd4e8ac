// The fault campaign: each seed is one reproducible scenario against real processes — two web processes (CLI `web`)
// behind a round-robin proxy (chaos/proxy.ts), three worker processes (the production task list with shortened
// timings, test/support/campaign-worker.ts), the
// Stripe and the Braintree simulators each in its own process (CLI `simulator stripe|braintree`), and a PostgreSQL
// cluster of its own — driven over HTTP while faults are injected at times the seed chooses. At the end the system is
// left to settle and the invariants of PRODUCT.md are checked against the ledger and the simulators' own records
// (chaos/invariants.ts).
//
// Two flows run at once. Stripe: customers and usage, reported v1 or v2, error reports by webhook. Braintree:
// customers with a payment method in the simulator and subscriptions whose periods end during the run (one already
// ended, as a stale renewal), renewed through the API; their usage, including late events for a period already
// invoiced and events no meter defines; the workers open, close and author the windows and settle them with the real
// SDK. And an operator and finance at the desk (chaos/desk.ts): retry all failed events, re-author, settle again and
// write off windows, their forms resent on a lost answer. Faults: worker and web SIGKILLs (some aimed at a worker in the middle of a sale), Stripe simulator rules,
// Braintree simulator rules (5xx, timeouts with or without the sale applied, resets, 429, soft and hard declines,
// failing searches), dropped connections and database restarts. Alert rules are evaluated all along, from this
// process and the workers, and delivered to a receiver that fails at random and one that never does (chaos/alerts.ts).
// docs/reliability.md describes it.
import { randomBytes } from 'node:crypto';
import { chmod, cp, mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedPostgresHandle } from '../app/db/embedded-postgres';
import { prepareDatabase } from '../app/seed/prepare';
import { freePort } from '../test/support/free-port';
import { ensureFreshBuild } from '../test/support/desk-build';
import { CampaignAlerts, type AlertStats } from './alerts';
import { createDeskUsers, DESK_ACTIONS, DeskOperators, type DeskActionStats } from './desk';
import { checkAlerts, checkInvariants, checkOperatorActions, type Accepted, type BraintreeRecords } from './invariants';
import { BRAINTREE_FAULTS, CLOSE_GRACE_MS, FAULT_KINDS, INGEST_FAULTS, PLANS, PROCESSOR_FAULTS, UNMETERED, prng, sleep, type FaultKind, type Subscriber } from './plan';
import { CampaignProcesses, WEBS } from './processes';
import { startProxy, type ProxyStats } from './proxy';
import { braintreeSummary, reconciliationDrift, settle, type BraintreeSummary } from './settle';

export type { BraintreeSummary } from './settle';

export { FAULT_KINDS, prng, type FaultKind } from './plan';

export interface SeedOptions {
  seed: number;
  /** Stripe events to send (singles and batches, duplicates not counted). */
  events?: number;
  customers?: number;
  /** Faults injected while the Stripe ingest runs. */
  faults?: number;
  /** Braintree events to send (default a fifth of `events`). */
  braintreeEvents?: number;
  log?: (line: string) => void;
}


export interface SeedResult {
  seed: number;
  accepted: number;
  requests: number;
  retriedRequests: number;
  faults: Record<FaultKind, number>;
  /** Simulator fault rules that fired, by simulator and kind (`stripe:rate_limit`, `braintree:timeout_applied` ...). */
  processorFaults: Record<string, number>;
  /** Processes that exited without being killed (a worker's graphile-worker aborts when it cannot record a job). */
  unexpectedExits: { worker: number; web: number };
  braintree: BraintreeSummary;
  /** The desk's operator actions: sent, answered with their redirect, refused by the form, resent after a lost answer. */
  deskActions: DeskActionStats;
  /** What the proxy in front of the web processes did (connections refused and skipped, answers lost: 502). */
  proxy: ProxyStats;
  /** Alert evaluation under the faults (chaos/alerts.ts): passes, firings, deliveries per channel, receiver answers. */
  alerts: AlertStats;
  violations: string[];
  seconds: number;
}

export async function runSeed(options: SeedOptions): Promise<SeedResult> {
  const started = performance.now();
  // Separate streams, so the scenario (what is sent, which fault at which point) does not depend on how the
  // concurrent senders interleave; only the exact moments differ from run to run.
  const random = prng(options.seed);
  const faultRandom = prng(options.seed ^ 0x5eed);
  const apiRandom = prng(options.seed ^ 0xa91);
  const btRandom = prng(options.seed ^ 0xb7ee);
  const btFaultRandom = prng(options.seed ^ 0xb7fa);
  const deskRandom = prng(options.seed ^ 0xde5c);
  const webRandom = prng(options.seed ^ 0x3eb);
  const alertRandom = prng(options.seed ^ 0xa1e7);
  const answerRandom = prng(options.seed ^ 0xa15e);
  const logLine = options.log ?? (() => {});
  const t0 = performance.now();
  const log = (line: string) => logLine(`${`+${((performance.now() - t0) / 1000).toFixed(1)}s`.padStart(7)} ${line}`);
  const events = options.events ?? 1500;
  const btEvents = options.braintreeEvents ?? Math.round(events / 5);
  const customers = options.customers ?? 20;
  const faultCount = options.faults ?? 6;
  const faults = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
  const violations: string[] = [];

  // The web processes serve the desk from the React Router build.
  await ensureFreshBuild();
  const dir = await mkdtemp(path.join(os.tmpdir(), `meterdesk-chaos-${options.seed}-`));
  await chmod(dir, 0o755);
  const dataDir = path.join(dir, 'pg');
  let db: EmbeddedPostgresHandle | null = await startEmbeddedPostgres({ dataDir, ephemeral: false });
  const connectionString = db.connectionString;
  await prepareDatabase(connectionString);
  log(`  seed ${options.seed}: database ready`);
  const pool = new pg.Pool({ connectionString, max: 4 });
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));

  const apiKey = `md_chaos_${randomBytes(24).toString('base64url')}`;
  const webhookSecret = `whsec_chaos_${randomBytes(16).toString('hex')}`;
  const webPorts: number[] = [];
  while (webPorts.length < WEBS) {
    const port = await freePort();
    if (!webPorts.includes(port)) webPorts.push(port);
  }
  const proxy = await startProxy(webPorts);
  const logDir = path.join(dir, 'logs');
  await mkdir(logDir);
  const processes = new CampaignProcesses({ seed: options.seed, logDir, log, connectionString, webPorts, publicUrl: proxy.url, apiKey, webhookSecret, apiRandom, violations });
  const webUrl = processes.webUrl;
  const { control, btControl } = await processes.startSimulators();
  await control('config', { v1_rate_per_second: 2000, latency_ms: 2 });
  await control('meters', { event_name: 'ai_tokens' });
  // Sales take a while at the gateway, so a worker can be killed with one in flight.
  await btControl('config', { sale_latency_ms: 200 + Math.floor(btFaultRandom() * 500) });

  // Alert rules, channels and their receivers (chaos/alerts.ts); evaluation starts once the processes are up.
  const alerts = new CampaignAlerts({ seed: options.seed, connectionString, random: alertRandom, answerRandom, log, violations });

  const accepted = new Map<string, Accepted>();
  let requests = 0;
  let retriedRequests = 0;
  try {
    const deskUsers = await createDeskUsers(connectionString, options.seed);
    await alerts.setup();
    await Promise.all([processes.startWebs(), processes.startWorkers()]);
    log(`  seed ${options.seed}: ${WEBS} web processes behind the proxy (${proxy.url}) and ${processes.workers.size} workers ready`);
    const desk = new DeskOperators({ baseUrl: webUrl, pool, random: deskRandom, log, violations, seed: options.seed });
    await desk.signIn(deskUsers);
    // The first pass comes before any event (the silence rule fires), then passes run all along the faults.
    await alerts.start();

    const post = async (route: string, body: unknown): Promise<{ status: number; json: unknown }> => {
      const res = await fetch(`${webUrl}${route}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(15_000),
      });
      return { status: res.status, json: await res.json().catch(() => null) };
    };
    // A request whose answer was lost (killed web, dropped connection, restarting database) is sent again, as a host
    // app would, until it gets a definite answer.
    const postUntilAnswered = async (route: string, body: unknown, ok: (status: number) => boolean): Promise<{ status: number; json: unknown }> => {
      let last = '';
      for (let attempt = 0; attempt <= 60; attempt++) {
        if (attempt > 0) await sleep(200 + attempt * 50);
        let r: { status: number; json: unknown };
        try {
          r = await post(route, body);
        } catch (error) {
          last = (error as Error).message;
          continue;
        }
        if (ok(r.status)) return r;
        // A definite refusal is a bug in the campaign's requests, not a fault.
        if (r.status < 500) throw new Error(`${route} answered ${r.status}: ${JSON.stringify(r.json)}`);
        last = `status ${r.status}`;
      }
      throw new Error(`${route}: no definite answer after 60 attempts: ${last}`);
    };
    // Stripe customers through the API, known to the simulator too; one Stripe does not know (its events fail).
    await Promise.all(
      Array.from({ length: customers }, async (_, i) => {
        await postUntilAnswered('/api/v1/customers', { external_id: `chaos-${i}`, processor: 'stripe', processor_customer_id: `cus_chaos_${i}` }, (s) => s === 201 || s === 200);
        if (i > 0) await control('customers', { id: `cus_chaos_${i}` });
      }),
    );

    // Braintree subscribers: vaulted in the simulator (one, chosen by the seed, without a payment method), created
    // through the API with periods relative to T0, the start of the ingest.
    const T0 = Date.now() + 500;
    const subscribers: Subscriber[] = [];
    const nSubscribers = 4 + Math.floor(btRandom() * 3);
    const noPaymentMethod = btRandom() < 0.5 ? 1 + Math.floor(btRandom() * (nSubscribers - 1)) : -1;
    const longLived = btRandom() < 0.5 ? nSubscribers - 1 : -1;
    for (let i = 0; i < nSubscribers; i++) {
      const end2 = 12_000 + Math.floor(btRandom() * 8_000);
      let s: Subscriber;
      const base = { externalId: `bt-chaos-${i}`, processorSubscriptionId: `bts_chaos_${options.seed}_${i}`, plan: PLANS[Math.floor(btRandom() * PLANS.length)]!, token: i === noPaymentMethod ? null : `tok_chaos_${i}` };
      if (i === 0) {
        // Its period ended an hour ago and has no window: the stale-renewal reconciler repairs it.
        s = { ...base, start1: -3 * 86_400_000, end1: -3_600_000, renewAt: 4_000 + Math.floor(btRandom() * 3_000), end2 };
      } else if (i === longLived) {
        s = { ...base, start1: -2 * 86_400_000, end1: 86_400_000, renewAt: null, end2: null };
      } else {
        const end1 = 3_000 + Math.floor(btRandom() * 6_000);
        s = { ...base, start1: -(1 + Math.floor(btRandom() * 3)) * 86_400_000, end1, renewAt: end1 + 1_500 + Math.floor(btRandom() * 2_500), end2 };
      }
      subscribers.push(s);
      const processorCustomerId = `btc_chaos_${i}`;
      await btControl('customers', { id: processorCustomerId });
      if (s.token) await btControl('payment_methods', { customer_id: processorCustomerId, token: s.token, make_default: true });
      await postUntilAnswered(
        '/api/v1/customers',
        { external_id: s.externalId, processor: 'braintree', processor_customer_id: processorCustomerId, default_payment_method_token: s.token },
        (st) => st === 201 || st === 200,
      );
      await postUntilAnswered(
        '/api/v1/subscriptions',
        { customer: s.externalId, plan: s.plan, processor_subscription_id: s.processorSubscriptionId, current_period_start: new Date(T0 + s.start1).toISOString(), current_period_end: new Date(T0 + s.end1).toISOString() },
        (st) => st === 201 || st === 200,
      );
    }
    const lastPeriodEnd = Math.max(...subscribers.map((s) => s.end2 ?? 0));
    log(`  seed ${options.seed}: ${nSubscribers} Braintree subscriptions, periods ending by T0+${(lastPeriodEnd / 1000).toFixed(1)} s`);

    const record = (item: Record<string, unknown>, stored: Record<string, unknown> | undefined) => {
      const identifier = String(stored?.identifier ?? item.identifier);
      if (!accepted.has(identifier)) accepted.set(identifier, { identifier, value: Number(item.value ?? 1), customer: String(item.customer) });
    };
    const send = async (items: Array<Record<string, unknown>>, single: boolean): Promise<void> => {
      const body = items.length === 1 && single ? items[0] : { events: items };
      const batch = 'events' in (body as object);
      for (let attempt = 0; ; attempt++) {
        requests++;
        if (attempt > 0) retriedRequests++;
        try {
          const r = await post('/api/v1/events', body);
          if (r.status >= 500) throw new Error(`status ${r.status}`);
          if (batch && r.status !== 200) throw new Error(`batch answered ${r.status}: ${JSON.stringify(r.json)}`);
          const results = batch ? ((r.json as { results: Array<Record<string, unknown>> }).results ?? []) : [r.json as Record<string, unknown>];
          results.forEach((res, k) => {
            const ok = batch ? res.result === 'accepted' || res.result === 'duplicate' : r.status === 202 || r.status === 200;
            if (ok) record(items[k]!, batch ? (res.event as Record<string, unknown> | undefined) : res);
          });
          return;
        } catch (error) {
          if (attempt > 60) throw new Error(`no definite answer after ${attempt} attempts: ${(error as Error).message}`);
          await sleep(200 + attempt * 50);
        }
      }
    };

    const now = Date.now();
    const makeEvent = (i: number): Record<string, unknown> => {
      const random = prng(options.seed * 1_000_003 + i);
      const r = random();
      const e: Record<string, unknown> = {
        customer: `chaos-${Math.floor(random() * customers)}`,
        event_name: 'ai_tokens',
        value: 1 + Math.floor(random() * 1000),
        identifier: `chaos-${options.seed}-${i}`,
      };
      if (r < 0.15) e.timestamp = Math.floor((now - random() * 2 * 86_400_000) / 1000); // late usage
      if (r > 0.97) e.value = -1; // invalid: refused, never stored
      return e;
    };

    // The Braintree plan: each event's send time (from T0), customer, name, value and usage time follow from the seed.
    const btPlan = Array.from({ length: btEvents }, (_, j) => {
      const random = prng(options.seed * 7_000_003 + j);
      const at = Math.floor(random() * (lastPeriodEnd + 1_500));
      const s = subscribers[Math.floor(random() * subscribers.length)]!;
      const r = random();
      const e: Record<string, unknown> = {
        customer: s.externalId,
        event_name: random() < 0.07 ? UNMETERED : 'ai_tokens',
        value: 1 + Math.floor(random() * 20_000),
        identifier: `chaos-${options.seed}-bt-${j}`,
      };
      // Late: usage inside the first period, sent after that period ended (by then usually invoiced).
      if (r < 0.2 && s.renewAt !== null && at > s.end1 + CLOSE_GRACE_MS) e.timestamp = new Date(T0 + s.start1 + random() * (s.end1 - s.start1 - 1)).toISOString();
      else if (s.end1 < 0) e.timestamp = new Date(T0 + s.start1 + random() * (s.end1 - s.start1)).toISOString(); // the stale period's usage
      if (r > 0.97) e.value = -1;
      return { at, e };
    }).sort((a, b) => a.at - b.at);

    // Faults at points of the Stripe ingest the seed picks (after so many events were sent), so they land mid-flight.
    let ingestDone = false;
    let sent = 0;
    const injectIngestFault = async (kind: FaultKind) => {
      faults[kind]++;
      log(`  seed ${options.seed}: ${kind}`);
      switch (kind) {
        case 'worker_kill': {
          const names = [...processes.workers.keys()];
          await processes.killWorker(names[Math.floor(faultRandom() * names.length)]!);
          break;
        }
        case 'web_kill': {
          const index = Math.floor(webRandom() * WEBS);
          log(`  seed ${options.seed}: web_kill web-${index + 1}`);
          await processes.killWeb(index);
          break;
        }
        case 'processor_fault': {
          const rule = PROCESSOR_FAULTS[Math.floor(faultRandom() * PROCESSOR_FAULTS.length)]!;
          await control('faults', { ...rule, count: 5 + Math.floor(faultRandom() * 20) });
          break;
        }
        case 'db_connections_dropped':
          await pool.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`);
          break;
        case 'db_restart':
          await db!.stop();
          await sleep(300 + faultRandom() * 700);
          db = await startEmbeddedPostgres({ dataDir, port: db!.port });
          break;
        default:
          break;
      }
    };
    const faultPoints = Array.from({ length: faultCount }, () => Math.floor((0.05 + faultRandom() * 0.9) * events)).sort((a, b) => a - b);
    const faultLoop = (async () => {
      for (const point of faultPoints) {
        while (sent < point && !ingestDone) await sleep(20);
        if (ingestDone) break;
        await injectIngestFault(INGEST_FAULTS[Math.floor(faultRandom() * INGEST_FAULTS.length)]!);
      }
    })();

    // Braintree faults along the Braintree timeline: before each wave of period ends, simulator rules for the next
    // sales; and, in some waves, a SIGKILL of the worker caught with a sale in flight.
    const firstEnds = subscribers.filter((s) => s.end1 > 0 && s.renewAt !== null).map((s) => s.end1);
    const waves = [firstEnds.length > 0 ? Math.min(...firstEnds) : 4_000, Math.min(...subscribers.filter((s) => s.end2 !== null).map((s) => s.end2!))];
    const btFaultLoop = (async () => {
      for (const wave of waves) {
        while (Date.now() < T0 + wave - 1_000) await sleep(50);
        const rules = Math.floor(btFaultRandom() * 3);
        for (let k = 0; k < rules; k++) {
          const rule = BRAINTREE_FAULTS[Math.floor(btFaultRandom() * BRAINTREE_FAULTS.length)]!;
          faults.braintree_fault++;
          log(`  seed ${options.seed}: braintree_fault ${rule.kind}${'responseCode' in rule ? ` ${rule.responseCode}` : ''}${'status' in rule ? ` ${rule.status}` : ''}${'match' in rule && rule.match.operation === 'transaction.search_ids' ? ' (search)' : ''}`);
          await btControl('faults', { ...rule, count: 1 + Math.floor(btFaultRandom() * 3) });
        }
        if (btFaultRandom() < 0.7) {
          // Wait for a sale in flight (settlements follow the period ends within a few seconds).
          const until = Date.now() + 10_000;
          let victim: string | null = null;
          while (!victim && Date.now() < until) {
            victim = await processes.settlingWorker(pool).catch(() => null);
            if (!victim) await sleep(30);
          }
          if (victim) {
            faults.settling_worker_kill++;
            log(`  seed ${options.seed}: settling_worker_kill ${victim}`);
            await processes.killWorker(victim);
          }
        }
      }
    })();

    // Renewals through the API, as a host app reports them (Braintree's own renewal webhooks carry dates only).
    const renewals = (async () => {
      for (const s of [...subscribers].filter((x) => x.renewAt !== null).sort((a, b) => a.renewAt! - b.renewAt!)) {
        while (Date.now() < T0 + s.renewAt!) await sleep(25);
        await postUntilAnswered(
          '/api/v1/subscriptions',
          { customer: s.externalId, plan: s.plan, processor_subscription_id: s.processorSubscriptionId, current_period_start: new Date(T0 + s.end1).toISOString(), current_period_end: new Date(T0 + s.end2!).toISOString() },
          (st) => st === 201 || st === 200,
        );
      }
    })();

    const btSender = (async () => {
      const sentBt: Array<Record<string, unknown>> = [];
      let next = 0;
      const r = prng(options.seed ^ 0xb75e);
      while (next < btPlan.length) {
        const wait = T0 + btPlan[next]!.at - Date.now();
        if (wait > 0) await sleep(Math.min(wait, 100));
        const items: Array<Record<string, unknown>> = [];
        while (next < btPlan.length && T0 + btPlan[next]!.at <= Date.now() && items.length < 20) items.push(btPlan[next++]!.e);
        if (items.length === 0) continue;
        if (sentBt.length > 0 && r() < 0.15) items.push(sentBt[Math.floor(r() * sentBt.length)]!);
        await send(items, r() < 0.5);
        for (const item of items) if (item.value !== -1) sentBt.push(item);
      }
    })();

    // The desk's operator actions at times the seed picks, from the start of the ingest to a while after the last
    // period end (when failed and exhausted windows are there to act on).
    const deskTimes = Array.from({ length: 6 + Math.floor(deskRandom() * 5) }, () => 1_000 + Math.floor(deskRandom() * (lastPeriodEnd + 6_000))).sort((a, b) => a - b);
    const deskKinds = deskTimes.map(() => DESK_ACTIONS[Math.floor(deskRandom() * DESK_ACTIONS.length)]!);
    const deskLoop = (async () => {
      for (let k = 0; k < deskTimes.length; k++) {
        while (Date.now() < T0 + deskTimes[k]!) await sleep(50);
        await desk.runOne(deskKinds[k]!).catch((error: unknown) => violations.push(`desk ${deskKinds[k]}: ${(error as Error).message}`));
      }
    })();

    await sleep(Math.max(0, T0 - Date.now()));
    const sentIdentifiers: Array<Record<string, unknown>> = [];
    const senders = Array.from({ length: 3 }, async () => {
      while (sent < events) {
        const size = random() < 0.4 ? 1 : 1 + Math.floor(random() * 50);
        const items: Array<Record<string, unknown>> = [];
        for (let k = 0; k < size && sent < events; k++) items.push(makeEvent(sent++));
        // Duplicates: a few earlier events again, within the batch or on their own.
        if (sentIdentifiers.length > 0 && random() < 0.2) items.push(sentIdentifiers[Math.floor(random() * sentIdentifiers.length)]!);
        await send(items, random() < 0.5);
        for (const item of items) if (item.value !== -1) sentIdentifiers.push(item);
        // Paced, so ingest spans the fault schedule instead of finishing before the first fault.
        await sleep(20 + random() * 80);
      }
    });
    await Promise.all(senders);
    ingestDone = true;
    await Promise.all([faultLoop, btFaultLoop, renewals, btSender, deskLoop]);
    await settle({ seed: options.seed, pool, control, processes, violations, T0, lastPeriodEnd, log, listWindows: Boolean(options.log) });
    await alerts.drain();

    const sim = (await control('meter_events')) as { counts: Record<string, number>; data: Array<{ identifier: string; value: number; status: string }> };
    const stats = (await control('stats')) as { faultsApplied?: Record<string, number> };
    const btSales = (await btControl('sales')) as { data: BraintreeRecords['sales'] };
    const btStats = (await btControl('stats')) as { faultsApplied?: Record<string, number>; approved: number; sales: number };
    violations.push(...(await checkInvariants(pool, accepted, sim, { sales: btSales.data })));
    violations.push(...(await checkOperatorActions(pool, desk.record, { sales: btSales.data }, sim)));
    // The operator's view of the same proof: a reconciliation run (ADR 011) against both simulators finds no drift.
    violations.push(...(await reconciliationDrift(pool, processes.simUrl, processes.braintreeEnv)));
    violations.push(...(await checkAlerts(pool, alerts.records())));
    const alertStats = await alerts.summarize();
    const processorFaults: Record<string, number> = {};
    for (const [k, n] of Object.entries(stats.faultsApplied ?? {})) if (n > 0) processorFaults[`stripe:${k}`] = n;
    for (const [k, n] of Object.entries(btStats.faultsApplied ?? {})) if (n > 0) processorFaults[`braintree:${k}`] = n;
    const summary = await braintreeSummary(pool, subscribers.length, btStats);
    return { seed: options.seed, accepted: accepted.size, requests, retriedRequests, faults, processorFaults, unexpectedExits: processes.unexpectedExits, braintree: summary, deskActions: desk.stats, proxy: { ...proxy.stats }, alerts: alertStats, violations, seconds: (performance.now() - started) / 1000 };
  } catch (error) {
    processes.keepLogs = true;
    throw error;
  } finally {
    await processes.stopAll();
    await alerts.close();
    await proxy.close().catch(() => undefined);
    await pool.end().catch(() => undefined);
    await db?.stop().catch(() => undefined);
    if (processes.keepLogs || violations.length > 0) {
      const kept = path.join(os.tmpdir(), 'meterdesk-chaos-logs', `seed-${options.seed}-${new Date().toISOString().replace(/[:.]/g, '')}`);
      await cp(logDir, kept, { recursive: true }).catch(() => undefined);
      console.log(`  seed ${options.seed}: process logs kept in ${kept}`);
    }
    await rm(dir, { recursive: true, force: true });
  }
}

