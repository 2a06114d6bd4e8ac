-- The events page at 10,000,000 events (ADR 034, measured by `npm run bench -- scale`).
--
-- 1. The failure summary narrowed by customer or meter ("failed events of this customer, newest first") walked all
--    failed events of the ledger (BitmapAnd of the status index with the customer's): two partial indexes over
--    failed events only, newest first within a customer and within an event name.
-- 2. A usage-time range read the BRIN index on occurred_at, which stops being selective once new rows fill free
--    space in old pages (fillfactor 50 leaves it, ADR 006; vacuum returns it to the free space map): each range's
--    summary then spans from its oldest row to now. A B-tree on occurred_at is exact whatever the physical order;
--    its inserts land at the right edge (usage time follows receipt), so it stays cheap for ingest.
--
-- Each is created on the partitioned table, which builds it on every partition. On a large ledger, build each
-- partition's index first with CREATE INDEX CONCURRENTLY under the same definition: this statement then attaches
-- those instead of building (PostgreSQL attaches an equivalent existing index), and holds its locks only briefly.
CREATE INDEX "meter_events_failed_customer_id_id_idx" ON "meter_events" ("customer_id", "id") WHERE "status" = 'failed';
CREATE INDEX "meter_events_failed_event_name_id_idx" ON "meter_events" ("event_name", "id") WHERE "status" = 'failed';
CREATE INDEX "meter_events_occurred_at_idx" ON "meter_events" ("occurred_at");
DROP INDEX "meter_events_occurred_at_brin";
