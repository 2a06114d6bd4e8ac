-- Alerts (ADR 036): rules as data, each firing stored once, notification channels and their deliveries.

CREATE TABLE "alert_rules" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "kind" TEXT NOT NULL,
    "params" JSONB NOT NULL,
    "enabled" BOOLEAN NOT NULL DEFAULT true,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "alert_rules_pkey" PRIMARY KEY ("id")
);

CREATE UNIQUE INDEX "alert_rules_name_key" ON "alert_rules"("name");

CREATE TABLE "alert_firings" (
    "id" UUID NOT NULL,
    "rule_id" UUID NOT NULL,
    "fired_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "values" JSONB NOT NULL,
    "summary" TEXT NOT NULL,
    "last_evaluated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "resolved_at" TIMESTAMPTZ(3),
    "resolved_values" JSONB,

    CONSTRAINT "alert_firings_pkey" PRIMARY KEY ("id")
);

CREATE INDEX "alert_firings_rule_id_fired_at_idx" ON "alert_firings"("rule_id", "fired_at");
CREATE INDEX "alert_firings_resolved_at_fired_at_idx" ON "alert_firings"("resolved_at", "fired_at");
-- At most one open firing per rule: a rule that stays firing is stored once (invisible to Prisma).
CREATE UNIQUE INDEX "alert_firings_one_open_per_rule" ON "alert_firings"("rule_id") WHERE "resolved_at" IS NULL;

ALTER TABLE "alert_firings" ADD CONSTRAINT "alert_firings_rule_id_fkey" FOREIGN KEY ("rule_id") REFERENCES "alert_rules"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

CREATE TABLE "alert_channels" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "kind" TEXT NOT NULL,
    "url" TEXT NOT NULL,
    "secret" TEXT,
    "secret_prefix" TEXT,
    "enabled" BOOLEAN NOT NULL DEFAULT true,
    "failing_since" TIMESTAMPTZ(3),
    "last_error" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "alert_channels_pkey" PRIMARY KEY ("id")
);

CREATE UNIQUE INDEX "alert_channels_name_key" ON "alert_channels"("name");

CREATE TABLE "alert_deliveries" (
    "id" UUID NOT NULL,
    "channel_id" UUID NOT NULL,
    "firing_id" UUID,
    "event" TEXT NOT NULL,
    "state" TEXT NOT NULL DEFAULT 'pending',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "last_status" INTEGER,
    "last_response" TEXT,
    "last_attempt_at" TIMESTAMPTZ(3),
    "delivered_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "alert_deliveries_pkey" PRIMARY KEY ("id")
);

CREATE INDEX "alert_deliveries_channel_id_created_at_idx" ON "alert_deliveries"("channel_id", "created_at");
CREATE INDEX "alert_deliveries_created_at_idx" ON "alert_deliveries"("created_at");
CREATE INDEX "alert_deliveries_firing_id_idx" ON "alert_deliveries"("firing_id");

ALTER TABLE "alert_deliveries" ADD CONSTRAINT "alert_deliveries_channel_id_fkey" FOREIGN KEY ("channel_id") REFERENCES "alert_channels"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
ALTER TABLE "alert_deliveries" ADD CONSTRAINT "alert_deliveries_firing_id_fkey" FOREIGN KEY ("firing_id") REFERENCES "alert_firings"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
