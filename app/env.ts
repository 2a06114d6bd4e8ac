// The one place that reads process.env. Everything else receives its configuration as arguments.
import { z } from 'zod';

const optional = z
  .string()
  .transform((s) => s.trim())
  .optional()
  .transform((s) => (s === '' ? undefined : s));

const schema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  /** Absent: an embedded PostgreSQL in `.data/`. */
  DATABASE_URL: optional.pipe(z.string().url().optional()),
  /**
   * A streaming replica of DATABASE_URL for the desk's page reads (ADR 027); writes, the API and the worker stay on
   * DATABASE_URL. Absent: everything reads from DATABASE_URL.
   */
  DATABASE_READ_URL: optional.pipe(z.string().url().optional()),
  DATA_DIR: z.string().default('.data'),
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  HOST: z.string().default('0.0.0.0'),
  SESSION_SECRET: optional,
  STRIPE_SECRET_KEY: optional,
  STRIPE_WEBHOOK_SECRET: optional,
  /** A Stripe-compatible base URL (the simulator, or the real API when unset and a key is given). */
  STRIPE_API_BASE: optional.pipe(z.string().url().optional()),
  STRIPE_METER_API: z.enum(['v1', 'v2']).default('v1'),
  BRAINTREE_MERCHANT_ID: optional,
  BRAINTREE_PUBLIC_KEY: optional,
  BRAINTREE_PRIVATE_KEY: optional,
  BRAINTREE_API_BASE: optional.pipe(z.string().url().optional()),
  METERDESK_ADMIN_EMAIL: optional.pipe(z.string().email().optional()),
  METERDESK_ADMIN_PASSWORD: optional.pipe(z.string().min(12, 'use at least 12 characters').optional()),
  METERDESK_BOOTSTRAP_API_KEY: optional.pipe(z.string().min(32, 'use at least 32 characters').optional()),
  /** `false` skips the demo data seeded into an empty embedded database. */
  METERDESK_DEMO: z.enum(['true', 'false']).default('true'),
  /** Jobs one worker process runs at once; settling holds a job (and a client) for each sale in flight. */
  WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(8),
  OTEL_EXPORTER_OTLP_ENDPOINT: optional.pipe(z.string().url().optional()),
  LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
  /** `auto`: pretty when stdout is a terminal (and pino-pretty is installed), JSON lines otherwise (ADR 019). */
  LOG_FORMAT: z.enum(['auto', 'json', 'pretty']).default('auto'),
  /** After SIGTERM, how long a web process keeps serving (with /readyz at 503) before it stops accepting (ADR 020). */
  DRAIN_DELAY_MS: z.coerce.number().int().min(0).max(300_000).default(5_000),
  /** After it stops accepting, how long requests and jobs in flight may take before they are cut off or released. */
  SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).max(600_000).default(20_000),
  /** A worker process serves /healthz, /readyz and /metrics here; unset: no listener (a web process uses PORT). */
  HEALTH_PORT: optional.pipe(z.string().regex(/^\d+$/, 'a port number').transform(Number).pipe(z.number().int().min(0).max(65535)).optional()),
  /** `false`: web and worker expect `migrate` to have run (compose's one-shot) instead of applying migrations. */
  MIGRATE_ON_START: z.enum(['true', 'false']).default('true'),
  /**
   * How long `migrate deploy` may run before it is stopped (its PostgreSQL session ended, so the migration in flight
   * rolls back) and the process says how to resume. `0`: no limit, for a migration that rewrites a large ledger.
   */
  /** The desk's public origin (e.g. https://meterdesk.example.com), for the links alert notifications carry; unset: paths only. */
  DESK_URL: optional.pipe(z.string().url().optional()),
  /**
   * The SMTP server email alert channels are sent through (`smtp://user:pass@host:587`, `smtps://…` for TLS from the
   * start). Unset: email channels cannot be created on the desk, and the worker cannot send them. Set it on both.
   */
  SMTP_URL: optional.pipe(
    z
      .string()
      .refine((u) => URL.canParse(u) && ['smtp:', 'smtps:'].includes(new URL(u).protocol), 'must be an smtp:// or smtps:// URL')
      .optional(),
  ),
  /** The From of alert emails: `address` or `Name <address>`. */
  ALERTS_EMAIL_FROM: optional
    .transform((s) => s ?? 'Meterdesk <meterdesk@localhost>')
    .pipe(z.string().regex(/^(?:[^<>]*<[^<>@\s]+@[^<>@\s]+>|[^<>@\s]+@[^<>@\s]+)$/, 'must be an address or Name <address>')),
  MIGRATE_TIMEOUT_SECONDS: z.coerce.number().int().min(0).max(7 * 86_400).default(600),
});

export type Env = z.infer<typeof schema>;

/** Every variable this module reads (the deployment files are checked against it). */
export const ENV_VARIABLES: readonly string[] = Object.keys(schema.shape);

export class EnvError extends Error {}

export function readEnv(source: NodeJS.ProcessEnv = process.env): Env {
  const parsed = schema.safeParse(source);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new EnvError(`Invalid configuration:\n${lines.join('\n')}`);
  }
  if (parsed.data.DATABASE_READ_URL && !parsed.data.DATABASE_URL) {
    // A replica of the embedded database cannot exist: nothing streams from it.
    throw new EnvError('Invalid configuration:\n  DATABASE_READ_URL: needs DATABASE_URL (the primary it replicates)');
  }
  return parsed.data;
}

/** The migrate limit the environment sets, in the shape app/db/migrate.ts takes. */
export function migrateOptions(env: Pick<Env, 'MIGRATE_TIMEOUT_SECONDS'>): { timeoutMs: number } {
  return { timeoutMs: env.MIGRATE_TIMEOUT_SECONDS * 1000 };
}
