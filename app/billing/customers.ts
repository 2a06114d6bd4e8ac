// Customers and subscriptions as the API and the desk create them. Creation is idempotent: the same request
// again answers with what is stored; a request that contradicts what is stored is a conflict.
import { z } from 'zod';
import type { PrismaClient } from '../db/clients';
import { ConflictError, NotFoundError, ValidationError } from './errors';
import { isStorableText, STORABLE_TEXT_MESSAGE, typeError, zodFieldErrors } from './validation';

const CONTROL = /[\u0000-\u001f\u007f]/;
const key = (max: number) =>
  z
    .string({ error: typeError('must be a string') })
    .trim()
    .min(1, 'must not be empty')
    .max(max, `must be at most ${max} characters`)
    .refine((s) => !CONTROL.test(s), { message: 'must not contain control characters', abort: true })
    .refine(isStorableText, STORABLE_TEXT_MESSAGE);

const MIN_INSTANT_MS = Date.parse('0001-01-01T00:00:00Z');
const MAX_INSTANT_MS = Date.parse('9999-12-31T23:59:59.999Z');
const instant = z
  .union([z.string(), z.number()], { error: typeError('must be an ISO 8601 time or unix seconds') })
  .transform((v, ctx) => {
    const ms = typeof v === 'number' ? v * 1000 : /^\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:?\d{2}))?$/i.test(v) ? Date.parse(v) : NaN;
    if (!Number.isFinite(ms)) {
      ctx.addIssue({ code: 'custom', message: 'must be an ISO 8601 time or unix seconds' });
      return z.NEVER;
    }
    // What PostgreSQL (and a four-digit ISO year) can hold; anything outside would fail the write itself.
    if (ms < MIN_INSTANT_MS || ms > MAX_INSTANT_MS) {
      ctx.addIssue({ code: 'custom', message: 'must be between the years 0001 and 9999' });
      return z.NEVER;
    }
    return new Date(ms);
  });

export const customerInputSchema = z.strictObject({
  external_id: key(255),
  name: key(200).optional().nullable(),
  email: z.string().trim().toLowerCase().email('must be an email address').max(254).refine(isStorableText, STORABLE_TEXT_MESSAGE).optional().nullable(),
  processor: z.enum(['stripe', 'braintree'], { error: 'must be "stripe" or "braintree"' }),
  processor_customer_id: key(255),
  default_payment_method_token: key(255).optional().nullable(),
});

export const subscriptionInputSchema = z
  .strictObject({
    customer: key(255),
    plan: key(100),
    processor_subscription_id: key(255),
    current_period_start: instant,
    current_period_end: instant,
    status: z.enum(['trialing', 'active', 'past_due', 'canceled', 'incomplete', 'unpaid', 'paused']).optional(),
  })
  .refine((s) => s.current_period_end > s.current_period_start, {
    path: ['current_period_end'],
    message: 'must be after current_period_start',
  });

function isUniqueViolation(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: string }).code === 'P2002';
}

export async function createCustomer(prisma: PrismaClient, input: unknown) {
  const parsed = customerInputSchema.safeParse(input);
  if (!parsed.success) throw new ValidationError(zodFieldErrors(parsed.error));
  const d = parsed.data;
  const data = {
    externalId: d.external_id,
    name: d.name ?? null,
    email: d.email ?? null,
    processor: d.processor,
    processorCustomerId: d.processor_customer_id,
    defaultPaymentMethodToken: d.default_payment_method_token ?? null,
  };
  const compare = async () => {
    const existing = await prisma.customer.findUnique({ where: { externalId: data.externalId } });
    if (existing) {
      const differing = (Object.keys(data) as Array<keyof typeof data>).filter((k) => existing[k] !== data[k]);
      if (differing.length > 0) {
        throw new ConflictError(`customer ${data.externalId} exists with different data`, differing.map((f) => ({
          field: snake(f), code: 'conflict', message: `stored value differs`,
        })));
      }
      return { customer: existing, created: false };
    }
    const other = await prisma.customer.findUnique({
      where: { processor_processorCustomerId: { processor: data.processor, processorCustomerId: data.processorCustomerId } },
    });
    if (other) {
      throw new ConflictError('another customer has this processor customer id', [
        { field: 'processor_customer_id', code: 'conflict', message: `belongs to customer ${other.externalId}` },
      ]);
    }
    return null;
  };
  const found = await compare();
  if (found) return found;
  try {
    return { customer: await prisma.customer.create({ data }), created: true };
  } catch (e) {
    if (!isUniqueViolation(e)) throw e;
    const raced = await compare(); // a concurrent identical request won the insert
    if (raced) return raced;
    throw e;
  }
}

function snake(s: string): string {
  return s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** Finds a customer by external id or processor customer id (the rule of the ingest API). */
export async function findCustomer(prisma: PrismaClient, keyValue: string) {
  return (
    (await prisma.customer.findUnique({ where: { externalId: keyValue } })) ??
    (await prisma.customer.findFirst({ where: { processorCustomerId: keyValue } }))
  );
}

/**
 * Creates a subscription, or renews it: the same processor subscription id with a new period or plan updates it
 * (that is what a renewal is). Naming another customer's subscription is a conflict.
 */
export async function upsertSubscription(prisma: PrismaClient, input: unknown) {
  const parsed = subscriptionInputSchema.safeParse(input);
  if (!parsed.success) throw new ValidationError(zodFieldErrors(parsed.error));
  const d = parsed.data;
  const customer = await findCustomer(prisma, d.customer);
  if (!customer) throw new ValidationError([{ field: 'customer', code: 'not_found', message: 'no customer has this external id or processor customer id' }]);
  const plan = await prisma.plan.findUnique({ where: { code: d.plan } });
  if (!plan) throw new ValidationError([{ field: 'plan', code: 'not_found', message: 'no plan has this code' }]);
  const where = { processor_processorSubscriptionId: { processor: customer.processor, processorSubscriptionId: d.processor_subscription_id } };
  const data = {
    planId: plan.id,
    currentPeriodStart: d.current_period_start,
    currentPeriodEnd: d.current_period_end,
    status: d.status ?? ('active' as const),
  };
  for (let attempt = 0; attempt < 2; attempt++) {
    const existing = await prisma.subscription.findUnique({ where });
    if (existing) {
      if (existing.customerId !== customer.id) {
        throw new ConflictError('this processor subscription id belongs to another customer', [
          { field: 'processor_subscription_id', code: 'conflict', message: 'belongs to another customer' },
        ]);
      }
      const same =
        existing.planId === data.planId &&
        existing.status === data.status &&
        existing.currentPeriodStart.getTime() === data.currentPeriodStart.getTime() &&
        existing.currentPeriodEnd.getTime() === data.currentPeriodEnd.getTime();
      if (same) return { subscription: existing, customer, plan, created: false, updated: false };
      const subscription = await prisma.subscription.update({ where: { id: existing.id }, data });
      return { subscription, customer, plan, created: false, updated: true };
    }
    try {
      const subscription = await prisma.subscription.create({
        data: { ...data, customerId: customer.id, processor: customer.processor, processorSubscriptionId: d.processor_subscription_id },
      });
      return { subscription, customer, plan, created: true, updated: false };
    } catch (e) {
      if (!isUniqueViolation(e)) throw e;
    }
  }
  throw new NotFoundError('subscription', d.processor_subscription_id);
}
