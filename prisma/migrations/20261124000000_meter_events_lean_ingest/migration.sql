-- Ingest cost is dominated by what each inserted row maintains, not by the statement (docs/decisions/009).
-- Measured on the 2-core project VM, raw unnest INSERT of Stripe events, batches of 1,000:
--   eleven B-tree indexes + three foreign-key checks per row   12,400 rows/s
--   the indexes below (six B-trees a Stripe row touches)      16,400 rows/s
--   ... and no per-row foreign-key checks                     30,600 rows/s

-- 1. Indexes on columns that are null (or irrelevant) when an event is ingested become partial, so ingest and the
--    reporting settle (a non-HOT update) skip them. Every query that uses them carries the same predicate.
DROP INDEX "meter_events_subscription_id_occurred_at_idx";
DROP INDEX "meter_events_subscription_id_status_occurred_at_idx";
-- Braintree invoice authoring and the stale-renewal reconciler: a subscription's still-`recorded` events.
CREATE INDEX "meter_events_recorded_subscription_occurred_at_idx" ON "meter_events" ("subscription_id", "occurred_at") WHERE "status" = 'recorded';

DROP INDEX "meter_events_window_id_idx";
-- Foreign key; window detail lists its events (window_id = $1 implies NOT NULL, so the planner uses it).
CREATE INDEX "meter_events_window_id_idx" ON "meter_events" ("window_id") WHERE "window_id" IS NOT NULL;

DROP INDEX "meter_events_invoice_line_id_idx";
-- Foreign key; invoice line detail lists its events; invoice_lines deletes (re-authoring) check it.
CREATE INDEX "meter_events_invoice_line_id_idx" ON "meter_events" ("invoice_line_id") WHERE "invoice_line_id" IS NOT NULL;

DROP INDEX "meter_events_meter_id_idx";
-- The missing-definitions inbox: event names ingested while no meter defined them.
CREATE INDEX "meter_events_missing_definition_idx" ON "meter_events" ("event_name") WHERE "meter_id" IS NULL;

-- Time-range filter on usage time: occurred_at follows insertion order closely, so a BRIN index (a few pages for
-- millions of rows, no per-row maintenance) serves it.
DROP INDEX "meter_events_occurred_at_idx";
CREATE INDEX "meter_events_occurred_at_brin" ON "meter_events" USING brin ("occurred_at");

-- 2. The ledger's references to customers, subscriptions and meters are guaranteed by construction instead of a
--    per-row check: ingest takes all three ids from rows it has just read, and those rows can never be deleted or
--    re-keyed (triggers below), so an id once read stays valid. window_id and invoice_line_id keep their foreign
--    keys (null at ingest, so they cost nothing there).
ALTER TABLE "meter_events" DROP CONSTRAINT "meter_events_customer_id_fkey";
ALTER TABLE "meter_events" DROP CONSTRAINT "meter_events_subscription_id_fkey";
ALTER TABLE "meter_events" DROP CONSTRAINT "meter_events_meter_id_fkey";

CREATE FUNCTION meterdesk_refuse_ledger_parent_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% rows are referenced by the ledger and are never deleted or re-keyed (% refused)', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER customers_never_deleted BEFORE DELETE OR TRUNCATE ON "customers"
  FOR EACH STATEMENT EXECUTE FUNCTION meterdesk_refuse_ledger_parent_change();
CREATE TRIGGER customers_never_rekeyed BEFORE UPDATE OF "id" ON "customers"
  FOR EACH ROW WHEN (OLD."id" IS DISTINCT FROM NEW."id") EXECUTE FUNCTION meterdesk_refuse_ledger_parent_change();
CREATE TRIGGER subscriptions_never_deleted BEFORE DELETE OR TRUNCATE ON "subscriptions"
  FOR EACH STATEMENT EXECUTE FUNCTION meterdesk_refuse_ledger_parent_change();
CREATE TRIGGER subscriptions_never_rekeyed BEFORE UPDATE OF "id" ON "subscriptions"
  FOR EACH ROW WHEN (OLD."id" IS DISTINCT FROM NEW."id") EXECUTE FUNCTION meterdesk_refuse_ledger_parent_change();
CREATE TRIGGER meters_never_deleted BEFORE DELETE OR TRUNCATE ON "meters"
  FOR EACH STATEMENT EXECUTE FUNCTION meterdesk_refuse_ledger_parent_change();
CREATE TRIGGER meters_never_rekeyed BEFORE UPDATE OF "id" ON "meters"
  FOR EACH ROW WHEN (OLD."id" IS DISTINCT FROM NEW."id") EXECUTE FUNCTION meterdesk_refuse_ledger_parent_change();
