// Unit and property tests of the invoice arithmetic (no database).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  MAX_EVENT_VALUE,
  MAX_MINOR,
  aggregate,
  billedUnits,
  draftInvoice,
  formatMinor,
  fromStoredSnapshot,
  toStoredSnapshot,
  type Aggregation,
  type BillableEvent,
  type SnapshotPrice,
} from './invoice-math';
import { amountForUnits, canonicalUnitAmount, isUnitAmountDecimal, scaledUnitAmount, unitAmountFromScaled } from './unit-price';

const T0 = Date.UTC(2026, 9, 1);
const ev = (id: string, value: bigint | number, atMs = 0, eventName = 'ai_tokens'): BillableEvent => ({ id, eventName, value: BigInt(value), occurredAt: new Date(T0 + atMs) });
const price = (eventName: string, over: Partial<SnapshotPrice> = {}): SnapshotPrice => ({
  meterId: `m-${eventName}`,
  eventName,
  displayName: eventName,
  aggregation: 'sum',
  unitAmountDecimal: '5',
  perUnits: 1000n,
  rounding: 'up',
  currency: 'usd',
  meterPriceId: null,
  ...over,
});

describe('aggregation and rounding', () => {
  it('aggregates sum, count, max and last (latest usage time, then id)', () => {
    const events = [ev('b', 7, 10), ev('a', 3, 10), ev('c', 5, 5)];
    expect(aggregate('sum', events)).toBe(15n);
    expect(aggregate('count', events)).toBe(3n);
    expect(aggregate('max', events)).toBe(7n);
    expect(aggregate('last', events)).toBe(7n); // b and a share the time; b has the greater id
    expect(aggregate('sum', [])).toBe(0n);
    expect(aggregate('max', [ev('z', 0)])).toBe(0n);
  });

  it('rounds billed units up or down (transform_quantity)', () => {
    expect(billedUnits(0n, 1000n, 'up')).toBe(0n);
    expect(billedUnits(1n, 1000n, 'up')).toBe(1n);
    expect(billedUnits(1000n, 1000n, 'up')).toBe(1n);
    expect(billedUnits(1001n, 1000n, 'up')).toBe(2n);
    expect(billedUnits(1999n, 1000n, 'down')).toBe(1n);
    expect(() => billedUnits(1n, 0n, 'up')).toThrow(RangeError);
  });

  it('prices the seed plans as PRODUCT.md says ($0.05 per 1,000 rounded up)', () => {
    const draft = draftInvoice({ snapshot: [price('ai_tokens')], events: [ev('1', 1250), ev('2', 1000, 1)] });
    expect(draft.lines).toHaveLength(1);
    expect(draft.lines[0]).toMatchObject({ quantity: 2250n, billedUnits: 3n, amountMinor: 15n, eventIds: ['1', '2'] });
    expect(draft.totalMinor).toBe(15n);
  });

  it('formats minor units per currency exponent', () => {
    expect(formatMinor(1234n, 'usd')).toBe('12.34');
    expect(formatMinor(5n, 'USD')).toBe('0.05');
    expect(formatMinor(1234n, 'jpy')).toBe('1234');
    expect(formatMinor(1234n, 'kwd')).toBe('1.234');
  });

  it('round-trips a snapshot through its JSON form without losing precision', () => {
    const p = [price('a', { unitAmountDecimal: MAX_MINOR.toString(), perUnits: 2n ** 60n, aggregation: 'last', rounding: 'down' })];
    expect(fromStoredSnapshot(JSON.parse(JSON.stringify(toStoredSnapshot(p))))).toEqual(p);
  });
});

describe('classification', () => {
  it('leaves events without a price unmatched and bills the rest', () => {
    const draft = draftInvoice({ snapshot: [price('ai_tokens')], events: [ev('1', 10), ev('2', 3, 0, 'image_renders')] });
    expect(draft.unmatched).toEqual([{ id: '2', eventName: 'image_renders', late: false, carriedFromWindowId: null }]);
    expect(draft.lines.map((l) => l.eventIds)).toEqual([['1']]);
  });

  it('marks as unusable the events that would overflow a line or the invoice, keeping the others', () => {
    const expensive = price('gpu_seconds', { unitAmountDecimal: '1000000', perUnits: 1n });
    const draft = draftInvoice({
      snapshot: [expensive, price('ai_tokens', { unitAmountDecimal: '1', perUnits: 1n })],
      events: [ev('small', 10, 0, 'gpu_seconds'), ev('huge', MAX_EVENT_VALUE, 1, 'gpu_seconds'), ev('after', 5, 2, 'gpu_seconds')],
    });
    expect(draft.unusable).toEqual([{ id: 'huge', eventName: 'gpu_seconds', reason: 'line_overflow', late: false, carriedFromWindowId: null }]);
    expect(draft.lines[0]).toMatchObject({ eventIds: ['small', 'after'], quantity: 15n, amountMinor: 15_000_000n });

    // Two lines each under the limit whose sum is not: the one that tips the total over is refused.
    const limit = 100n;
    const d2 = draftInvoice({
      snapshot: [price('a', { unitAmountDecimal: '1', perUnits: 1n }), price('b', { unitAmountDecimal: '1', perUnits: 1n })],
      events: [ev('x', 60, 0, 'a'), ev('y', 60, 1, 'b'), ev('z', 40, 2, 'b')],
      maxMinor: limit,
    });
    expect(d2.unusable.map((u) => [u.id, u.reason])).toEqual([['y', 'invoice_overflow']]);
    expect(d2.totalMinor).toBe(100n);
  });

  it('carries late events as labelled late-usage lines priced at their origin snapshot, else the window’s', () => {
    const draft = draftInvoice({
      snapshot: [price('ai_tokens', { unitAmountDecimal: '10', perUnits: 1n }), price('new_meter', { unitAmountDecimal: '2', perUnits: 1n })],
      events: [ev('own', 1)],
      late: [
        {
          fromWindowId: 'w-prev',
          fromLabel: '2026-09-01 – 2026-10-01',
          originSnapshot: [price('ai_tokens', { unitAmountDecimal: '7', perUnits: 1n })],
          events: [ev('late1', 3, -5), ev('late2', 4, -4, 'new_meter'), ev('late3', 1, -3, 'nowhere')],
        },
      ],
    });
    expect(draft.lines.map((l) => [l.kind, l.eventName, l.amountMinor, l.carriedFromWindowId])).toEqual([
      ['usage', 'ai_tokens', 10n, null],
      ['late_usage', 'ai_tokens', 21n, 'w-prev'],
      ['late_usage', 'new_meter', 8n, 'w-prev'],
    ]);
    expect(draft.lines[1]!.description).toBe('Late usage: ai_tokens (2026-09-01 – 2026-10-01)');
    expect(draft.unmatched).toEqual([{ id: 'late3', eventName: 'nowhere', late: true, carriedFromWindowId: 'w-prev' }]);
  });
});

// ───────────────────────────── properties ─────────────────────────────

const NAMES = ['a', 'b', 'c', 'd'] as const;
/** Decimal prices of 0-12 places, including sub-cent ones like 0.015 and trailing zeros. */
const decimalArb = fc
  .tuple(fc.oneof(fc.constant(0n), fc.bigInt({ min: 0n, max: 10n ** 6n })), fc.integer({ min: 0, max: 12 }), fc.bigInt({ min: 0n, max: 10n ** 12n - 1n }))
  .map(([whole, places, frac]) => (places === 0 ? whole.toString() : `${whole}.${(frac % 10n ** BigInt(places)).toString().padStart(places, '0')}`));
const aggregationArb = fc.constantFrom<Aggregation>('sum', 'count', 'max', 'last');
const priceArb = (eventName: string) =>
  fc.record({
    aggregation: aggregationArb,
    unitAmountDecimal: fc.oneof(
      fc.bigInt({ min: 0n, max: 1000n }).map(String),
      fc.bigInt({ min: 0n, max: 10n ** 9n }).map(String),
      decimalArb,
    ),
    perUnits: fc.oneof(fc.bigInt({ min: 1n, max: 20n }), fc.bigInt({ min: 1n, max: 10n ** 6n })),
    rounding: fc.constantFrom<'up' | 'down'>('up', 'down'),
  }).map((p) => price(eventName, p));
const snapshotArb = fc.subarray([...NAMES]).chain((names) => fc.tuple(...names.map(priceArb)));
const valueArb = fc.oneof(fc.bigInt({ min: 0n, max: 100n }), fc.bigInt({ min: 0n, max: MAX_EVENT_VALUE }));
const eventsArb = (prefix: string) =>
  fc.array(fc.record({ name: fc.constantFrom(...NAMES, 'zz'), value: valueArb, at: fc.integer({ min: 0, max: 50 }) }), { maxLength: 40 }).map((list) =>
    list.map((e, i) => ev(`${prefix}${String(i).padStart(3, '0')}`, e.value, e.at, e.name)),
  );

/** An oracle written apart from the module under test. */
function oracle(aggregation: Aggregation, events: BillableEvent[]): bigint {
  if (events.length === 0) return 0n;
  if (aggregation === 'count') return BigInt(events.length);
  if (aggregation === 'sum') return events.reduce((s, e) => s + e.value, 0n);
  if (aggregation === 'max') return events.map((e) => e.value).reduce((a, b) => (b > a ? b : a));
  return [...events].sort((a, b) => a.occurredAt.getTime() - b.occurredAt.getTime() || (a.id < b.id ? -1 : 1)).at(-1)!.value;
}
/** units × decimal as a fraction over 10^places, rounded half up: written apart from unit-price.ts. */
function oracleAmount(units: bigint, decimal: string): bigint {
  const [whole, frac = ''] = decimal.split('.');
  const den = 10n ** BigInt(frac.length);
  const num = units * BigInt(whole! + frac);
  return num / den + (2n * (num % den) >= den ? 1n : 0n);
}
const oracleUnits = (q: bigint, per: bigint, rounding: 'up' | 'down') => (rounding === 'up' ? (q + per - 1n) / per : q / per);

describe('properties', () => {
  it('total = sum of lines; each line = aggregation of exactly its events; every event classified once', () => {
    fc.assert(
      fc.property(snapshotArb, snapshotArb, eventsArb('own'), eventsArb('late'), fc.boolean(), (snapshot, origin, own, lateEvents, smallLimit) => {
        const maxMinor = smallLimit ? 10n ** 12n : MAX_MINOR;
        const draft = draftInvoice({
          snapshot,
          events: own,
          late: lateEvents.length ? [{ fromWindowId: 'w0', fromLabel: 'p0', originSnapshot: origin, events: lateEvents }] : [],
          maxMinor,
        });
        const all = new Map([...own, ...lateEvents].map((e) => [e.id, e]));
        expect(draft.totalMinor).toBe(draft.lines.reduce((s, l) => s + l.amountMinor, 0n));
        expect(draft.totalMinor <= maxMinor).toBe(true);
        const seen = new Set<string>();
        for (const line of draft.lines) {
          const named = line.eventIds.map((id) => all.get(id)!);
          const p = (line.late ? (origin.find((x) => x.eventName === line.eventName) ?? snapshot.find((x) => x.eventName === line.eventName)) : snapshot.find((x) => x.eventName === line.eventName))!;
          expect(line.quantity).toBe(oracle(p.aggregation, named));
          expect(line.billedUnits).toBe(oracleUnits(line.quantity, p.perUnits, p.rounding));
          expect(line.amountMinor).toBe(oracleAmount(line.billedUnits, p.unitAmountDecimal));
          expect(line.amountMinor <= maxMinor).toBe(true);
          for (const e of named) {
            expect(e.eventName).toBe(line.eventName);
            expect(seen.has(e.id)).toBe(false);
            seen.add(e.id);
          }
        }
        for (const u of [...draft.unmatched, ...draft.unusable]) {
          expect(seen.has(u.id)).toBe(false);
          seen.add(u.id);
        }
        expect(seen.size).toBe(all.size);
        for (const u of draft.unmatched) {
          const known = u.late ? [...origin, ...snapshot] : snapshot;
          expect(known.some((p) => p.eventName === u.eventName)).toBe(false);
        }
      }),
      { numRuns: 400 },
    );
  });

  it('does not depend on the order the events are given in', () => {
    fc.assert(
      fc.property(snapshotArb, eventsArb('e'), fc.integer(), (snapshot, events, seed) => {
        const shuffled = [...events].sort((x, y) => ((x.id.charCodeAt(2) * seed) % 7) - ((y.id.charCodeAt(2) * seed) % 7));
        expect(draftInvoice({ snapshot, events: shuffled })).toEqual(draftInvoice({ snapshot, events }));
      }),
      { numRuns: 200 },
    );
  });
});

describe('sub-cent unit prices (ADR 030)', () => {
  it('multiplies exactly and rounds each line once, halves up, as Stripe does', () => {
    expect(amountForUnits(30n, '0.05')).toBe(2n); // Stripe's example: 1.5 cents → 2
    expect(amountForUnits(1_234_567n, '0.015')).toBe(18_519n); // 18,518.505 cents
    expect(amountForUnits(29n, '0.05')).toBe(1n); // 1.45 → 1
    expect(amountForUnits(1n, '0.000000000001')).toBe(0n);
    expect(amountForUnits(500_000_000_000n, '0.000000000001')).toBe(1n); // exactly one half
    expect(amountForUnits(7n, '5')).toBe(35n);
    const draft = draftInvoice({ snapshot: [price('ai_tokens', { unitAmountDecimal: '0.015', perUnits: 1n })], events: [ev('1', 1_000_000), ev('2', 234_567, 1)] });
    expect(draft.lines[0]).toMatchObject({ billedUnits: 1_234_567n, unitAmountDecimal: '0.015', amountMinor: 18_519n });
  });

  it('accepts at most 19 integer digits and 12 places, nothing signed, exponential or blank', () => {
    for (const ok of ['0', '5', '0.015', '0.000000000001', '9999999999999999999.999999999999']) expect(isUnitAmountDecimal(ok)).toBe(true);
    for (const bad of ['', '-1', '1e3', '0.0000000000001', '10000000000000000000', '.5', '5.', ' 5', '+5', 'NaN']) expect(isUnitAmountDecimal(bad)).toBe(false);
    expect(() => scaledUnitAmount('1e3')).toThrow(RangeError);
    expect(canonicalUnitAmount('0.015000000000')).toBe('0.015');
    expect(canonicalUnitAmount('0005.000000000000')).toBe('5');
  });

  it('reads a snapshot stored before ADR 030 (integer unitAmountMinor) as the same decimal price', () => {
    const legacy = [{ meterId: 'm', eventName: 'a', displayName: 'A', aggregation: 'sum', unitAmountMinor: '50', perUnits: '1000', rounding: 'up', currency: 'usd', meterPriceId: null }];
    expect(fromStoredSnapshot(legacy)[0]).toMatchObject({ unitAmountDecimal: '50', perUnits: 1000n });
    expect(() => fromStoredSnapshot([{ ...legacy[0], unitAmountMinor: undefined, unitAmountDecimal: '1e3' }])).toThrow(TypeError);
  });

  it('property: a price of k/10^12 bills round(units × k / 10^12), and an integer price bills units × price exactly', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 10n ** 24n }), fc.bigInt({ min: 0n, max: MAX_EVENT_VALUE }), (k, units) => {
        const decimal = unitAmountFromScaled(k);
        expect(scaledUnitAmount(decimal)).toBe(k);
        const exact = units * k;
        const scale = 10n ** 12n;
        const amount = amountForUnits(units, decimal);
        // within half a minor unit of the exact product, halves going up
        expect(2n * (amount * scale - exact) <= scale).toBe(true);
        expect(2n * (exact - amount * scale) < scale).toBe(true);
        const whole = k / scale;
        expect(amountForUnits(units, whole.toString())).toBe(units * whole);
      }),
      { numRuns: 500 },
    );
  });

  it('property: trailing zeros change nothing; more units or a higher price never bill less', () => {
    fc.assert(
      fc.property(decimalArb, decimalArb, fc.bigInt({ min: 0n, max: 10n ** 9n }), fc.bigInt({ min: 0n, max: 10n ** 9n }), (a, b, u, v) => {
        const padded = a.includes('.') ? `${a}0` : `${a}.0`;
        if (padded.split('.')[1]!.length <= 12) expect(amountForUnits(u, padded)).toBe(amountForUnits(u, a));
        const [lo, hi] = scaledUnitAmount(a) <= scaledUnitAmount(b) ? [a, b] : [b, a];
        const [few, many] = u <= v ? [u, v] : [v, u];
        expect(amountForUnits(few, lo) <= amountForUnits(many, lo)).toBe(true);
        expect(amountForUnits(few, lo) <= amountForUnits(few, hi)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});
