-- Sub-cent unit prices (ADR 030): a unit price is an exact decimal of the currency's minor unit with up to 12
-- places (Stripe's unit_amount_decimal), 19 integer digits like the bigint it replaces. Every bigint converts to
-- numeric exactly, so stored prices and invoice lines keep their values; line amounts stay integer minor units.
ALTER TABLE "meter_prices" RENAME COLUMN "unit_amount_minor" TO "unit_amount_decimal";
ALTER TABLE "meter_prices" ALTER COLUMN "unit_amount_decimal" TYPE NUMERIC(31,12) USING "unit_amount_decimal"::NUMERIC(31,12);
ALTER TABLE "meter_prices" DROP CONSTRAINT "meter_prices_amounts";
ALTER TABLE "meter_prices" ADD CONSTRAINT "meter_prices_amounts" CHECK ("unit_amount_decimal" >= 0 AND "per_units" >= 1);

ALTER TABLE "invoice_lines" RENAME COLUMN "unit_amount_minor" TO "unit_amount_decimal";
ALTER TABLE "invoice_lines" ALTER COLUMN "unit_amount_decimal" TYPE NUMERIC(31,12) USING "unit_amount_decimal"::NUMERIC(31,12);

-- Window snapshots (jsonb) name the price `unitAmountMinor`; rename the key in place, keeping its string value
-- and the entries' order. The parser still reads the old key (a process started before this migration may
-- snapshot a window meanwhile).
UPDATE "windows" w
   SET "price_snapshot" = (
         SELECT jsonb_agg(CASE WHEN e ? 'unitAmountMinor'
                               THEN (e - 'unitAmountMinor') || jsonb_build_object('unitAmountDecimal', e -> 'unitAmountMinor')
                               ELSE e END ORDER BY t.ord)
           FROM jsonb_array_elements(w."price_snapshot") WITH ORDINALITY AS t(e, ord))
 WHERE jsonb_typeof(w."price_snapshot") = 'array'
   AND EXISTS (SELECT 1 FROM jsonb_array_elements(w."price_snapshot") x WHERE x ? 'unitAmountMinor');
