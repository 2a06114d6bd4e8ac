-- Ingest keeps what it looked up about a customer (the row and its subscriptions) in memory, and each commit checks,
-- in the same statement that inserts the events, that nothing it relied on has changed since (ADR 016). The check
-- is this counter: raised whenever a fact ingest uses about the customer changes (its keys or processor; a
-- subscription added, moved, renamed or changing status). Subscriptions and customers are never deleted (ADR 009).
ALTER TABLE "customers" ADD COLUMN "lookup_version" BIGINT NOT NULL DEFAULT 0;

CREATE FUNCTION meterdesk_customer_lookup_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.lookup_version := OLD.lookup_version + 1;
  RETURN NEW;
END;
$$;
CREATE TRIGGER customers_lookup_changed BEFORE UPDATE OF "external_id", "processor", "processor_customer_id" ON "customers"
  FOR EACH ROW
  WHEN (OLD."external_id" IS DISTINCT FROM NEW."external_id" OR OLD."processor" IS DISTINCT FROM NEW."processor"
        OR OLD."processor_customer_id" IS DISTINCT FROM NEW."processor_customer_id")
  EXECUTE FUNCTION meterdesk_customer_lookup_changed();

CREATE FUNCTION meterdesk_subscription_lookup_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE customers SET lookup_version = lookup_version + 1 WHERE id = NEW.customer_id;
  IF TG_OP = 'UPDATE' AND OLD.customer_id IS DISTINCT FROM NEW.customer_id THEN
    UPDATE customers SET lookup_version = lookup_version + 1 WHERE id = OLD.customer_id;
  END IF;
  RETURN NULL;
END;
$$;
CREATE TRIGGER subscriptions_lookup_added AFTER INSERT ON "subscriptions"
  FOR EACH ROW EXECUTE FUNCTION meterdesk_subscription_lookup_changed();
CREATE TRIGGER subscriptions_lookup_changed AFTER UPDATE OF "customer_id", "status", "processor_subscription_id" ON "subscriptions"
  FOR EACH ROW
  WHEN (OLD."customer_id" IS DISTINCT FROM NEW."customer_id" OR OLD."status" IS DISTINCT FROM NEW."status"
        OR OLD."processor_subscription_id" IS DISTINCT FROM NEW."processor_subscription_id")
  EXECUTE FUNCTION meterdesk_subscription_lookup_changed();
