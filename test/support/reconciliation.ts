// Braintree windows for reconciliation tests, on any test database: a customer vaulted in the Braintree simulator, a
// subscription, usage through the ledger, the window opened and closed (invoice authored) by app/billing/windows,
// and, when asked, settled through the real settlement (one Transaction.sale through the real SDK).
import { randomUUID } from 'node:crypto';
import type braintree from 'braintree';
import type pg from 'pg';
import type { PrismaClient } from '../../app/db/clients';
import type { Ledger } from '../../app/billing/ledger/ledger';
import type { BraintreeSimulator } from '../../simulators/braintree/simulator';
import { gatewayFor } from './braintree-gateway';
import type { ChargeProcessor } from '../../app/billing/processors/types';
import { closeWindowNow } from '../../app/billing/windows/invoices';
import { formatMinor } from '../../app/billing/windows/invoice-math';
import { orderIdFor, settleWindow } from '../../app/billing/windows/settlement';
import { openWindowNow } from '../../app/billing/windows/windows';

const DAY = 86_400_000;

interface Services {
  prisma: PrismaClient;
  pool: pg.Pool;
  ledger: Ledger;
}

export interface ReconWindow {
  windowId: string;
  orderId: string;
  customerId: string;
  customerName: string;
  totalMinor: bigint;
  token: string;
}

/** A closed window of a Braintree customer (Essential plan: $0.05 per 1,000 tokens, rounded up) with `tokens` of usage. */
export async function closedBraintreeWindow(s: Services, sim: BraintreeSimulator, name: string, tokens: number): Promise<ReconWindow> {
  const tag = `${name.toLowerCase().replaceAll(/[^a-z0-9]+/g, '-')}-${randomUUID().slice(0, 8)}`;
  const btCustomer = `bt_${tag}`;
  const token = `tok_${tag}`;
  sim.addCustomer(btCustomer);
  sim.addPaymentMethod(btCustomer, token, { makeDefault: true });
  const customer = await s.prisma.customer.create({
    data: { externalId: tag, name, processor: 'braintree', processorCustomerId: btCustomer, defaultPaymentMethodToken: token },
  });
  const plan = await s.prisma.plan.findUniqueOrThrow({ where: { code: 'essential' } });
  const now = Date.now();
  const [start, end] = [new Date(now - 12 * DAY), new Date(now - 2 * DAY)];
  const sub = await s.prisma.subscription.create({
    data: { customerId: customer.id, planId: plan.id, processor: 'braintree', processorSubscriptionId: `bt_sub_${tag}`, currentPeriodStart: start, currentPeriodEnd: end },
  });
  const opened = await openWindowNow(s.pool, sub.id, start, end);
  if (opened.status !== 'opened') throw new Error(`window not opened: ${opened.status}`);
  const usage = await s.ledger.reportUsageBatch([{ customer: tag, eventName: 'ai_tokens', value: tokens, timestamp: new Date(now - 5 * DAY) }]);
  if (usage[0]?.result === 'rejected') throw new Error(`usage rejected: ${JSON.stringify(usage[0].errors)}`);
  const closed = await closeWindowNow(s.pool, opened.window.id);
  if (closed.status !== 'closed') throw new Error(`window not closed: ${closed.status}`);
  // The test settles (or plants) on its own terms: no queued settle job may charge it behind its back.
  await s.pool.query(`DELETE FROM graphile_worker.jobs WHERE key = $1`, [`braintree_settle:${opened.window.id}`]).catch(() => undefined);
  return { windowId: opened.window.id, orderId: orderIdFor(opened.window.id), customerId: customer.id, customerName: name, totalMinor: BigInt(closed.invoice.totalMinor), token };
}

/** Settles the window through the real settlement: one sale through the SDK; the window ends `paid`. */
export async function settleForReal(s: Services, processor: ChargeProcessor, w: ReconWindow): Promise<void> {
  const r = await settleWindow(s.pool, w.windowId, { processor });
  if (r.outcome !== 'paid') throw new Error(`settlement did not pay: ${JSON.stringify(r)}`);
}

/** The ledger says paid, with a succeeded charge, but no sale was ever sent (a planted drift). */
export async function markPaidWithoutSale(pool: pg.Pool, w: ReconWindow): Promise<void> {
  await pool.query(
    `INSERT INTO charge_attempts (id, window_id, order_id, amount_minor, currency, status, tries, transaction_id, processor_status, updated_at)
     VALUES (gen_random_uuid(), $1, $2, $3, 'usd', 'succeeded', 1, 'tx_never_made', 'submitted_for_settlement', now() - interval '1 hour')`,
    [w.windowId, w.orderId, w.totalMinor.toString()],
  );
  await pool.query(`UPDATE windows SET state = 'paid', paid_at = now() - interval '1 hour' WHERE id = $1`, [w.windowId]);
}

/** A sale made straight at the gateway with the real SDK (as a second, stray charge would be). */
export async function saleAtGateway(sim: BraintreeSimulator, w: ReconWindow, amountMinor = w.totalMinor): Promise<braintree.Transaction> {
  const result = await gatewayFor(sim.gatewayTarget).transaction.sale({
    amount: formatMinor(amountMinor, 'usd'),
    orderId: w.orderId,
    paymentMethodToken: w.token,
    options: { submitForSettlement: true },
  });
  if (!result.success) throw new Error(`sale refused: ${result.message}`);
  return result.transaction;
}

export async function voidAtGateway(sim: BraintreeSimulator, transactionId: string): Promise<void> {
  const result = await gatewayFor(sim.gatewayTarget).transaction.void(transactionId);
  if (!result.success) throw new Error(`void refused: ${result.message}`);
}
