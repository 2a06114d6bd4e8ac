// Runs the long-lived processes: web, worker, or both with an embedded PostgreSQL (the zero-setup default).
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Env } from '../env';
import { startEmbeddedPostgres } from '../db/embedded-postgres';
import { prepareDatabase } from '../seed/prepare';
import { ensureApiKey } from '../billing/access/api-keys';
import { ensureAdmin } from '../billing/access/users';
import { seedDemo, type DemoCredentials } from '../seed/demo';
import { createApiHandler } from '../api/handler';
import { createWebhookHandler } from '../api/webhooks';
import type { NodeHandler } from '../server/http';
import { startHttpServer } from '../server/http';
import { createServices } from '../server/services';
import { startStripe, type StripeRuntime } from '../server/stripe';
import { startBraintree, type BraintreeRuntime } from '../server/braintree';
import { createBraintreeWebhookHandler } from '../api/braintree-webhooks';
import { createDeskLoadContext } from '../server/desk-context';
import { randomBytes } from 'node:crypto';
import { startTelemetry } from '../server/telemetry';
import { startWorker } from '../../jobs/worker';
import { createTaskList } from '../../jobs/tasks';

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
      const late = (error: unknown) => console.error('[start] while stopping:', error instanceof Error ? error.message : error);
      process.on('unhandledRejection', late);
      process.on('uncaughtException', late);
      for (const item of stack.reverse()) {
        await item.stop().catch((e: unknown) => console.error(`[start] stopping ${item.name} failed:`, e));
      }
    })());
  const signalled = new Promise<NodeJS.Signals>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        console.error('[start] second signal: exiting now');
        process.exit(130);
      }
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });

  try {
    let url = env.DATABASE_URL;
    if (opts.embedded) {
      const dataDir = path.resolve(env.DATA_DIR, 'postgres');
      console.log(`[start] embedded PostgreSQL in ${dataDir}`);
      const pg = await startEmbeddedPostgres({ dataDir });
      stack.push({ name: 'embedded PostgreSQL', stop: () => pg.stop() });
      url = pg.connectionString;
    }
    if (!url) throw new Error('no database: set DATABASE_URL');
    await prepareDatabase(url);

    const telemetry = startTelemetry({ serviceName: opts.web ? 'meterdesk-web' : 'meterdesk-worker', otlpEndpoint: env.OTEL_EXPORTER_OTLP_ENDPOINT });
    stack.push({ name: 'telemetry', stop: () => telemetry.shutdown() });
    const services = createServices({ connectionString: url });
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

    if (opts.worker) {
      const worker = await startWorker({
        connectionString: url,
        concurrency: env.WORKER_CONCURRENCY,
        tasks: createTaskList({
          stripeReporting: stripe.reporting,
          stripeClient: stripe.client,
          braintree: { processor: braintree.processor },
        }),
        // A settle job holds a client for the whole sale: the pool must cover the concurrency.
        maxPoolSize: env.WORKER_CONCURRENCY + 4,
        crontab: await readFile(fileURLToPath(new URL('../../jobs/crontab', import.meta.url)), 'utf8'),
      });
      stack.push({ name: 'worker', stop: () => worker.stop() });
    }
    let webUrl: string | null = null;
    if (opts.web) {
      const handlers: NodeHandler[] = [createBraintreeWebhookHandler({ pool: services.pool, parser: braintree.processor })];
      if (stripe.webhookSecret) handlers.push(createWebhookHandler({ pool: services.pool, stripeWebhookSecret: stripe.webhookSecret }));
      else console.log('[start] STRIPE_WEBHOOK_SECRET is not set: POST /webhooks/stripe is disabled');
      handlers.push(createApiHandler({ ...services, metrics: telemetry.metricsHandler }));
      const http = await startHttpServer({
        port: env.PORT,
        host: env.HOST,
        handlers,
        mode: env.NODE_ENV === 'development' ? 'development' : 'production',
        getLoadContext: createDeskLoadContext(services, {
          sessionSecret: await sessionSecret(env, opts),
          simulatedProcessors: stripe.mode === 'simulator' || braintree.mode === 'simulator',
        }),
      });
      stack.push({ name: 'web', stop: () => http.close() });
      webUrl = `http://localhost:${http.port}`;
      // The in-process simulator's error reports and subscription events come back to this process, signed.
      stripe.simulator?.configure({ webhookUrl: `http://127.0.0.1:${http.port}/webhooks/stripe` });
    }
    banner(webUrl, opts, demo, stripe.mode === 'simulator' || braintree.mode === 'simulator', stripe, braintree);
  } catch (error) {
    await shutdown();
    throw error;
  }

  const signal = await signalled;
  console.log(`[start] ${signal}: stopping`);
  await shutdown();
  return 0;
}

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
  console.warn('[start] SESSION_SECRET is not set: using a random one (desk sessions end when this process stops; set it when running several web processes)');
  return randomBytes(32).toString('base64url');
}

function banner(url: string | null, opts: RunOptions, demo: DemoCredentials | null, simulated: boolean, stripe: StripeRuntime, braintree: BraintreeRuntime) {
  const lines = ['', 'Meterdesk is running'];
  if (url) lines.push(`  desk and API   ${url}`, `  health         ${url}/healthz`);
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
  console.log(lines.join('\n'));
}
