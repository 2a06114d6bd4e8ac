// A missing definition for the desk's tests (vitest and the browser journey), made through the domain: usage of an
// event name no meter defines, in a closed (not yet charged) window, a charged window and an open one, all on the
// `essential` plan. Each call uses its own event name (`renders_<tag>`), so parallel journeys on one database
// never see each other's inbox rows.
import { randomUUID } from 'node:crypto';
import { closeWindowNow } from '../../app/billing/windows/invoices';
import { orderIdFor } from '../../app/billing/windows/settlement';
import { openWindowNow } from '../../app/billing/windows/windows';
import { subscriber, type Services } from './desk-windows';

const DAY = 86_400_000;

export interface MissingDefinitionFixture {
  eventName: string;
  planId: string;
  /** Closed, invoiced with the `ai_tokens` line only, two events of `eventName` unmatched (1,500 units each). */
  blocked: { windowId: string; invoiceId: string; customerName: string; totalMinor: bigint };
  /** Charged (a sale was sent: settling, one try) with one unmatched event of `eventName`. */
  charged: { windowId: string; invoiceId: string; customerName: string; totalMinor: bigint };
  /** Open (current period), one `recorded` event of `eventName` (700 units) not yet classified. */
  open: { windowId: string; customerName: string; subscriptionId: string };
}

async function usage(s: Services, externalId: string, events: Array<{ eventName: string; value: number; at: Date }>) {
  const results = await s.ledger.reportUsageBatch(events.map((e) => ({ customer: externalId, eventName: e.eventName, value: e.value, timestamp: e.at })));
  for (const r of results) if (r.result === 'rejected') throw new Error(`fixture usage rejected: ${JSON.stringify(r.errors)}`);
}

async function closedWindow(s: Services, name: string, eventName: string, renders: number) {
  const now = Date.now();
  const [start, end] = [new Date(now - 12 * DAY), new Date(now - 2 * DAY)];
  const sub = await subscriber(s, name, start, end);
  const opened = await openWindowNow(s.pool, sub.subscriptionId, start, end);
  if (opened.status !== 'opened') throw new Error(`fixture window not opened: ${opened.status}`);
  await usage(s, sub.externalId, [
    { eventName: 'ai_tokens', value: 1000, at: new Date(now - 10 * DAY) },
    ...Array.from({ length: renders }, (_, i) => ({ eventName, value: 1500, at: new Date(now - (9 - i) * DAY) })),
  ]);
  const closed = await closeWindowNow(s.pool, opened.window.id);
  if (closed.status !== 'closed') throw new Error(`fixture window not closed: ${closed.status}`);
  // Settlement is not under test: drop the queued settle job so no worker (if any) charges these windows.
  await s.pool.query(`DELETE FROM graphile_worker.jobs WHERE key = $1`, [`braintree_settle:${opened.window.id}`]).catch(() => undefined);
  return { windowId: opened.window.id, invoiceId: closed.invoice.invoiceId, customerName: name, totalMinor: closed.invoice.totalMinor, planId: sub.planId };
}

export async function seedMissingDefinition(s: Services, tag = randomUUID().slice(0, 6)): Promise<MissingDefinitionFixture> {
  const eventName = `renders_${tag.toLowerCase().replaceAll(/[^a-z0-9]/g, '')}`;
  const blocked = await closedWindow(s, `Blocked Renders ${tag}`, eventName, 2);
  const charged = await closedWindow(s, `Charged Renders ${tag}`, eventName, 1);
  // What the settler leaves once the sale is sent: the invoice can no longer change.
  await s.pool.query(
    `INSERT INTO charge_attempts (id, window_id, order_id, amount_minor, currency, status, tries, last_sent_at, budget_tries, budget_started_at, updated_at)
     VALUES ($1, $2, $3, $4, 'usd', 'pending', 1, now(), 1, now(), now())`,
    [randomUUID(), charged.windowId, orderIdFor(charged.windowId), charged.totalMinor.toString()],
  );
  await s.pool.query(`UPDATE windows SET state = 'settling', updated_at = now() WHERE id = $1`, [charged.windowId]);

  const now = Date.now();
  const [start, end] = [new Date(now - 5 * DAY), new Date(now + 25 * DAY)];
  const openSub = await subscriber(s, `Open Renders ${tag}`, start, end);
  const opened = await openWindowNow(s.pool, openSub.subscriptionId, start, end);
  if (opened.status !== 'opened') throw new Error(`fixture window not opened: ${opened.status}`);
  await usage(s, openSub.externalId, [{ eventName, value: 700, at: new Date(now - DAY) }]);

  return {
    eventName,
    planId: blocked.planId,
    blocked: { windowId: blocked.windowId, invoiceId: blocked.invoiceId, customerName: blocked.customerName, totalMinor: blocked.totalMinor },
    charged: { windowId: charged.windowId, invoiceId: charged.invoiceId, customerName: charged.customerName, totalMinor: charged.totalMinor },
    open: { windowId: opened.window.id, customerName: `Open Renders ${tag}`, subscriptionId: openSub.subscriptionId },
  };
}
