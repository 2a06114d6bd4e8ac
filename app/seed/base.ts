// Base data every installation needs (roles, permissions, the default plans and meter). Idempotent.
import type { PrismaClient } from '../db/clients';
import { syncRolesAndPermissions } from '../billing/access/users';

/** PRODUCT.md's default plans on the `ai_tokens` meter, rounded up (Stripe's transform_quantity). */
export const DEFAULT_PLANS = [
  { code: 'essential', name: 'Essential', unitAmountDecimal: '5', perUnits: 1_000n },
  { code: 'business', name: 'Business', unitAmountDecimal: '50', perUnits: 15_000n },
  { code: 'enterprise', name: 'Enterprise', unitAmountDecimal: '500', perUnits: 200_000n },
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
          unitAmountDecimal: p.unitAmountDecimal,
          perUnits: p.perUnits,
          rounding: 'up',
          currency: 'usd',
          effectiveFrom: new Date('2020-01-01T00:00:00Z'),
        },
      });
    }
  }
}
