-- Braintree windows: settlement bookkeeping and the authoring query's index (hand-written; see docs/decisions).

-- When the latest sale request was sent: after an ambiguous outcome (or a worker killed mid-sale) the order is
-- searched only once Braintree's own gateway timeout has passed since then, so an in-flight sale is not missed.
ALTER TABLE "charge_attempts" ADD COLUMN "last_sent_at" TIMESTAMPTZ(3);
-- The automatic retry budget counts from here; an operator's "settle again" starts a fresh budget, while
-- `tries` and the first failure keep the whole history.
ALTER TABLE "charge_attempts" ADD COLUMN "budget_tries" INTEGER NOT NULL DEFAULT 0;
ALTER TABLE "charge_attempts" ADD COLUMN "budget_started_at" TIMESTAMPTZ(3);

-- Invoice authoring: a subscription's still-`recorded` events in a period, and those before it (late usage).
CREATE INDEX "meter_events_subscription_id_status_occurred_at_idx" ON "meter_events"("subscription_id", "status", "occurred_at");
