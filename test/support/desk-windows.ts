// Windows, invoices and charge attempts for the desk's tests (vitest and the browser journeys), made through the
// domain: customers and subscriptions as rows, usage through the ledger, windows opened and closed (invoice
// authored) by app/billing/windows. The charge outcomes a simulator run would leave (exhausted after soft declines,
// a hard decline) are written as the settler writes them, since these tests are about the desk, not settlement.
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { PrismaClient } from '../../app/db/clients';
import type { Ledger } from '../../app/billing/ledger/ledger';
import { closeWindowNow } from '../../app/billing/windows/invoices';
import { orderIdFor } from '../../app/billing/windows/settlement';
import { openWindowNow } from '../../app/billing/windows/windows';

const DAY = 86_400_000;

export interface DeskWindowFixtures {
  /** A live subscription whose period ended two days ago with no window: a stale renewal. */
  stale: { subscriptionId: string; customerName: string };
  /** failed_exhausted after six soft declines (finance writes it off). */
  exhausted: { windowId: string; invoiceId: string; customerName: string };
  /** failed_exhausted by a hard decline (2004): settle again needs the explicit override. */
  hardDeclined: { windowId: string; invoiceId: string; customerName: string };
  /** closed, no sale sent: can be re-authored. */
  closed: { windowId: string; invoiceId: string; customerName: string };
}

export interface Services {
  prisma: PrismaClient;
  pool: pg.Pool;
  ledger: Ledger;
}

/** A Braintree customer with a default payment method and a live `essential` subscription for [start, end). */
export async function subscriber(s: Services, name: string, start: Date, end: Date) {
  const externalId = `${name.toLowerCase().replaceAll(/[^a-z0-9]+/g, '-')}-${randomUUID().slice(0, 8)}`;
  const customer = await s.prisma.customer.create({
    data: { externalId, name, processor: 'braintree', processorCustomerId: `bt_${externalId}`, defaultPaymentMethodToken: `tok_${externalId}` },
  });
  const plan = await s.prisma.plan.findUniqueOrThrow({ where: { code: 'essential' } });
  const sub = await s.prisma.subscription.create({
    data: {
      customerId: customer.id,
      planId: plan.id,
      processor: 'braintree',
      processorSubscriptionId: `bt_sub_${externalId}`,
      currentPeriodStart: start,
      currentPeriodEnd: end,
      status: 'active',
    },
  });
  return { externalId, customerId: customer.id, subscriptionId: sub.id, planId: plan.id };
}

async function usage(s: Services, externalId: string, at: Date[], value: number) {
  const results = await s.ledger.reportUsageBatch(at.map((t) => ({ customer: externalId, eventName: 'ai_tokens', value, timestamp: t })));
  for (const r of results) if (r.result === 'rejected') throw new Error(`fixture usage rejected: ${JSON.stringify(r.errors)}`);
}

/** A closed window with its invoice authored, over the period given (default: 12 to 2 days ago), usage inside it. */
export async function closedWindow(s: Services, name: string, value: number, period?: { start: Date; end: Date }) {
  const now = Date.now();
  const [start, end] = period ? [period.start, period.end] : [new Date(now - 12 * DAY), new Date(now - 2 * DAY)];
  const inside = (fraction: number) => new Date(start.getTime() + (end.getTime() - start.getTime()) * fraction);
  const sub = await subscriber(s, name, start, end);
  const opened = await openWindowNow(s.pool, sub.subscriptionId, start, end);
  if (opened.status !== 'opened') throw new Error(`fixture window not opened: ${opened.status}`);
  await usage(s, sub.externalId, [inside(0.2), inside(0.7)], value);
  const closed = await closeWindowNow(s.pool, opened.window.id);
  if (closed.status !== 'closed') throw new Error(`fixture window not closed: ${closed.status}`);
  // Settlement is not under test: drop the queued settle job so no worker (if any) charges these windows.
  await s.pool.query(`DELETE FROM graphile_worker.jobs WHERE key = $1`, [`braintree_settle:${opened.window.id}`]).catch(() => undefined);
  return { windowId: opened.window.id, invoiceId: closed.invoice.invoiceId, totalMinor: closed.invoice.totalMinor, customerName: name, externalId: sub.externalId };
}

async function exhaust(s: Services, windowId: string, amountMinor: bigint, o: { status: 'soft_declined' | 'hard_declined'; tries: number; code: string; message: string }) {
  const first = new Date(Date.now() - 8 * DAY);
  const last = new Date(Date.now() - DAY);
  await s.pool.query(
    `INSERT INTO charge_attempts (id, window_id, order_id, amount_minor, currency, status, tries, processor_status, response_code,
                                  first_failure_code, first_failure_message, first_failure_at, last_failure_code, last_failure_message, last_failure_at,
                                  last_sent_at, budget_tries, budget_started_at, updated_at)
     VALUES ($1, $2, $3, $4, 'usd', $5::charge_status, $6, 'processor_declined', $7, $7, $8, $9, $7, $8, $10, $10, $6, $9, $10)`,
    [randomUUID(), windowId, orderIdFor(windowId), amountMinor.toString(), o.status, o.tries, o.code, o.message, first, last],
  );
  await s.pool.query(`UPDATE windows SET state = 'failed_exhausted', updated_at = now() WHERE id = $1`, [windowId]);
}

export async function seedDeskWindowFixtures(s: Services, tag = randomUUID().slice(0, 6)): Promise<DeskWindowFixtures> {
  const now = Date.now();
  const stale = await subscriber(s, `Stale Co ${tag}`, new Date(now - 9 * DAY), new Date(now - 2 * DAY));
  await usage(s, stale.externalId, [new Date(now - 4 * DAY)], 2500);

  const exhausted = await closedWindow(s, `Exhausted Ltd ${tag}`, 3000);
  await exhaust(s, exhausted.windowId, exhausted.totalMinor, { status: 'soft_declined', tries: 6, code: '2001', message: 'Insufficient Funds' });
  const hard = await closedWindow(s, `Hard Decline Inc ${tag}`, 1000);
  await exhaust(s, hard.windowId, hard.totalMinor, { status: 'hard_declined', tries: 1, code: '2004', message: 'Expired Card' });
  const closed = await closedWindow(s, `Closed GmbH ${tag}`, 500);
  return {
    stale: { subscriptionId: stale.subscriptionId, customerName: `Stale Co ${tag}` },
    exhausted,
    hardDeclined: hard,
    closed,
  };
}
