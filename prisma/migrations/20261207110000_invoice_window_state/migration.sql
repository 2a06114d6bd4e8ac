-- The invoices page at 1,000,000 windows (ADR 034, measured by `npm run bench -- scale`).
--
-- 1. Filtered by payment state, the page lists the newest invoices whose window is in that state. The state lives on
--    the window, so the list either walked every invoice newest first until 50 matched, or (ADR 031) looked up every
--    invoice of every window in the state and sorted them: 57,205 failed_exhausted windows at 10M events, 3.6 s. An
--    invoice now carries a copy of its window's state, kept by triggers in the transaction that changes it, and an
--    index (window_state, authored_at, id) serves the page's keyset order for any state.
-- 2. Filtered by period end, the page read windows through windows(state, period_end) or a scan: an index on
--    period_end alone.
ALTER TABLE "invoices" ADD COLUMN "window_state" "window_state";
UPDATE "invoices" i SET "window_state" = w."state" FROM "windows" w WHERE w."id" = i."window_id";
ALTER TABLE "invoices" ALTER COLUMN "window_state" SET NOT NULL;

-- An invoice takes its window's state when it is written (whatever the statement said).
CREATE FUNCTION invoices_window_state_on_invoice() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  SELECT w.state INTO NEW.window_state FROM windows w WHERE w.id = NEW.window_id;
  RETURN NEW;
END $$;

CREATE TRIGGER invoices_window_state_on_invoice
BEFORE INSERT OR UPDATE OF window_id, window_state ON invoices
FOR EACH ROW EXECUTE FUNCTION invoices_window_state_on_invoice();

-- A window's state changes (settle, payment failure, retry, write-off...): its invoice follows.
CREATE FUNCTION invoices_window_state_on_window() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE invoices SET window_state = NEW.state WHERE window_id = NEW.id;
  RETURN NULL;
END $$;

CREATE TRIGGER invoices_window_state_on_window
AFTER UPDATE OF state ON windows
FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
EXECUTE FUNCTION invoices_window_state_on_window();

CREATE INDEX "invoices_window_state_authored_at_id_idx" ON "invoices" ("window_state", "authored_at", "id");
CREATE INDEX "windows_period_end_idx" ON "windows" ("period_end");
