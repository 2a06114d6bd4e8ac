-- Invoice authoring moves every event of a window in one UPDATE, setting window_id and invoice_line_id. Their foreign
-- keys ran two row-level checks per event (a key-share lock on the window and on the line): 3.2 of the 9.2 ms a
-- 100-event window's UPDATE took (docs/decisions/013-window-refs-without-foreign-keys.md). As with customers,
-- subscriptions and meters (ADR 009), the references are guaranteed by construction instead: authoring writes ids of
-- the window it holds locked and of lines it inserted in the same transaction, and what those ids name is never
-- deleted or re-keyed while referenced (the triggers below).
ALTER TABLE "meter_events" DROP CONSTRAINT "meter_events_window_id_fkey";
ALTER TABLE "meter_events" DROP CONSTRAINT "meter_events_invoice_line_id_fkey";

-- Windows are never deleted (an invoice, a charge attempt and the ledger name them), nor re-keyed.
CREATE TRIGGER windows_never_deleted BEFORE DELETE OR TRUNCATE ON "windows"
  FOR EACH STATEMENT EXECUTE FUNCTION meterdesk_refuse_ledger_parent_change();
CREATE TRIGGER windows_never_rekeyed BEFORE UPDATE OF "id" ON "windows"
  FOR EACH ROW WHEN (OLD."id" IS DISTINCT FROM NEW."id") EXECUTE FUNCTION meterdesk_refuse_ledger_parent_change();

-- Invoice lines are deleted when a window is re-authored, after its events were released (invoice_line_id NULL);
-- a line that still names events may not go. Row-level, through meter_events_invoice_line_id_idx: re-authoring
-- deletes a handful of lines, never the hot path.
CREATE FUNCTION meterdesk_refuse_referenced_invoice_line() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    RAISE EXCEPTION 'invoice_lines are referenced by the ledger and are never truncated' USING ERRCODE = 'restrict_violation';
  END IF;
  IF EXISTS (SELECT 1 FROM meter_events WHERE invoice_line_id = OLD.id) THEN
    RAISE EXCEPTION 'invoice line % still bills events of the ledger (% refused)', OLD.id, TG_OP USING ERRCODE = 'restrict_violation';
  END IF;
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;
CREATE TRIGGER invoice_lines_referenced_kept BEFORE DELETE ON "invoice_lines"
  FOR EACH ROW EXECUTE FUNCTION meterdesk_refuse_referenced_invoice_line();
CREATE TRIGGER invoice_lines_referenced_never_rekeyed BEFORE UPDATE OF "id" ON "invoice_lines"
  FOR EACH ROW WHEN (OLD."id" IS DISTINCT FROM NEW."id") EXECUTE FUNCTION meterdesk_refuse_referenced_invoice_line();
CREATE TRIGGER invoice_lines_never_truncated BEFORE TRUNCATE ON "invoice_lines"
  FOR EACH STATEMENT EXECUTE FUNCTION meterdesk_refuse_referenced_invoice_line();
