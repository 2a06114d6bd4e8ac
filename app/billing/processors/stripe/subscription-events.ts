// Subscription snapshot events (`customer.subscription.*`): the subscription is upserted with the plan the plan rule
// finds (Stripe webhooks ADR); an older snapshot never overwrites a newer one already applied.
import type pg from 'pg';
import { z } from 'zod';
import { isRecord, NotApplicable, type StoredWebhook } from './webhook-types';

const STATUSES = {
  trialing: 'trialing',
  active: 'active',
  past_due: 'past_due',
  canceled: 'canceled',
  incomplete: 'incomplete',
  // Terminal on Stripe's side: the subscription never started and never will.
  incomplete_expired: 'canceled',
  unpaid: 'unpaid',
  paused: 'paused',
} as const;
type SubscriptionStatus = (typeof STATUSES)[keyof typeof STATUSES];

const metadata = z.record(z.string(), z.unknown()).nullish();
// Up to 9999-12-31T23:59:59Z: past it PostgreSQL's to_timestamp fails, and the job would be retried forever.
const epoch = z.number().int().nonnegative().max(253_402_300_799).nullish();
const subscriptionItem = z.object({
  current_period_start: epoch,
  current_period_end: epoch,
  price: z
    .looseObject({
      lookup_key: z.string().nullish(),
      metadata,
      product: z.union([z.string(), z.looseObject({ metadata })]).nullish(),
    })
    .nullish(),
});
const subscriptionObject = z.looseObject({
  object: z.literal('subscription'),
  id: z.string().min(1).max(255),
  customer: z.union([z.string().min(1), z.looseObject({ id: z.string().min(1) })]),
  status: z.string(),
  metadata,
  items: z.looseObject({ data: z.array(subscriptionItem) }).nullish(),
  // Before API 2025-03-31 the period lived on the subscription; still read when present.
  current_period_start: epoch,
  current_period_end: epoch,
  canceled_at: epoch,
  ended_at: epoch,
});
type SubscriptionObject = z.infer<typeof subscriptionObject>;

export async function applySubscriptionEvent(client: pg.ClientBase, stored: StoredWebhook, payload: Record<string, unknown>): Promise<string | null> {
  const data = isRecord(payload.data) ? payload.data : {};
  const parsed = subscriptionObject.safeParse(data.object);
  if (!parsed.success) throw new NotApplicable('malformed_event_data', `data.object is not a subscription: ${parsed.error.issues[0]?.path.join('.')} ${parsed.error.issues[0]?.message ?? ''}`);
  const sub = parsed.data;
  const eventCreated = typeof payload.created === 'number' ? payload.created : 0;

  // Stripe does not deliver in order: an older snapshot must not overwrite a newer one already applied.
  const newer = await client.query<{ processor_event_id: string }>(
    `SELECT processor_event_id FROM webhook_events
     WHERE processor = 'stripe' AND type LIKE 'customer.subscription.%' AND processed_at IS NOT NULL AND id <> $1
       AND payload->'data'->'object'->>'id' = $2
       -- jsonb comparison, not a cast: a row whose created is not a number must not make this query fail
       AND payload->'created' > to_jsonb($3::bigint)
     LIMIT 1`,
    [stored.id, sub.id, eventCreated],
  );
  if (newer.rows[0]) return `superseded: ${newer.rows[0].processor_event_id} (newer) was already applied; not applied`;

  const processorCustomerId = typeof sub.customer === 'string' ? sub.customer : sub.customer.id;
  const customer = await client.query<{ id: string }>(
    `SELECT id FROM customers WHERE processor = 'stripe' AND processor_customer_id = $1`,
    [processorCustomerId],
  );
  const customerId = customer.rows[0]?.id;
  if (!customerId) throw new NotApplicable('unknown_customer', `no Stripe customer ${processorCustomerId} in Meterdesk (subscription ${sub.id})`);

  const notes: string[] = [];
  const plan = await resolvePlan(client, sub);
  const period = plan.item ? itemPeriod(plan.item) : null;
  const chosen = period ?? firstItemPeriod(sub) ?? legacyPeriod(sub);
  if (!chosen) throw new NotApplicable('no_current_period', `subscription ${sub.id} has no current period on its items`);
  if (chosen.end <= chosen.start) throw new NotApplicable('invalid_period', `subscription ${sub.id} period ends before it starts`);

  const deleted = stored.type === 'customer.subscription.deleted';
  let status: SubscriptionStatus | null = deleted ? 'canceled' : (STATUSES[sub.status as keyof typeof STATUSES] ?? null);
  if (!status) notes.push(`unknown Stripe status "${sub.status}": status kept`);
  const canceledSec = status === 'canceled' ? (sub.canceled_at ?? sub.ended_at ?? (eventCreated || null)) : null;

  if (!plan.planId) {
    const existing = await client.query(`SELECT 1 FROM subscriptions WHERE processor = 'stripe' AND processor_subscription_id = $1`, [sub.id]);
    if (!existing.rowCount) {
      throw new NotApplicable('unknown_plan', `no Meterdesk plan for new subscription ${sub.id} (looked for: ${plan.looked.join(', ') || 'nothing to match'})`);
    }
  }

  const upsert = await client.query<{ id: string }>(
    `INSERT INTO subscriptions (id, customer_id, plan_id, processor, processor_subscription_id, status,
                                current_period_start, current_period_end, canceled_at, updated_at)
     VALUES (gen_random_uuid(), $1, $2::uuid, 'stripe', $3, COALESCE($4::subscription_status, 'incomplete'),
             to_timestamp($5), to_timestamp($6), to_timestamp($7), now())
     ON CONFLICT (processor, processor_subscription_id) DO UPDATE SET
       plan_id = COALESCE($2::uuid, subscriptions.plan_id),
       -- canceled is terminal at Stripe: nothing revives it
       status = CASE WHEN subscriptions.status = 'canceled' THEN subscriptions.status
                     ELSE COALESCE($4::subscription_status, subscriptions.status) END,
       current_period_start = EXCLUDED.current_period_start,
       current_period_end = EXCLUDED.current_period_end,
       canceled_at = CASE WHEN subscriptions.status = 'canceled' THEN subscriptions.canceled_at ELSE EXCLUDED.canceled_at END,
       updated_at = now()
     WHERE subscriptions.customer_id = EXCLUDED.customer_id
     RETURNING id`,
    [customerId, plan.planId, sub.id, status, chosen.start, chosen.end, canceledSec],
  );
  if (!upsert.rows[0]) throw new NotApplicable('subscription_conflict', `subscription ${sub.id} belongs to another customer in Meterdesk`);
  if (!plan.planId) notes.push(`no plan matched (${plan.looked.join(', ') || 'nothing to match'}): plan kept`);
  return notes.length > 0 ? notes.join('; ') : null;
}

type Item = z.infer<typeof subscriptionItem>;

/**
 * The plan rule (ADR): for each item in order, the price's `lookup_key`, then the price's `metadata.plan`, then
 * the product's `metadata.plan` (when the product is expanded); then the subscription's `metadata.plan`. The first
 * candidate that is a Meterdesk plan code wins, and that item's period is the subscription's period.
 */
async function resolvePlan(client: pg.ClientBase, sub: SubscriptionObject): Promise<{ planId: string | null; item: Item | null; looked: string[] }> {
  const candidates: Array<{ code: string; item: Item | null }> = [];
  for (const item of sub.items?.data ?? []) {
    const price = item.price;
    if (!price) continue;
    const product = typeof price.product === 'object' && price.product ? price.product : null;
    for (const code of [price.lookup_key, price.metadata?.plan, product?.metadata?.plan]) {
      if (typeof code === 'string' && code !== '') candidates.push({ code, item });
    }
  }
  if (typeof sub.metadata?.plan === 'string' && sub.metadata.plan !== '') candidates.push({ code: sub.metadata.plan, item: null });
  const looked = [...new Set(candidates.map((c) => c.code))];
  if (looked.length === 0) return { planId: null, item: null, looked };
  const plans = await client.query<{ id: string; code: string }>(`SELECT id, code FROM plans WHERE code = ANY($1::text[])`, [looked]);
  const byCode = new Map(plans.rows.map((p) => [p.code, p.id]));
  for (const c of candidates) {
    const planId = byCode.get(c.code);
    if (planId) return { planId, item: c.item, looked };
  }
  return { planId: null, item: null, looked };
}

function itemPeriod(item: Item): { start: number; end: number } | null {
  return item.current_period_start != null && item.current_period_end != null ? { start: item.current_period_start, end: item.current_period_end } : null;
}

function firstItemPeriod(sub: SubscriptionObject) {
  for (const item of sub.items?.data ?? []) {
    const p = itemPeriod(item);
    if (p) return p;
  }
  return null;
}

function legacyPeriod(sub: SubscriptionObject) {
  return sub.current_period_start != null && sub.current_period_end != null ? { start: sub.current_period_start, end: sub.current_period_end } : null;
}

