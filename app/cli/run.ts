// Runs the long-lived processes: web, worker, or both with an embedded PostgreSQL (the zero-setup default).
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { migrateOptions, type Env } from '../env';
import { startEmbeddedPostgres } from '../db/embedded-postgres';
import { prepareDatabase } from '../seed/prepare';
import { ensureApiKey } from '../billing/access/api-keys';
import { ensureAdmin } from '../billing/access/users';
import { DEMO_TROUBLE, seedDemo, type DemoCredentials } from '../seed/demo';
import { createApiHandler } from '../api/handler';
import { createWebhookHandler } from '../api/webhooks';
import type { HttpServer, NodeHandler } from '../server/http';
import { startHttpServer } from '../server/http';
import { createServices } from '../server/services';
import { startStripe, type StripeRuntime } from '../server/stripe';
import { startBraintree, type BraintreeRuntime } from '../server/braintree';
import { createBraintreeWebhookHandler } from '../api/braintree-webhooks';
import { createDeskLoadContext } from '../server/desk-context';
import { stripeCustomerCheck } from '../billing/processors/stripe/customer-check';
import { randomBytes } from 'node:crypto';
import { startTelemetry } from '../server/telemetry';
import { registerAlertGauges } from '../billing/alerts/gauges';
import { createHealth, type Health } from '../server/health';
import { expectedMigrations, pendingMigrations } from '../db/migrate';
import { createPool } from '../db/clients';
import { errorFields, logger } from '../log';
import { startWorker, type Worker } from '../../jobs/worker';
import { createTaskList } from '../../jobs/tasks';

const log = logger('process');

export interface RunOptions {
  web: boolean;
  worker: boolean;
  embedded: boolean;
}

export async function runProcesses(env: Env, opts: RunOptions): Promise<number> {
  const stack: Array<{ name: string; stop: () => Promise<void> }> = [];
  let stopping: Promise<void> | null = null;
  const shutdown = () =>
    (stopping ??= (async () => {
      // Connections closing under in-flight work (a job mid-query, a timer's last poll) may reject once more while
      // everything stops; that is noise of the stop itself, logged, not a reason to exit uncleanly.
      const late = (error: unknown) => log.warn(errorFields(error), 'error while stopping');
      process.on('unhandledRejection', late);
      process.on('uncaughtException', late);
      for (const item of stack.reverse()) {
        await item.stop().catch((e: unknown) => log.error({ ...errorFields(e), part: item.name }, 'stopping failed'));
      }
    })());
  let signalledAlready = false;
  const signalled = new Promise<NodeJS.Signals>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      if (signalledAlready) {
        log.warn({ signal }, 'second signal: exiting now');
        process.exit(130);
      }
      signalledAlready = true;
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });

  let health: Health | null = null;
  let web: HttpServer | null = null;
  try {
    let url = env.DATABASE_URL;
    if (opts.embedded) {
      const dataDir = path.resolve(env.DATA_DIR, 'postgres');
      log.info({ data_dir: dataDir }, 'starting the embedded PostgreSQL');
      const pg = await startEmbeddedPostgres({ dataDir });
      stack.push({ name: 'embedded PostgreSQL', stop: () => pg.stop() });
      url = pg.connectionString;
    }
    if (!url) throw new Error('no database: set DATABASE_URL');
    if (opts.embedded || env.MIGRATE_ON_START === 'true') await prepareDatabase(url, migrateOptions(env));
    else if (!(await migrationsApplied(url, signalled))) return 0;

    const telemetry = startTelemetry({ serviceName: opts.web ? 'meterdesk-web' : 'meterdesk-worker', otlpEndpoint: env.OTEL_EXPORTER_OTLP_ENDPOINT });
    stack.push({ name: 'telemetry', stop: () => telemetry.shutdown() });
    // Only the web process reads from a replica (its desk pages, ADR 027); the worker's reads decide writes.
    // The web process's reads are all small pages: no parallel query (ADR 034). The worker's aggregates keep it.
    const services = createServices({
      connectionString: url,
      serialQueries: opts.web && !opts.worker,
      ...(opts.web && env.DATABASE_READ_URL ? { readConnectionString: env.DATABASE_READ_URL } : {}),
    });
    stack.push({ name: 'database clients', stop: () => services.close() });

    if (env.METERDESK_ADMIN_EMAIL && env.METERDESK_ADMIN_PASSWORD) {
      await ensureAdmin(services.prisma, env.METERDESK_ADMIN_EMAIL, env.METERDESK_ADMIN_PASSWORD);
    }
    if (env.METERDESK_BOOTSTRAP_API_KEY) await ensureApiKey(services.prisma, env.METERDESK_BOOTSTRAP_API_KEY, 'bootstrap');

    let demo: DemoCredentials | null = null;
    if (opts.embedded && env.METERDESK_DEMO === 'true') demo = await demoCredentials(env, services);

    // Stops after the worker and the web server (the stack unwinds in reverse), so no call is cut off.
    const stripe = await startStripe({
      pool: services.pool,
      secretKey: env.STRIPE_SECRET_KEY,
      apiBase: env.STRIPE_API_BASE,
      api: env.STRIPE_METER_API,
      webhookSecret: env.STRIPE_WEBHOOK_SECRET,
      // Only a process that reports needs a simulator of its own; a lone web process has nobody to talk to it.
      allowSimulator: opts.worker,
      ...(opts.embedded && env.METERDESK_DEMO === 'true' ? { simulatorUnknownCustomers: DEMO_TROUBLE.unknownToStripe } : {}),
    });
    stack.push({ name: 'Stripe', stop: () => stripe.stop() });
    const braintree = await startBraintree({
      pool: services.pool,
      merchantId: env.BRAINTREE_MERCHANT_ID,
      publicKey: env.BRAINTREE_PUBLIC_KEY,
      privateKey: env.BRAINTREE_PRIVATE_KEY,
      apiBase: env.BRAINTREE_API_BASE,
      allowSimulator: opts.worker,
    });
    stack.push({ name: 'Braintree', stop: () => braintree.stop() });

    // A worker exports the alert gauges (read at each scrape of its /metrics); web processes do not, so each series
    // comes from the processes that evaluate alerts.
    if (opts.worker) {
      const unregister = registerAlertGauges(services.pool);
      stack.push({ name: 'alert gauges', stop: async () => unregister() });
    }
    let worker: Worker | null = null;
    // Before the worker, so probes answer (not ready: worker starting) while it starts, and after it stops.
    const processHealth = createHealth({
      connectionString: url,
      ...(opts.worker ? { worker: () => worker?.state() ?? 'starting' } : {}),
      metrics: telemetry.metricsHandler,
    });
    health = processHealth;
    stack.push({ name: 'health', stop: () => processHealth.close() });
    let healthUrl: string | null = null;
    if (!opts.web && env.HEALTH_PORT !== undefined) {
      // A worker has no desk or API; its probes and metrics get a listener of their own.
      const http = await startHttpServer({ port: env.HEALTH_PORT, host: env.HOST, handlers: [processHealth.handler, notFound], shutdownGraceMs: 1_000 });
      stack.push({ name: 'health listener', stop: () => http.close() });
      healthUrl = http.url;
    }
    if (opts.worker) {
      const started = await startWorker({
        connectionString: url,
        concurrency: env.WORKER_CONCURRENCY,
        tasks: createTaskList({
          stripeReporting: stripe.reporting,
          stripeClient: stripe.client,
          braintree: { processor: braintree.processor },
          alerts: { ...(env.DESK_URL ? { deskUrl: env.DESK_URL } : {}), ...(env.SMTP_URL ? { email: { smtpUrl: env.SMTP_URL, from: env.ALERTS_EMAIL_FROM } } : {}) },
        }),
        // A settle job holds a client for the whole sale: the pool must cover the concurrency.
        maxPoolSize: env.WORKER_CONCURRENCY + 4,
        crontab: await readFile(fileURLToPath(new URL('../../jobs/crontab', import.meta.url)), 'utf8'),
      });
      worker = started;
      // Jobs still running after the grace period are released, not left locked (ADR 020).
      stack.push({ name: 'worker', stop: () => started.stop({ graceMs: env.SHUTDOWN_GRACE_MS }) });
    }

    let webUrl: string | null = null;
    if (opts.web) {
      const handlers: NodeHandler[] = [processHealth.handler, createBraintreeWebhookHandler({ pool: services.pool, parser: braintree.processor })];
      if (stripe.webhookSecret) handlers.push(createWebhookHandler({ pool: services.pool, stripeWebhookSecret: stripe.webhookSecret }));
      else log.warn('STRIPE_WEBHOOK_SECRET is not set: POST /webhooks/stripe is disabled');
      handlers.push(createApiHandler({ ...services, metrics: telemetry.metricsHandler }));
      const http = await startHttpServer({
        port: env.PORT,
        host: env.HOST,
        handlers,
        mode: env.NODE_ENV === 'development' ? 'development' : 'production',
        shutdownGraceMs: env.SHUTDOWN_GRACE_MS,
        getLoadContext: createDeskLoadContext(services, {
          sessionSecret: await sessionSecret(env, opts),
          simulatedProcessors: stripe.mode === 'simulator' || braintree.mode === 'simulator',
          emailAlerts: env.SMTP_URL !== undefined,
          customerCheck: stripeCustomerCheck(stripe.client),
        }),
      });
      web = http;
      stack.push({ name: 'web', stop: () => http.close() });
      webUrl = `http://localhost:${http.port}`;
      // The in-process simulator's error reports and subscription events come back to this process, signed.
      stripe.simulator?.configure({ webhookUrl: `http://127.0.0.1:${http.port}/webhooks/stripe` });
    }
    log.info({ ...(web ? { url: web.url } : {}), ...(healthUrl ? { health_url: healthUrl } : {}), worker: opts.worker }, 'started');
    if (opts.web && opts.worker) banner(webUrl, opts, demo, stripe.mode === 'simulator' || braintree.mode === 'simulator', stripe, braintree);
  } catch (error) {
    await shutdown();
    throw error;
  }

  const signal = await signalled;
  // A person's Ctrl-C stops at once; an orchestrator's SIGTERM first tells the balancers (ADR 020).
  const delayMs = signal === 'SIGTERM' && web ? env.DRAIN_DELAY_MS : 0;
  log.info({ signal, drain_delay_ms: delayMs, grace_ms: env.SHUTDOWN_GRACE_MS }, 'draining');
  health?.startDraining();
  web?.drain();
  if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
  await shutdown();
  log.info('stopped');
  return 0;
}

/**
 * With MIGRATE_ON_START=false (compose runs `migrate` once): waits until the schema is the one this code expects,
 * as a new version's processes do while its migration job runs. False when a signal came first.
 */
async function migrationsApplied(url: string, signalled: Promise<NodeJS.Signals>): Promise<boolean> {
  const pool = createPool(url, 1);
  let signal: NodeJS.Signals | null = null;
  void signalled.then((s) => (signal = s));
  try {
    const expected = await expectedMigrations();
    for (let waited = false; ; waited = true) {
      const pending = await pendingMigrations(pool, expected).catch((error: unknown) => [`unreadable: ${(error as Error).message}`]);
      if (pending.length === 0) return true;
      if (!waited) log.warn({ pending }, 'waiting for migrations (run `migrate`)');
      await Promise.race([new Promise((r) => setTimeout(r, 1_000)), signalled]);
      if (signal) return false;
    }
  } finally {
    await pool.end();
  }
}

const notFound: NodeHandler = async (req, res) => {
  req.resume();
  res.writeHead(404, { 'content-type': 'application/problem+json' });
  res.end(JSON.stringify({ type: '/problems/not-found', title: 'Not found', status: 404, detail: 'a worker serves /healthz, /readyz and /metrics only' }));
  return true;
};

/** Seeds demo data into an empty database and keeps its credentials (mode 0600) beside the data directory. */
async function demoCredentials(env: Env, services: ReturnType<typeof createServices>): Promise<DemoCredentials | null> {
  const file = path.resolve(env.DATA_DIR, 'demo-credentials.json');
  const seeded = await seedDemo(services.prisma, services.ledger);
  if (seeded) {
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, JSON.stringify(seeded, null, 2), { mode: 0o600 });
    await chmod(file, 0o600);
    return seeded;
  }
  try {
    return JSON.parse(await readFile(file, 'utf8')) as DemoCredentials;
  } catch {
    return null;
  }
}

/**
 * SESSION_SECRET signs desk cookies and must be the same on every web process. The embedded default keeps a random
 * one in the data directory; a lone web process without one gets a random secret (sessions end at restart).
 */
async function sessionSecret(env: Env, opts: RunOptions): Promise<string> {
  if (env.SESSION_SECRET) return env.SESSION_SECRET;
  if (opts.embedded) {
    const file = path.resolve(env.DATA_DIR, 'session-secret');
    const stored = await readFile(file, 'utf8').catch(() => '');
    if (stored.trim().length >= 32) return stored.trim();
    const secret = randomBytes(32).toString('base64url');
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, secret, { mode: 0o600 });
    return secret;
  }
  log.warn('SESSION_SECRET is not set: using a random one (desk sessions end when this process stops; set it when running several web processes)');
  return randomBytes(32).toString('base64url');
}

function banner(url: string | null, opts: RunOptions, demo: DemoCredentials | null, simulated: boolean, stripe: StripeRuntime, braintree: BraintreeRuntime) {
  const lines = ['', 'Meterdesk is running'];
  if (url) lines.push(`  desk and API   ${url}`, `  health         ${url}/healthz, ${url}/readyz`);
  if (opts.worker) lines.push('  worker         in this process');
  if (simulated) lines.push('  processors     simulated (no STRIPE_SECRET_KEY / BRAINTREE keys set)');
  if (stripe.simulator) lines.push(`  Stripe         simulator in this process at ${stripe.simulator.url} (meter API ${stripe.processor.api})`);
  else if (stripe.mode === 'simulator') lines.push(`  Stripe         simulator at STRIPE_API_BASE (meter API ${stripe.processor.api})`);
  if (braintree.simulator) lines.push(`  Braintree      simulator in this process at ${braintree.simulator.url}`);
  if (demo) {
    lines.push('', `Demo data (credentials kept in .data/demo-credentials.json):`);
    for (const u of demo.users) lines.push(`  ${u.role.padEnd(9)} ${u.email}  password ${u.password}`);
    lines.push(`  API key   ${demo.apiKey}`);
    if (url) {
      lines.push('', 'Send a first event:', `  curl -s ${url}/api/v1/events -H 'authorization: Bearer ${demo.apiKey}' \\`,
        `    -H 'content-type: application/json' -d '{"customer":"acme","event_name":"ai_tokens","value":1250}'`);
    }
  }
  lines.push('', 'Ctrl-C stops everything.', '');
  // The embedded default's banner is for the person who ran it (the demo credentials): plain text, not a log line.
  process.stdout.write(`${lines.join('\n')}\n`);
}
