-- A duplicate identifier sent with another value, event name or customer than the event stored under it: the event
-- stays as first stored (as Stripe keeps the first), and what was sent again is kept here for the desk.
CREATE TABLE "meter_event_conflicts" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "event_id" UUID NOT NULL,
    "identifier" TEXT NOT NULL,
    "customer_id" UUID NOT NULL,
    "event_name" TEXT NOT NULL,
    "value" BIGINT NOT NULL,
    "occurred_at" TIMESTAMPTZ(3) NOT NULL,
    "differs" TEXT NOT NULL,
    "received_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "trace_id" TEXT,

    CONSTRAINT "meter_event_conflicts_pkey" PRIMARY KEY ("id")
);

CREATE INDEX "meter_event_conflicts_event_id_idx" ON "meter_event_conflicts"("event_id");
