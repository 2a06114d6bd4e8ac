// The arithmetic of a window's invoice, with no I/O: classification of events, aggregation per meter, rounding to
// billed units and pricing, all in BigInt. The database code (invoices.ts) and the upcoming-charges preview call
// the same functions, and the property tests exercise them directly. Decisions: docs/decisions (Braintree windows).
import { amountForUnits, canonicalUnitAmount, isUnitAmountDecimal } from './unit-price';

export type Aggregation = 'sum' | 'count' | 'max' | 'last';
export type Rounding = 'up' | 'down';

/** One meter price as frozen in a window's snapshot (unit counts as BigInt, the unit price as an exact decimal string). */
export interface SnapshotPrice {
  meterId: string;
  eventName: string;
  displayName: string;
  aggregation: Aggregation;
  /** Minor units per billed unit, up to 12 decimal places, canonical (unit-price.ts): `'0.015'`, `'5'`. */
  unitAmountDecimal: string;
  perUnits: bigint;
  rounding: Rounding;
  currency: string;
  /** The meter_prices row it came from (null for prices built by hand in tests). */
  meterPriceId: string | null;
}

/** A ledger event as billing sees it. */
export interface BillableEvent {
  id: string;
  eventName: string;
  value: bigint;
  occurredAt: Date;
}

/** Events occurring before the window, carried into it as one late-usage group per origin. */
export interface LateGroup {
  /** The invoiced window whose period the events occurred in; null when no window covered that time. */
  fromWindowId: string | null;
  /** Human label of the origin period for the line description, e.g. `2026-10-01 – 2026-11-01`. */
  fromLabel: string;
  /** The origin window's snapshot (null for a gap): tried first, then the carrying window's snapshot. */
  originSnapshot: readonly SnapshotPrice[] | null;
  events: readonly BillableEvent[];
}

export interface DraftLine {
  kind: 'usage' | 'late_usage';
  meterId: string;
  eventName: string;
  description: string;
  /** The events this line bills, in aggregation order ((occurredAt, id) ascending). */
  eventIds: string[];
  quantity: bigint;
  billedUnits: bigint;
  unitAmountDecimal: string;
  perUnits: bigint;
  rounding: Rounding;
  amountMinor: bigint;
  carriedFromWindowId: string | null;
  /** The price the line used (for the desk; lines of one invoice may price late usage from an older snapshot). */
  meterPriceId: string | null;
  late: boolean;
}

export type UnusableReason = 'invalid_value' | 'line_overflow' | 'invoice_overflow';

export interface DraftInvoice {
  lines: DraftLine[];
  totalMinor: bigint;
  /** Events whose name no snapshot prices: billed nowhere, surfaced as `metered_missing_definition`. */
  unmatched: Array<{ id: string; eventName: string; late: boolean; carriedFromWindowId: string | null }>;
  /** Events that cannot be billed without breaking the invoice (see UnusableReason). */
  unusable: Array<{ id: string; eventName: string; reason: UnusableReason; late: boolean; carriedFromWindowId: string | null }>;
}

/** The largest amount or quantity a line or an invoice may hold: PostgreSQL's bigint. */
export const MAX_MINOR = 2n ** 63n - 1n;
/** Event values are integers in [0, 2^53 - 1] (the ledger's rule, also a CHECK constraint). */
export const MAX_EVENT_VALUE = 2n ** 53n - 1n;

/** Order of aggregation and of `last`: usage time, then the time-ordered id (insertion order) for ties. */
export function compareEvents(a: BillableEvent, b: BillableEvent): number {
  const t = a.occurredAt.getTime() - b.occurredAt.getTime();
  if (t !== 0) return t;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** A running aggregation: add events one at a time in `compareEvents` order. */
export interface Aggregator {
  readonly quantity: bigint;
  /** The quantity this aggregator would have after `event`, without adding it. */
  peek(event: BillableEvent): bigint;
  add(event: BillableEvent): void;
}

export function aggregator(aggregation: Aggregation): Aggregator {
  let quantity = 0n;
  let count = 0;
  let lastEvent: BillableEvent | null = null;
  const next = (event: BillableEvent): bigint => {
    switch (aggregation) {
      case 'sum':
        return quantity + event.value;
      case 'count':
        return quantity + 1n;
      case 'max':
        return count === 0 || event.value > quantity ? event.value : quantity;
      case 'last':
        return lastEvent === null || compareEvents(event, lastEvent) >= 0 ? event.value : quantity;
    }
  };
  return {
    get quantity() {
      return quantity;
    },
    peek: next,
    add(event) {
      quantity = next(event);
      count += 1;
      if (aggregation === 'last' && (lastEvent === null || compareEvents(event, lastEvent) >= 0)) lastEvent = event;
    },
  };
}

/** The aggregation of a set of events (order-independent: `last` is the latest by `compareEvents`). */
export function aggregate(aggregation: Aggregation, events: readonly BillableEvent[]): bigint {
  const a = aggregator(aggregation);
  for (const e of [...events].sort(compareEvents)) a.add(e);
  return a.quantity;
}

/** Quantity divided into billed units of `perUnits`, rounded up or down (Stripe's transform_quantity). */
export function billedUnits(quantity: bigint, perUnits: bigint, rounding: Rounding): bigint {
  if (perUnits < 1n) throw new RangeError('perUnits must be at least 1');
  if (quantity < 0n) throw new RangeError('quantity must not be negative');
  const whole = quantity / perUnits;
  return rounding === 'up' && whole * perUnits !== quantity ? whole + 1n : whole;
}

/** Billed units × the decimal unit price, rounded once per line to an integer minor amount (unit-price.ts). */
export function lineAmount(quantity: bigint, price: Pick<SnapshotPrice, 'perUnits' | 'rounding' | 'unitAmountDecimal'>): { billedUnits: bigint; amountMinor: bigint } {
  const units = billedUnits(quantity, price.perUnits, price.rounding);
  return { billedUnits: units, amountMinor: amountForUnits(units, price.unitAmountDecimal) };
}

interface OpenLine {
  price: SnapshotPrice;
  kind: 'usage' | 'late_usage';
  carriedFromWindowId: string | null;
  fromLabel: string | null;
  agg: Aggregator;
  eventIds: string[];
  amountMinor: bigint;
}

/**
 * Builds a window's invoice from its own-period events and the late groups carried into it.
 * - An event is `matched` when its name has a price (own period: the window's snapshot; late: the origin window's
 *   snapshot, else the carrying window's), otherwise `unmatched`.
 * - Events are added in (occurredAt, id) order, own period first, then each late group; an event whose addition
 *   would push its line's quantity or amount, or the invoice total, past MAX_MINOR is `unusable` and left out, so
 *   every written number fits a bigint column and the sale amount is exact. A value outside [0, 2^53 - 1] (never
 *   stored by the ledger) is `unusable` too.
 * - One `usage` line per meter with events, one `late_usage` line per (origin window, meter); lines are ordered by
 *   kind, origin and event name so the same input always yields the same invoice.
 */
export function draftInvoice(input: {
  snapshot: readonly SnapshotPrice[];
  events: readonly BillableEvent[];
  late?: readonly LateGroup[];
  maxMinor?: bigint;
}): DraftInvoice {
  const max = input.maxMinor ?? MAX_MINOR;
  const own = new Map(input.snapshot.map((p) => [p.eventName, p]));
  const lines = new Map<string, OpenLine>();
  const result: DraftInvoice = { lines: [], totalMinor: 0n, unmatched: [], unusable: [] };
  let total = 0n;

  const place = (event: BillableEvent, price: SnapshotPrice | undefined, group: LateGroup | null) => {
    const late = group !== null;
    const carriedFromWindowId = group?.fromWindowId ?? null;
    if (!price) {
      result.unmatched.push({ id: event.id, eventName: event.eventName, late, carriedFromWindowId });
      return;
    }
    if (event.value < 0n || event.value > MAX_EVENT_VALUE) {
      result.unusable.push({ id: event.id, eventName: event.eventName, reason: 'invalid_value', late, carriedFromWindowId });
      return;
    }
    const key = late ? `late|${carriedFromWindowId ?? ''}|${price.eventName}` : `usage|${price.eventName}`;
    let line = lines.get(key);
    const agg = line?.agg ?? aggregator(price.aggregation);
    const quantity = agg.peek(event);
    const { amountMinor } = lineAmount(quantity, price);
    const newTotal = total - (line?.amountMinor ?? 0n) + amountMinor;
    if (quantity > max || amountMinor > max) {
      result.unusable.push({ id: event.id, eventName: event.eventName, reason: 'line_overflow', late, carriedFromWindowId });
      return;
    }
    if (newTotal > max) {
      result.unusable.push({ id: event.id, eventName: event.eventName, reason: 'invoice_overflow', late, carriedFromWindowId });
      return;
    }
    if (!line) {
      line = { price, kind: late ? 'late_usage' : 'usage', carriedFromWindowId, fromLabel: group?.fromLabel ?? null, agg, eventIds: [], amountMinor: 0n };
      lines.set(key, line);
    }
    agg.add(event);
    line.eventIds.push(event.id);
    line.amountMinor = amountMinor;
    total = newTotal;
  };

  for (const event of [...input.events].sort(compareEvents)) place(event, own.get(event.eventName), null);
  const groups = [...(input.late ?? [])].sort((a, b) => (a.fromWindowId ?? '').localeCompare(b.fromWindowId ?? ''));
  for (const group of groups) {
    const origin = new Map((group.originSnapshot ?? []).map((p) => [p.eventName, p]));
    for (const event of [...group.events].sort(compareEvents)) place(event, origin.get(event.eventName) ?? own.get(event.eventName), group);
  }

  const ordered = [...lines.values()].sort(
    (a, b) =>
      (a.kind === b.kind ? 0 : a.kind === 'usage' ? -1 : 1) ||
      (a.carriedFromWindowId ?? '').localeCompare(b.carriedFromWindowId ?? '') ||
      a.price.eventName.localeCompare(b.price.eventName),
  );
  for (const l of ordered) {
    const { billedUnits: units, amountMinor } = lineAmount(l.agg.quantity, l.price);
    result.lines.push({
      kind: l.kind,
      meterId: l.price.meterId,
      eventName: l.price.eventName,
      description: l.kind === 'usage' ? l.price.displayName : `Late usage: ${l.price.displayName} (${l.fromLabel ?? 'earlier usage'})`,
      eventIds: l.eventIds,
      quantity: l.agg.quantity,
      billedUnits: units,
      unitAmountDecimal: l.price.unitAmountDecimal,
      perUnits: l.price.perUnits,
      rounding: l.price.rounding,
      amountMinor,
      carriedFromWindowId: l.carriedFromWindowId,
      meterPriceId: l.price.meterPriceId,
      late: l.kind === 'late_usage',
    });
  }
  result.totalMinor = result.lines.reduce((sum, l) => sum + l.amountMinor, 0n);
  return result;
}

// ───────────────────────────── the snapshot as stored (windows.price_snapshot, jsonb) ─────────────────────────────

/** JSON form of a snapshot price: money and unit counts as decimal strings (JSON numbers lose precision). */
export interface StoredSnapshotPrice {
  meterId: string;
  eventName: string;
  displayName: string;
  aggregation: Aggregation;
  unitAmountDecimal: string;
  perUnits: string;
  rounding: Rounding;
  currency: string;
  meterPriceId: string | null;
}

export function toStoredSnapshot(prices: readonly SnapshotPrice[]): StoredSnapshotPrice[] {
  return prices.map((p) => ({ ...p, perUnits: p.perUnits.toString() }));
}

const AGGREGATIONS = new Set<Aggregation>(['sum', 'count', 'max', 'last']);

/**
 * Reads a stored snapshot; throws on a malformed one (it is written only by this module, so that is a bug). The
 * pre-ADR-030 key `unitAmountMinor` (an integer string) is still read: migration 20261207010000 rewrites stored
 * snapshots, but a process started before it may snapshot a window with the old key meanwhile.
 */
export function fromStoredSnapshot(value: unknown): SnapshotPrice[] {
  if (!Array.isArray(value)) throw new TypeError('price snapshot must be an array');
  return value.map((raw, i) => {
    const p = raw as Partial<StoredSnapshotPrice> & { unitAmountMinor?: unknown };
    const unit = p.unitAmountDecimal ?? p.unitAmountMinor ?? '0';
    if (
      typeof p.meterId !== 'string' ||
      typeof p.eventName !== 'string' ||
      !AGGREGATIONS.has(p.aggregation as Aggregation) ||
      typeof unit !== 'string' ||
      !isUnitAmountDecimal(unit)
    ) {
      throw new TypeError(`price snapshot entry ${i} is malformed`);
    }
    return {
      meterId: p.meterId,
      eventName: p.eventName,
      displayName: typeof p.displayName === 'string' ? p.displayName : p.eventName,
      aggregation: p.aggregation as Aggregation,
      unitAmountDecimal: canonicalUnitAmount(unit),
      perUnits: BigInt(p.perUnits ?? '1'),
      rounding: p.rounding === 'down' ? 'down' : 'up',
      currency: typeof p.currency === 'string' ? p.currency : 'usd',
      meterPriceId: typeof p.meterPriceId === 'string' ? p.meterPriceId : null,
    };
  });
}

/** Minor units as a decimal amount string for a currency (`1234` usd -> `12.34`; jpy has no decimals). */
export function formatMinor(amountMinor: bigint, currency: string): string {
  const exponent = currencyExponent(currency);
  const negative = amountMinor < 0n;
  const digits = (negative ? -amountMinor : amountMinor).toString().padStart(exponent + 1, '0');
  const whole = exponent === 0 ? digits : digits.slice(0, -exponent);
  const frac = exponent === 0 ? '' : `.${digits.slice(-exponent)}`;
  return `${negative ? '-' : ''}${whole}${frac}`;
}

/** A decimal amount string as minor units for a currency (`12.34` usd -> `1234`; places past the exponent dropped). */
export function parseMinor(amount: string, currency: string): bigint {
  const exponent = currencyExponent(currency);
  const [whole = '0', frac = ''] = amount.trim().split('.');
  return BigInt(whole) * 10n ** BigInt(exponent) + BigInt((frac + '0'.repeat(exponent)).slice(0, exponent) || '0');
}

// ISO 4217 minor-unit exponents that are not 2 (the common case).
const ZERO_DECIMAL = new Set(['bif', 'clp', 'djf', 'gnf', 'isk', 'jpy', 'kmf', 'krw', 'pyg', 'rwf', 'ugx', 'vnd', 'vuv', 'xaf', 'xof', 'xpf']);
const THREE_DECIMAL = new Set(['bhd', 'iqd', 'jod', 'kwd', 'lyd', 'omr', 'tnd']);

export function currencyExponent(currency: string): number {
  const c = currency.toLowerCase();
  return ZERO_DECIMAL.has(c) ? 0 : THREE_DECIMAL.has(c) ? 3 : 2;
}
