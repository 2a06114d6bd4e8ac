// Sub-cent unit prices (ADR 030) end to end: a window priced at fractions of a cent closes to integer line amounts
// (each line rounded once, halves up, as Stripe does) and settles through the real braintree SDK against the
// simulator for exactly that many cents.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeWindowNow } from '../app/billing/windows/invoices';
import { orderIdFor } from '../app/billing/windows/settlement';
import { openWindowNow } from '../app/billing/windows/windows';
import { DAY, startBraintreeHarness, type BraintreeHarness } from './support/braintree';

let h: BraintreeHarness;
let n = 0;

beforeAll(async () => {
  h = await startBraintreeHarness();
});
afterAll(() => h?.close());

/** A new subscriber on `plan` with a closed window holding `events` (meter name, value). */
async function closedWindow(plan: string, events: Array<{ eventName: string; value: number }>) {
  const ext = `subcent-${++n}`;
  const start = new Date(Date.now() - 5 * DAY);
  const end = new Date(Date.now() - DAY);
  const s = await h.addSubscriber({ externalId: ext, plan, start, end });
  const w = await openWindowNow(h.services.pool, s.subscriptionId, start, end);
  if (w.status !== 'opened') throw new Error(w.status);
  await h.ingest(
    ext,
    events.map((e, i) => ({ ...e, at: new Date(Date.now() - 3 * DAY + i * 1000) })),
  );
  const closed = await closeWindowNow(h.services.pool, w.window.id);
  expect(closed.status).toBe('closed');
  return { windowId: w.window.id, orderId: orderIdFor(w.window.id) };
}

const lines = (windowId: string) =>
  h.rows<{ event_name: string; billed_units: string; unit_amount_decimal: string; amount_minor: string }>(
    `SELECT l.event_name, l.billed_units::text AS billed_units, l.unit_amount_decimal::text AS unit_amount_decimal, l.amount_minor::text AS amount_minor
       FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id WHERE i.window_id = $1 ORDER BY l.event_name`,
    [windowId],
  );
const paid = (windowId: string) => async () => (await h.windowState(windowId)) === 'paid';

describe('sub-cent unit prices', () => {
  it('charges 1,234,567 units at 0.015 cents each as 18,519 cents ($185.19) through the Braintree SDK', async () => {
    await h.addMeter('subcent_calls', 'sum');
    await h.addPrice('business', 'subcent_calls', { unitAmountDecimal: '0.015', perUnits: 1n });
    const w = await closedWindow('business', [
      { eventName: 'subcent_calls', value: 1_000_000 },
      { eventName: 'subcent_calls', value: 234_567 },
    ]);
    // 1,234,567 × 0.015 = 18,518.505 cents: rounded once, on the line, half up.
    expect(await lines(w.windowId)).toEqual([{ event_name: 'subcent_calls', billed_units: '1234567', unit_amount_decimal: '0.015000000000', amount_minor: '18519' }]);
    const [invoice] = await h.rows<{ total_minor: string }>(`SELECT total_minor::text AS total_minor FROM invoices WHERE window_id = $1`, [w.windowId]);
    expect(invoice!.total_minor).toBe('18519');

    await h.drain(paid(w.windowId));
    const sales = h.sim.sales({ orderId: w.orderId });
    expect(sales).toHaveLength(1);
    expect(sales[0]).toMatchObject({ amount: '185.19', status: 'submitted_for_settlement' });
    const [attempt] = await h.rows<{ amount_minor: string; status: string; transaction_id: string }>(
      `SELECT amount_minor::text AS amount_minor, status::text AS status, transaction_id FROM charge_attempts WHERE window_id = $1`,
      [w.windowId],
    );
    expect(attempt).toEqual({ amount_minor: '18519', status: 'succeeded', transaction_id: sales[0]!.id });
  });

  it('rounds each line on its own (two half cents bill two cents) and keeps a price with 12 places exact', async () => {
    await h.addMeter('subcent_half_a', 'count');
    await h.addMeter('subcent_half_b', 'count');
    await h.addMeter('subcent_tiny', 'sum');
    await h.addPrice('enterprise', 'subcent_half_a', { unitAmountDecimal: '0.5' });
    await h.addPrice('enterprise', 'subcent_half_b', { unitAmountDecimal: '0.5' });
    // All 12 places, billed per 1,000 units rounded down.
    await h.addPrice('enterprise', 'subcent_tiny', { unitAmountDecimal: '0.123456789012', perUnits: 1000n, rounding: 'down' });
    const w = await closedWindow('enterprise', [
      { eventName: 'subcent_half_a', value: 1 },
      { eventName: 'subcent_half_b', value: 1 },
      { eventName: 'subcent_tiny', value: 7_499_999 },
    ]);
    // subcent_tiny: 7,499 billed units × 0.123456789012 = 925.802460… cents → 926.
    expect(await lines(w.windowId)).toEqual([
      { event_name: 'subcent_half_a', billed_units: '1', unit_amount_decimal: '0.500000000000', amount_minor: '1' },
      { event_name: 'subcent_half_b', billed_units: '1', unit_amount_decimal: '0.500000000000', amount_minor: '1' },
      { event_name: 'subcent_tiny', billed_units: '7499', unit_amount_decimal: '0.123456789012', amount_minor: '926' },
    ]);
    await h.drain(paid(w.windowId));
    expect(h.sim.sales({ orderId: w.orderId }).map((s) => s.amount)).toEqual(['9.28']);
  });
});
