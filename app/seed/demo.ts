// The demo data of the zero-setup start (`npm start` on an empty database): customers on both processors, a week of
// usage, one user per role and an API key. Writes nothing when customers exist.
import type { PrismaClient } from '../db/clients';
import { createApiKey } from '../billing/access/api-keys';
import { ROLES } from '../billing/access/permissions';
import { createUser } from '../billing/access/users';
import type { Ledger } from '../billing/ledger/ledger';

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
