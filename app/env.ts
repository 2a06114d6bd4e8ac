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
});

export type Env = z.infer<typeof schema>;

export class EnvError extends Error {}

export function readEnv(source: NodeJS.ProcessEnv = process.env): Env {
  const parsed = schema.safeParse(source);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new EnvError(`Invalid configuration:\n${lines.join('\n')}`);
  }
  return parsed.data;
}
