// `npm run cli -- <command>`: migrate | seed [--demo] [--scale 1m] | user create | apikey create | reconcile | partitions | web | worker | start.
import { parseArgs } from 'node:util';
import { readEnv, EnvError, migrateOptions, type Env } from '../env';
import { createPrisma } from '../db/clients';
import { MigrationTimeoutError, resolveMigration, ResolveMigrationError, UnfinishedMigrationError } from '../db/migrate';
import { prepareDatabase } from '../seed/prepare';
import { createApiKey } from '../billing/access/api-keys';
import { createUser } from '../billing/access/users';
import { BillingError } from '../billing/errors';
import { seedBase } from '../seed/base';
import { seedDemo } from '../seed/demo';
import { parseScale, seedScale } from '../seed/scale';
import { createServices } from '../server/services';
import { runProcesses } from './run';
import { configureLogging, errorFields, logger, processRole, type ProcessRole } from '../log';

const USAGE = `usage: npm run cli -- <command>
  start                          embedded default: database (embedded when DATABASE_URL is unset), worker and web
  web                            the web process (desk, API, webhooks) on PORT
  worker                         the worker process
  migrate                        apply database migrations and the base seed (stopped after MIGRATE_TIMEOUT_SECONDS)
  migrate resolve --rolled-back NAME | --applied NAME
                                 record how a migration an interrupted deploy left unfinished ended
  seed [--demo] [--scale S]      base data; --demo adds demo customers, usage, users and an API key;
                                 --scale 1m (or 100k, 5000...) adds S events and S/10 windows for benchmarks
                                 (skipped when the database already holds a scale seed)
  user create --email E --role R [--password P]
  apikey create --name N         prints the key once, on the last line
  reconcile [--lookback-days N] [--grace-minutes M]
                                 compare the ledger with Stripe and Braintree now: the last N UTC days (default 3),
                                 work younger than M minutes left for later (default 15); exits 1 when it finds
                                 drift, 3 when another run is in progress
  partitions list | create-ahead  the ledger's month partitions; create-ahead makes the next months now
  partitions archive --before YYYY-MM (--to DIR | --dry-run) [--forget-identifiers]
                                 write the settled partitions that end by that month to gzipped CSV files in DIR,
                                 then detach and drop them; exits 1 when one cannot be archived yet (says why)
  simulator stripe [--port N] [--webhook-url URL] [--webhook-secret S]
                                 the Stripe simulator alone (point STRIPE_API_BASE at it); prints one JSON line
  simulator braintree [--port N]  the Braintree simulator alone (point BRAINTREE_API_BASE at it)`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const role: ProcessRole = command === 'web' || command === 'worker' || command === 'start' || command === 'migrate' ? command : 'cli';
  configureLogging({ role });
  const env = readEnv();
  configureLogging({ role, level: env.LOG_LEVEL, format: env.LOG_FORMAT });
  switch (command) {
    case 'start':
      return runProcesses(env, { web: true, worker: true, embedded: !env.DATABASE_URL });
    case 'web':
      return runProcesses(env, { web: true, worker: false, embedded: false });
    case 'worker':
      return runProcesses(env, { web: false, worker: true, embedded: false });
    case 'migrate': {
      if (rest[0] === 'resolve') {
        const { values } = parseArgs({ args: rest.slice(1), options: { 'rolled-back': { type: 'string' }, applied: { type: 'string' } } });
        const [as, migration] = values['rolled-back'] !== undefined ? (['rolled-back', values['rolled-back']] as const) : (['applied', values.applied] as const);
        if (migration === undefined || (values['rolled-back'] !== undefined && values.applied !== undefined)) {
          throw new EnvError('usage: migrate resolve --rolled-back NAME | --applied NAME');
        }
        await resolveMigration(requireDatabase(env), migration, as);
        logger('migrate').info({ migration, as }, 'migration resolved: run migrate to go on');
        return 0;
      }
      await prepareDatabase(requireDatabase(env), migrateOptions(env));
      logger('migrate').info('database is up to date');
      return 0;
    }
    case 'seed': {
      const { values } = parseArgs({ args: rest, options: { demo: { type: 'boolean' }, scale: { type: 'string' } } });
      const scale = values.scale === undefined ? null : parseScale(values.scale);
      const url = requireDatabase(env);
      await prepareDatabase(url, migrateOptions(env));
      const services = createServices({ connectionString: url });
      try {
        await seedBase(services.prisma);
        if (values.demo) {
          const demo = await seedDemo(services.prisma, services.ledger);
          if (!demo) console.log('demo data not added: the database already has customers');
          else {
            for (const u of demo.users) console.log(`user ${u.email} (${u.role}) password: ${u.password}`);
            console.log(`demo API key (shown once):\n${demo.apiKey}`);
          }
        }
        if (scale !== null) {
          const r = await seedScale(services.pool, { events: scale, windows: Math.floor(scale / 10), log: (line) => console.log(line) });
          if (r.status === 'skipped') console.log(`scale seed skipped: ${r.reason}`);
          else console.log(`scale seed: ${r.events} events, ${r.windows} windows, ${r.customers} customers in ${r.seconds.toFixed(1)} s`);
        }
      } finally {
        await services.close();
      }
      return 0;
    }
    case 'user': {
      const [sub, ...args] = rest;
      if (sub !== 'create') break;
      const { values } = parseArgs({ args, options: { email: { type: 'string' }, role: { type: 'string' }, password: { type: 'string' } } });
      const prisma = createPrisma(requireDatabase(env));
      try {
        const { user, password, generated } = await createUser(prisma, {
          email: values.email ?? '',
          role: (values.role ?? '') as 'admin',
          password: values.password,
        });
        console.log(`created ${user.email}`);
        if (generated) console.log(`password (shown once):\n${password}`);
      } finally {
        await prisma.$disconnect();
      }
      return 0;
    }
    case 'apikey': {
      const [sub, ...args] = rest;
      if (sub !== 'create') break;
      const { values } = parseArgs({ args, options: { name: { type: 'string' } } });
      const name = values.name?.trim();
      if (!name) {
        console.error('apikey create needs --name');
        return 2;
      }
      const prisma = createPrisma(requireDatabase(env));
      try {
        const { key, apiKey } = await createApiKey(prisma, { name });
        console.log(`created API key ${apiKey.prefix}… "${apiKey.name}" (shown once, store it now):`);
        console.log(key);
      } finally {
        await prisma.$disconnect();
      }
      return 0;
    }
    case 'reconcile': {
      const { values } = parseArgs({ args: rest, options: { 'lookback-days': { type: 'string' }, 'grace-minutes': { type: 'string' } } });
      const whole = (raw: string | undefined, min: number, max: number) => {
        const n = raw === undefined ? undefined : Number(raw);
        return n === undefined || (Number.isInteger(n) && n >= min && n <= max) ? { ok: true as const, n } : { ok: false as const };
      };
      const lookbackDays = whole(values['lookback-days'], 1, 35);
      const graceMinutes = whole(values['grace-minutes'], 0, 1440);
      if (!lookbackDays.ok || !graceMinutes.ok) {
        console.error('--lookback-days takes 1 to 35 (days), --grace-minutes 0 to 1440 (minutes)');
        return 2;
      }
      const { reconcileCommand } = await import('./reconcile');
      return reconcileCommand(env, requireDatabase(env), { lookbackDays: lookbackDays.n, graceMinutes: graceMinutes.n });
    }
    case 'partitions': {
      const { partitionsCommand } = await import('./partitions');
      return partitionsCommand(requireDatabase(env), rest);
    }
    case 'simulator': {
      const [sub, ...args] = rest;
      if (sub === 'braintree') {
        const { runSimulatorCli } = await import('../../simulators/braintree/simulator.ts');
        await runSimulatorCli(args);
        return new Promise<number>(() => {}); // runs until SIGINT/SIGTERM, which the simulator handles
      }
      if (sub !== 'stripe') break;
      const { values } = parseArgs({
        args,
        options: { port: { type: 'string' }, host: { type: 'string' }, 'webhook-url': { type: 'string' }, 'webhook-secret': { type: 'string' } },
      });
      const { startStripeSimulator, SIMULATOR_SECRET_KEY } = await import('../../simulators/stripe/simulator');
      const sim = await startStripeSimulator({
        port: values.port ? Number(values.port) : 0,
        ...(values.host ? { host: values.host } : {}),
        ...(values['webhook-url'] ? { webhookUrl: values['webhook-url'] } : {}),
        ...(values['webhook-secret'] ? { webhookSecret: values['webhook-secret'] } : {}),
        // Like Stripe, a delivery the app did not take (down, restarting) is sent again later.
        webhookRetries: 8,
      });
      console.log(JSON.stringify({ url: sim.url, webhookSecret: sim.webhookSecret, secretKey: SIMULATOR_SECRET_KEY }));
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
      await sim.stop();
      return 0;
    }
  }
  console.error(USAGE);
  return 2;
}

function requireDatabase(env: Env): string {
  if (!env.DATABASE_URL) {
    throw new EnvError('DATABASE_URL is not set (only `start` runs the embedded database)');
  }
  return env.DATABASE_URL;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    const known = error instanceof EnvError || error instanceof BillingError || error instanceof MigrationTimeoutError || error instanceof UnfinishedMigrationError || error instanceof ResolveMigrationError;
    // A long-lived process's last words are a log line (its stdout is a log stream); a command's are for its user.
    if (processRole() !== 'cli') logger('process').error(known ? { error: (error as Error).message } : errorFields(error), 'exiting on an error');
    else if (known) console.error((error as Error).message);
    else console.error(error);
    process.exit(1);
  },
);
