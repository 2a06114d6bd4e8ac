-- Usage rollups (ADR 037): per 10-minute bucket of receipt, customer and event name, the count and the sum of the
-- values received, recomputed from the ledger by desk__rollup_events. Alert rules read them for usage anomalies and
-- usual hours, so a rule never scans the ledger. Each rule also keeps its last evaluation, for the desk and the gauges.

CREATE TABLE "usage_rollups" (
    "bucket_start" TIMESTAMPTZ(3) NOT NULL,
    "customer_id" UUID NOT NULL,
    "event_name" TEXT NOT NULL,
    "count" BIGINT NOT NULL DEFAULT 0,
    "value_sum" NUMERIC NOT NULL DEFAULT 0,

    CONSTRAINT "usage_rollups_pkey" PRIMARY KEY ("bucket_start","customer_id","event_name")
);

CREATE INDEX "usage_rollups_customer_id_bucket_start_idx" ON "usage_rollups"("customer_id", "bucket_start");
CREATE INDEX "usage_rollups_event_name_bucket_start_idx" ON "usage_rollups"("event_name", "bucket_start");

ALTER TABLE "alert_rules" ADD COLUMN "last_evaluated_at" TIMESTAMPTZ(3),
ADD COLUMN "last_firing" BOOLEAN,
ADD COLUMN "last_values" JSONB,
ADD COLUMN "last_summary" TEXT;
