// Base data every installation needs (roles, permissions, the default plans and meter) and the demo data of the
// zero-setup start. Both are idempotent.
import type { PrismaClient } from '../db/clients';
import { createApiKey } from './access/api-keys';
import { ROLES } from './access/permissions';
import { createUser, syncRolesAndPermissions } from './access/users';
import type { Ledger } from './ledger/ledger';

/** PRODUCT.md's default plans on the `ai_tokens` meter, rounded up (Stripe's transform_quantity). */
export const DEFAULT_PLANS = [
  { code: 'essential', name: 'Essential', unitAmountMinor: 5n, perUnits: 1_000n },
  { code: 'business', name: 'Business', unitAmountMinor: 50n, perUnits: 15_000n },
  { code: 'enterprise', name: 'Enterprise', unitAmountMinor: 500n, perUnits: 200_000n },
] as const;

export async function seedBase(prisma: PrismaClient): Promise<void> {
  await syncRolesAndPermissions(prisma);
  const meter = await prisma.meter.upsert({
    where: { eventName: 'ai_tokens' },
    update: {},
    create: { eventName: 'ai_tokens', displayName: 'AI tokens', aggregation: 'sum' },
  });
  for (const p of DEFAULT_PLANS) {
    const plan = await prisma.plan.upsert({ where: { code: p.code }, update: {}, create: { code: p.code, name: p.name } });
    const priced = await prisma.meterPrice.findFirst({ where: { planId: plan.id, meterId: meter.id } });
    if (!priced) {
      await prisma.meterPrice.create({
        data: {
          planId: plan.id,
          meterId: meter.id,
          unitAmountMinor: p.unitAmountMinor,
          perUnits: p.perUnits,
          rounding: 'up',
          currency: 'usd',
          effectiveFrom: new Date('2020-01-01T00:00:00Z'),
        },
      });
    }
  }
}

export interface DemoCredentials {
  apiKey: string;
  users: Array<{ email: string; role: string; password: string }>;
}

const DAY = 86_400_000;

/** Demo customers, subscriptions, users and usage for an empty database. Returns null when data already exists. */
export async function seedDemo(prisma: PrismaClient, ledger: Ledger, now = new Date()): Promise<DemoCredentials | null> {
  if ((await prisma.customer.count()) > 0) return null;
  const start = new Date(now.getTime() - 10 * DAY);
  const end = new Date(start.getTime() + 30 * DAY);
  const customers = [
    { externalId: 'acme', name: 'Acme Corp', email: 'billing@acme.test', processor: 'stripe', processorCustomerId: 'cus_demo_acme', plan: 'business' },
    { externalId: 'globex', name: 'Globex', email: 'ap@globex.test', processor: 'stripe', processorCustomerId: 'cus_demo_globex', plan: 'essential' },
    { externalId: 'initech', name: 'Initech', email: 'finance@initech.test', processor: 'stripe', processorCustomerId: 'cus_demo_initech', plan: 'enterprise' },
    { externalId: 'umbrella', name: 'Umbrella', email: 'billing@umbrella.test', processor: 'braintree', processorCustomerId: 'bt_demo_umbrella', plan: 'business', token: 'pm_demo_umbrella' },
    { externalId: 'hooli', name: 'Hooli', email: 'ap@hooli.test', processor: 'braintree', processorCustomerId: 'bt_demo_hooli', plan: 'essential', token: null },
  ] as const;
  for (const c of customers) {
    const plan = await prisma.plan.findUniqueOrThrow({ where: { code: c.plan } });
    const customer = await prisma.customer.create({
      data: {
        externalId: c.externalId,
        name: c.name,
        email: c.email,
        processor: c.processor,
        processorCustomerId: c.processorCustomerId,
        defaultPaymentMethodToken: 'token' in c ? c.token : null,
      },
    });
    await prisma.subscription.create({
      data: {
        customerId: customer.id,
        planId: plan.id,
        processor: c.processor,
        processorSubscriptionId: `sub_demo_${c.externalId}`,
        currentPeriodStart: start,
        currentPeriodEnd: end,
      },
    });
  }
  // A week of usage, a few events an hour per customer, plus one event without a meter definition.
  const events: Parameters<Ledger['reportUsageBatch']>[0] = [];
  for (const c of customers) {
    for (let h = 0; h < 7 * 24; h += 3) {
      events.push({
        customer: c.externalId,
        eventName: 'ai_tokens',
        value: 200 + ((h * 7919 + c.externalId.length * 104729) % 4800),
        identifier: `demo-${c.externalId}-${h}`,
        timestamp: new Date(now.getTime() - (7 * 24 - h) * 3_600_000),
      });
    }
  }
  events.push({ customer: 'umbrella', eventName: 'image_renders', value: 3, identifier: 'demo-umbrella-image-1' });
  for (let i = 0; i < events.length; i += 1000) await ledger.reportUsageBatch(events.slice(i, i + 1000));

  const users: DemoCredentials['users'] = [];
  for (const role of ROLES) {
    const { user, password } = await createUser(prisma, { email: `${role}@meterdesk.local`, role });
    users.push({ email: user.email, role, password });
  }
  const { key } = await createApiKey(prisma, { name: 'demo' });
  return { apiKey: key, users };
}
