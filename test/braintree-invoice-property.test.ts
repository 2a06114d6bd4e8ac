// Property test against real PostgreSQL: for random meters (aggregations), prices (amounts, units, rounding), events
// and late events across three consecutive windows, with an operator re-author in between, every invoice total equals
// the sum of its lines, every line equals the aggregation of exactly the events it names, no event is billed in two
// windows, and no event is left behind.
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Aggregation, Rounding } from '../app/billing/windows/invoice-math';
import { closeWindowNow, reauthorWindow } from '../app/billing/windows/invoices';
import { openWindowNow } from '../app/billing/windows/windows';
import { DAY, startBraintreeHarness, type BraintreeHarness } from './support/braintree';

let h: BraintreeHarness;
beforeAll(async () => {
  h = await startBraintreeHarness();
});
afterAll(() => h?.close());

const METERS = 4;
/** billed units × the stored numeric price, rounded half up (an oracle apart from unit-price.ts). */
function roundedAmount(units: bigint, decimal: string): bigint {
  const [whole, frac = ''] = decimal.split('.');
  const den = 10n ** BigInt(frac.length);
  const num = units * BigInt(whole! + frac);
  return num / den + (2n * (num % den) >= den ? 1n : 0n);
}
const meterArb = fc.record({
  aggregation: fc.constantFrom<Aggregation>('sum', 'count', 'max', 'last'),
  priced: fc.boolean(),
  unitAmountDecimal: fc.oneof(
    fc.bigInt({ min: 0n, max: 500n }).map(String),
    fc.bigInt({ min: 1n, max: 10n ** 9n }).map(String),
    // sub-cent prices (ADR 030): 0-12 places
    fc.tuple(fc.bigInt({ min: 0n, max: 1000n }), fc.integer({ min: 1, max: 12 }), fc.bigInt({ min: 0n, max: 10n ** 12n - 1n })).map(
      ([whole, places, frac]) => `${whole}.${(frac % 10n ** BigInt(places)).toString().padStart(places, '0')}`,
    ),
  ),
  perUnits: fc.oneof(fc.bigInt({ min: 1n, max: 10n }), fc.bigInt({ min: 1n, max: 100_000n })),
  rounding: fc.constantFrom<Rounding>('up', 'down'),
});
// Meter index METERS = an event name nobody defines.
const eventArb = fc.record({
  meter: fc.integer({ min: 0, max: METERS }),
  value: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0, max: 5000 }) }, { weight: 1, arbitrary: fc.constant(Number.MAX_SAFE_INTEGER) }),
  at: fc.double({ min: 0.001, max: 0.999, noNaN: true }),
});
const phaseArb = fc.array(eventArb, { maxLength: 12 });

let run = 0;

/** An oracle written apart from invoice-math.ts, so a bug there cannot hide behind itself. */
function expected(aggregation: Aggregation, events: Array<{ id: string; value: string; occurred_at: Date }>): bigint {
  if (events.length === 0) return 0n;
  if (aggregation === 'count') return BigInt(events.length);
  if (aggregation === 'sum') return events.reduce((s, e) => s + BigInt(e.value), 0n);
  if (aggregation === 'max') return events.map((e) => BigInt(e.value)).reduce((a, b) => (b > a ? b : a));
  const latest = [...events].sort((a, b) => a.occurred_at.getTime() - b.occurred_at.getTime() || (a.id < b.id ? -1 : 1)).at(-1)!;
  return BigInt(latest.value);
}
const units = (q: bigint, per: bigint, rounding: Rounding) => (rounding === 'up' ? (q + per - 1n) / per : q / per);

it('invoices equal the sum of their lines, lines equal their events, no event is billed twice or dropped', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(meterArb, { minLength: METERS, maxLength: METERS }),
      fc.tuple(phaseArb, phaseArb, phaseArb),
      fc.tuple(phaseArb, phaseArb),
      phaseArb,
      fc.boolean(),
      async (meters, [w1Events, w2Events, w3Events], [lateIntoW2, lateW2Period], lateIntoW3, reauthor) => {
        const r = ++run;
        const names = meters.map((_, i) => `prop_${r}_${i}`);
        const plan = await h.services.prisma.plan.create({ data: { code: `prop-${r}`, name: `Property ${r}` } });
        for (const [i, m] of meters.entries()) {
          await h.addMeter(names[i]!, m.aggregation);
          if (m.priced) await h.addPrice(plan.code, names[i]!, { unitAmountDecimal: m.unitAmountDecimal, perUnits: m.perUnits, rounding: m.rounding });
        }
        const now = Date.now();
        const bounds = [now - 30 * DAY, now - 20 * DAY, now - 10 * DAY, now - DAY].map((t) => new Date(t));
        const ext = `prop-${r}`;
        const sub = await h.addSubscriber({ externalId: ext, plan: plan.code, start: bounds[0]!, end: bounds[3]! });
        const ingest = (events: typeof w1Events, period: number) =>
          h.ingest(
            ext,
            events.map((e, i) => ({
              eventName: e.meter === METERS ? `prop_${r}_undefined` : names[e.meter]!,
              value: e.value,
              // Distinct times within the period (ties would be broken by id, which is fine too).
              at: new Date(bounds[period]!.getTime() + Math.floor(e.at * (bounds[period + 1]!.getTime() - bounds[period]!.getTime())) + i),
            })),
          );
        const open = async (i: number) => {
          const o = await openWindowNow(h.services.pool, sub.subscriptionId, bounds[i]!, bounds[i + 1]!);
          if (o.status !== 'opened') throw new Error(o.status);
          return o.window.id;
        };

        const all: string[] = [];
        const w1 = await open(0);
        all.push(...(await ingest(w1Events, 0)), ...(await ingest(w2Events, 1)));
        await closeWindowNow(h.services.pool, w1);
        const w2 = await open(1);
        all.push(...(await ingest(lateIntoW2, 0)));
        await closeWindowNow(h.services.pool, w2);
        if (reauthor) {
          // The operator prices every meter that had none, then re-authors the second window.
          for (const [i, m] of meters.entries()) if (!m.priced) await h.addPrice(plan.code, names[i]!, { unitAmountDecimal: '3', perUnits: 2n, rounding: 'up', effectiveFrom: new Date() });
          await reauthorWindow(h.services.pool, { windowId: w2, actor: { userId: null, label: 'property', role: 'operator' } });
        }
        const w3 = await open(2);
        all.push(...(await ingest(w3Events, 2)), ...(await ingest(lateIntoW3, 0)), ...(await ingest(lateW2Period, 1)));
        await closeWindowNow(h.services.pool, w3);

        const windows = [w1, w2, w3];
        const invoices = await h.rows<{ id: string; window_id: string; total_minor: string }>(
          `SELECT id, window_id, total_minor::text AS total_minor FROM invoices WHERE window_id = ANY($1::uuid[])`,
          [windows],
        );
        expect(invoices).toHaveLength(3);
        const lines = await h.rows<{ id: string; invoice_id: string; kind: string; event_name: string; event_count: number; quantity: string; billed_units: string; unit_amount_decimal: string; per_units: string; rounding: Rounding; amount_minor: string; carried_from_window_id: string | null }>(
          `SELECT id, invoice_id, kind::text AS kind, event_name, event_count, quantity::text AS quantity, billed_units::text AS billed_units,
                  unit_amount_decimal::text AS unit_amount_decimal, per_units::text AS per_units, rounding::text AS rounding, amount_minor::text AS amount_minor,
                  carried_from_window_id
           FROM invoice_lines WHERE invoice_id = ANY($1::uuid[])`,
          [invoices.map((i) => i.id)],
        );
        const events = await h.rows<{ id: string; event_name: string; value: string; occurred_at: Date; status: string; window_id: string | null; invoice_line_id: string | null; late: boolean }>(
          `SELECT id, event_name, value::text AS value, occurred_at, status::text AS status, window_id, invoice_line_id, late FROM meter_events WHERE subscription_id = $1`,
          [sub.subscriptionId],
        );
        expect(events).toHaveLength(all.length);

        // Total = sum of lines.
        for (const inv of invoices) {
          const sum = lines.filter((l) => l.invoice_id === inv.id).reduce((s, l) => s + BigInt(l.amount_minor), 0n);
          expect(BigInt(inv.total_minor)).toBe(sum);
        }
        // Each line = the aggregation of exactly the events naming it, all in the invoice's window.
        const windowOfInvoice = new Map(invoices.map((i) => [i.id, i.window_id]));
        for (const line of lines) {
          const named = events.filter((e) => e.invoice_line_id === line.id);
          expect(named).toHaveLength(line.event_count);
          const aggregation = meters[names.indexOf(line.event_name)]!.aggregation;
          const quantity = expected(aggregation, named);
          expect(BigInt(line.quantity)).toBe(quantity);
          expect(BigInt(line.billed_units)).toBe(units(quantity, BigInt(line.per_units), line.rounding));
          expect(BigInt(line.amount_minor)).toBe(roundedAmount(BigInt(line.billed_units), line.unit_amount_decimal));
          for (const e of named) {
            expect(e).toMatchObject({ status: 'matched', window_id: windowOfInvoice.get(line.invoice_id), event_name: line.event_name, late: line.kind === 'late_usage' });
          }
        }
        // No event billed twice, none left behind, lateness and origin as the periods say.
        const lineIds = new Set(lines.map((l) => l.id));
        const lineById = new Map(lines.map((l) => [l.id, l]));
        for (const e of events) {
          expect(['matched', 'unmatched', 'unusable']).toContain(e.status);
          expect(e.window_id).not.toBeNull();
          if (e.status === 'matched') expect(lineIds.has(e.invoice_line_id!)).toBe(true);
          else expect(e.invoice_line_id).toBeNull();
          const home = bounds.findIndex((b, i) => i < 3 && e.occurred_at >= b && e.occurred_at < bounds[i + 1]!);
          const billedIn = windows.indexOf(e.window_id!);
          expect(billedIn).toBeGreaterThanOrEqual(home);
          expect(e.late).toBe(billedIn > home);
          if (e.status === 'matched' && e.late) expect(lineById.get(e.invoice_line_id!)!.carried_from_window_id).toBe(windows[home]);
        }
      },
    ),
    { numRuns: 25 },
  );
}, 120_000);
