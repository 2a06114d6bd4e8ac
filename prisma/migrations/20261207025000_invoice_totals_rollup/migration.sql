-- ADR 031: per-currency invoice totals kept as a rollup by (currency, payment state, processor, period month),
-- maintained by triggers in the same transaction as every change to an invoice or its window's state, so the desk's
-- totals are a sum over a few dozen rows instead of an aggregate over every invoice joined to its window.

CREATE TABLE "invoice_totals" (
    "currency" CHAR(3) NOT NULL,
    "state" "window_state" NOT NULL,
    "processor" "processor" NOT NULL,
    "period_month" DATE NOT NULL,
    "invoices" INTEGER NOT NULL,
    "total_minor" NUMERIC(38, 0) NOT NULL, -- a sum of bigint totals can pass bigint (as sum(bigint) is numeric)

    CONSTRAINT "invoice_totals_pkey" PRIMARY KEY ("currency","state","processor","period_month")
);

-- Add (sign = 1) or remove (sign = -1) one invoice's amount from its rollup row. Rows that reach zero invoices are
-- deleted, so the table holds only (currency, state, processor, month) combinations that have invoices.
CREATE FUNCTION invoice_totals_apply(p_currency CHAR(3), p_state window_state, p_processor processor, p_period_end TIMESTAMPTZ, p_total BIGINT, p_sign INTEGER)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  v_month DATE := date_trunc('month', p_period_end AT TIME ZONE 'UTC')::date;
BEGIN
  INSERT INTO invoice_totals AS t (currency, state, processor, period_month, invoices, total_minor)
  VALUES (p_currency, p_state, p_processor, v_month, p_sign, p_sign * p_total)
  ON CONFLICT (currency, state, processor, period_month)
  DO UPDATE SET invoices = t.invoices + EXCLUDED.invoices, total_minor = t.total_minor + EXCLUDED.total_minor;
  IF p_sign < 0 THEN
    DELETE FROM invoice_totals
     WHERE currency = p_currency AND state = p_state AND processor = p_processor AND period_month = v_month AND invoices = 0;
  END IF;
END $$;

-- An invoice authored, re-authored (total changes) or deleted.
CREATE FUNCTION invoice_totals_on_invoice() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  w RECORD;
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    SELECT wi.state, wi.period_end, c.processor INTO w
      FROM windows wi JOIN customers c ON c.id = OLD.customer_id WHERE wi.id = OLD.window_id;
    PERFORM invoice_totals_apply(OLD.currency, w.state, w.processor, w.period_end, OLD.total_minor, -1);
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    SELECT wi.state, wi.period_end, c.processor INTO w
      FROM windows wi JOIN customers c ON c.id = NEW.customer_id WHERE wi.id = NEW.window_id;
    PERFORM invoice_totals_apply(NEW.currency, w.state, w.processor, w.period_end, NEW.total_minor, 1);
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER invoice_totals_on_invoice
AFTER INSERT OR DELETE OR UPDATE OF currency, total_minor, window_id, customer_id ON invoices
FOR EACH ROW EXECUTE FUNCTION invoice_totals_on_invoice();

-- A window's payment state (settle, payment failure, retry, write-off...) or period changes: move its invoice.
CREATE FUNCTION invoice_totals_on_window() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  inv RECORD;
BEGIN
  SELECT i.currency, i.total_minor, c.processor INTO inv
    FROM invoices i JOIN customers c ON c.id = i.customer_id WHERE i.window_id = NEW.id;
  IF FOUND THEN
    PERFORM invoice_totals_apply(inv.currency, OLD.state, inv.processor, OLD.period_end, inv.total_minor, -1);
    PERFORM invoice_totals_apply(inv.currency, NEW.state, inv.processor, NEW.period_end, inv.total_minor, 1);
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER invoice_totals_on_window
AFTER UPDATE OF state, period_end ON windows
FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.period_end IS DISTINCT FROM NEW.period_end)
EXECUTE FUNCTION invoice_totals_on_window();

-- Backfill from the invoices already there (a populated database).
INSERT INTO invoice_totals (currency, state, processor, period_month, invoices, total_minor)
SELECT i.currency, w.state, c.processor, date_trunc('month', w.period_end AT TIME ZONE 'UTC')::date, count(*)::int, sum(i.total_minor)::bigint
  FROM invoices i
  JOIN windows w ON w.id = i.window_id
  JOIN customers c ON c.id = i.customer_id
 GROUP BY 1, 2, 3, 4;
