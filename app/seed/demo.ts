// The demo data of the zero-setup start (`npm start` on an empty database): customers on both processors, a week of
// usage, one user per role and an API key; and, beside the healthy data, a few of each failure the desk exists for,
// each produced by the real path within a minute of the start (see DEMO_TROUBLE). Writes nothing when customers exist.
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
const HOUR = 3_600_000;

/**
 * The trouble the demo shows, and how each comes about (nothing is written as failed: the worker, the simulators and
 * the crontab make it so, as they would in production):
 * - `wayne`: a Stripe customer id the demo's Stripe does not know: its events fail (`meter_event_customer_not_found`).
 * - `api_calls`: usage of Acme's under an event name no meter defines, at Meterdesk or at Stripe: failed (`no_meter`).
 * - `image_renders`: Umbrella's usage no plan prices: the Definitions inbox.
 * - `hooli`, `soylent`, `stark`: Braintree subscriptions whose period ended hours ago with no window (a stale renewal,
 *   repaired by the reconciler), then charged: Hooli has no payment method (the invoice waits for one), Soylent's card
 *   declines softly (2000, retried), Stark's hard (2004, not retried).
 */
export const DEMO_TROUBLE = {
  /** Stripe customer ids the demo's simulated Stripe must not learn. */
  unknownToStripe: ['cus_demo_wayne'],
} as const;

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
    { externalId: 'hooli', name: 'Hooli', email: 'ap@hooli.test', processor: 'braintree', processorCustomerId: 'bt_demo_hooli', plan: 'essential', token: null, ended: true },
    { externalId: 'wayne', name: 'Wayne Enterprises', email: 'ap@wayne.test', processor: 'stripe', processorCustomerId: 'cus_demo_wayne', plan: 'business' },
    { externalId: 'soylent', name: 'Soylent', email: 'billing@soylent.test', processor: 'braintree', processorCustomerId: 'bt_demo_soylent', plan: 'business', token: 'pm_demo_soft_decline', ended: true },
    { externalId: 'stark', name: 'Stark Industries', email: 'ap@stark.test', processor: 'braintree', processorCustomerId: 'bt_demo_stark', plan: 'enterprise', token: 'pm_demo_hard_decline', ended: true },
  ] as const;
  // A period that ended three hours ago, for the subscriptions whose renewal never came.
  const endedEnd = new Date(now.getTime() - 3 * HOUR);
  const endedStart = new Date(endedEnd.getTime() - 30 * DAY);
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
        currentPeriodStart: 'ended' in c ? endedStart : start,
        currentPeriodEnd: 'ended' in c ? endedEnd : end,
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
        // Inside the ended period for the subscriptions whose period ended.
        timestamp: new Date(now.getTime() - (7 * 24 - h) * HOUR - ('ended' in c ? 4 * HOUR : 0)),
      });
    }
  }
  events.push({ customer: 'umbrella', eventName: 'image_renders', value: 3, identifier: 'demo-umbrella-image-1' });
  for (let i = 0; i < 3; i++) events.push({ customer: 'acme', eventName: 'api_calls', value: 40 + i, identifier: `demo-acme-api-calls-${i}` });
  for (let i = 0; i < events.length; i += 1000) await ledger.reportUsageBatch(events.slice(i, i + 1000));

  const users: DemoCredentials['users'] = [];
  for (const role of ROLES) {
    const { user, password } = await createUser(prisma, { email: `${role}@meterdesk.local`, role });
    users.push({ email: user.email, role, password });
  }
  const { key } = await createApiKey(prisma, { name: 'demo' });
  return { apiKey: key, users };
}
