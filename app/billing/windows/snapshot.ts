// The meter prices a window freezes when it opens.
import type { Queryable } from '../db';
import type { Aggregation, Rounding, SnapshotPrice } from './invoice-math';
import { canonicalUnitAmount } from './unit-price';

interface PriceRow {
  meter_price_id: string;
  meter_id: string;
  event_name: string;
  display_name: string;
  aggregation: Aggregation;
  unit_amount_decimal: string;
  per_units: string;
  rounding: Rounding;
  currency: string;
}

/**
 * The plan's price for each meter in force at `at` (the period start). A meter that had no price then but got one
 * by `asOf` (the moment of snapshotting: opening, or an operator's re-author) takes its first price: an operator
 * who adds a missing definition mid-period means it to bill that period.
 *
 * A window bills in one currency: the one most of these prices use (ties: alphabetical), or `currency` when given
 * (re-authoring keeps the window's). Prices in another currency are left out, so their events show up as
 * unmatched instead of being summed across currencies.
 */
export async function loadPriceSnapshot(
  db: Queryable,
  planId: string,
  at: Date,
  asOf: Date,
  opts: { currency?: string } = {},
): Promise<{ prices: SnapshotPrice[]; currency: string }> {
  const { rows } = await db.query<PriceRow>(
    `SELECT DISTINCT ON (mp.meter_id)
            mp.id AS meter_price_id, mp.meter_id, m.event_name, m.display_name, m.aggregation::text AS aggregation,
            mp.unit_amount_decimal::text AS unit_amount_decimal, mp.per_units::text AS per_units, mp.rounding::text AS rounding,
            lower(mp.currency) AS currency
     FROM meter_prices mp JOIN meters m ON m.id = mp.meter_id
     WHERE mp.plan_id = $1 AND mp.effective_from <= GREATEST($2::timestamptz, $3::timestamptz)
       AND (mp.effective_to IS NULL OR mp.effective_to > $2)
     ORDER BY mp.meter_id,
              (mp.effective_from <= $2) DESC,
              CASE WHEN mp.effective_from <= $2 THEN mp.effective_from END DESC NULLS LAST,
              mp.effective_from ASC`,
    [planId, at, asOf],
  );
  const counts = new Map<string, number>();
  for (const r of rows) counts.set(r.currency, (counts.get(r.currency) ?? 0) + 1);
  const currency =
    opts.currency?.toLowerCase() ??
    ([...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0]?.[0] ?? 'usd');
  const prices = rows
    .filter((r) => r.currency === currency)
    .map(
      (r): SnapshotPrice => ({
        meterId: r.meter_id,
        eventName: r.event_name,
        displayName: r.display_name,
        aggregation: r.aggregation,
        unitAmountDecimal: canonicalUnitAmount(r.unit_amount_decimal),
        perUnits: BigInt(r.per_units),
        rounding: r.rounding,
        currency: r.currency,
        meterPriceId: r.meter_price_id,
      }),
    )
    .sort((a, b) => a.eventName.localeCompare(b.eventName));
  return { prices, currency };
}
