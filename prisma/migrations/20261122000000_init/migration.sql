-- CreateSchema
CREATE SCHEMA IF NOT EXISTS "public";

-- CreateEnum
CREATE TYPE "processor" AS ENUM ('stripe', 'braintree');

-- CreateEnum
CREATE TYPE "subscription_status" AS ENUM ('trialing', 'active', 'past_due', 'canceled', 'incomplete', 'unpaid', 'paused');

-- CreateEnum
CREATE TYPE "aggregation" AS ENUM ('sum', 'count', 'max', 'last');

-- CreateEnum
CREATE TYPE "rounding" AS ENUM ('up', 'down');

-- CreateEnum
CREATE TYPE "meter_event_status" AS ENUM ('pending', 'reported', 'failed', 'recorded', 'matched', 'unmatched', 'unusable');

-- CreateEnum
CREATE TYPE "error_source" AS ENUM ('sync', 'reconciler', 'webhook', 'operator');

-- CreateEnum
CREATE TYPE "attempt_outcome" AS ENUM ('reported', 'duplicate', 'rejected', 'rate_limited', 'transient', 'ambiguous');

-- CreateEnum
CREATE TYPE "window_state" AS ENUM ('open', 'closed', 'settling', 'paid', 'retry_scheduled', 'failed_exhausted', 'awaiting_payment_method', 'written_off');

-- CreateEnum
CREATE TYPE "invoice_line_kind" AS ENUM ('usage', 'late_usage');

-- CreateEnum
CREATE TYPE "charge_status" AS ENUM ('pending', 'succeeded', 'soft_declined', 'hard_declined', 'gateway_rejected', 'error', 'ambiguous', 'written_off');

-- CreateTable
CREATE TABLE "customers" (
    "id" UUID NOT NULL,
    "external_id" TEXT NOT NULL,
    "name" TEXT,
    "email" TEXT,
    "processor" "processor" NOT NULL,
    "processor_customer_id" TEXT NOT NULL,
    "default_payment_method_token" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "customers_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "plans" (
    "id" UUID NOT NULL,
    "code" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "plans_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "subscriptions" (
    "id" UUID NOT NULL,
    "customer_id" UUID NOT NULL,
    "plan_id" UUID NOT NULL,
    "processor" "processor" NOT NULL,
    "processor_subscription_id" TEXT NOT NULL,
    "status" "subscription_status" NOT NULL DEFAULT 'active',
    "current_period_start" TIMESTAMPTZ(3) NOT NULL,
    "current_period_end" TIMESTAMPTZ(3) NOT NULL,
    "canceled_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "subscriptions_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "meters" (
    "id" UUID NOT NULL,
    "event_name" TEXT NOT NULL,
    "display_name" TEXT NOT NULL,
    "aggregation" "aggregation" NOT NULL DEFAULT 'sum',
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "meters_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "meter_prices" (
    "id" UUID NOT NULL,
    "plan_id" UUID NOT NULL,
    "meter_id" UUID NOT NULL,
    "unit_amount_minor" BIGINT NOT NULL,
    "per_units" BIGINT NOT NULL DEFAULT 1,
    "rounding" "rounding" NOT NULL DEFAULT 'up',
    "currency" CHAR(3) NOT NULL,
    "effective_from" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "effective_to" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "meter_prices_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "meter_events" (
    "id" UUID NOT NULL,
    "identifier" TEXT NOT NULL,
    "customer_id" UUID NOT NULL,
    "subscription_id" UUID,
    "event_name" TEXT NOT NULL,
    "meter_id" UUID,
    "value" BIGINT NOT NULL DEFAULT 1,
    "occurred_at" TIMESTAMPTZ(3) NOT NULL,
    "received_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "properties" JSONB,
    "processor" "processor" NOT NULL,
    "status" "meter_event_status" NOT NULL,
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "claimed_at" TIMESTAMPTZ(3),
    "first_attempt_at" TIMESTAMPTZ(3),
    "reported_at" TIMESTAMPTZ(3),
    "last_error_code" TEXT,
    "last_error_message" TEXT,
    "last_error_source" "error_source",
    "attention_reason" TEXT,
    "trace_id" TEXT,
    "window_id" UUID,
    "invoice_line_id" UUID,
    "late" BOOLEAN NOT NULL DEFAULT false,

    CONSTRAINT "meter_events_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "event_attempts" (
    "id" UUID NOT NULL,
    "meter_event_id" UUID NOT NULL,
    "started_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "duration_ms" INTEGER,
    "source" "error_source" NOT NULL,
    "outcome" "attempt_outcome" NOT NULL,
    "http_status" INTEGER,
    "error_code" TEXT,
    "error_message" TEXT,
    "response" JSONB,
    "trace_id" TEXT,

    CONSTRAINT "event_attempts_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "windows" (
    "id" UUID NOT NULL,
    "subscription_id" UUID NOT NULL,
    "customer_id" UUID NOT NULL,
    "period_start" TIMESTAMPTZ(3) NOT NULL,
    "period_end" TIMESTAMPTZ(3) NOT NULL,
    "state" "window_state" NOT NULL DEFAULT 'open',
    "price_snapshot" JSONB NOT NULL,
    "currency" CHAR(3) NOT NULL,
    "stale_repaired" BOOLEAN NOT NULL DEFAULT false,
    "closed_at" TIMESTAMPTZ(3),
    "paid_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "windows_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "invoices" (
    "id" UUID NOT NULL,
    "window_id" UUID NOT NULL,
    "customer_id" UUID NOT NULL,
    "subscription_id" UUID NOT NULL,
    "currency" CHAR(3) NOT NULL,
    "total_minor" BIGINT NOT NULL,
    "revision" INTEGER NOT NULL DEFAULT 1,
    "authored_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "invoices_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "invoice_lines" (
    "id" UUID NOT NULL,
    "invoice_id" UUID NOT NULL,
    "kind" "invoice_line_kind" NOT NULL DEFAULT 'usage',
    "meter_id" UUID NOT NULL,
    "event_name" TEXT NOT NULL,
    "description" TEXT NOT NULL,
    "event_count" INTEGER NOT NULL,
    "quantity" BIGINT NOT NULL,
    "billed_units" BIGINT NOT NULL,
    "unit_amount_minor" BIGINT NOT NULL,
    "per_units" BIGINT NOT NULL,
    "rounding" "rounding" NOT NULL,
    "amount_minor" BIGINT NOT NULL,
    "carried_from_window_id" UUID,

    CONSTRAINT "invoice_lines_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "charge_attempts" (
    "id" UUID NOT NULL,
    "window_id" UUID NOT NULL,
    "order_id" TEXT NOT NULL,
    "amount_minor" BIGINT NOT NULL,
    "currency" CHAR(3) NOT NULL,
    "status" "charge_status" NOT NULL DEFAULT 'pending',
    "tries" INTEGER NOT NULL DEFAULT 0,
    "transaction_id" TEXT,
    "processor_status" TEXT,
    "response_code" TEXT,
    "first_failure_code" TEXT,
    "first_failure_message" TEXT,
    "first_failure_at" TIMESTAMPTZ(3),
    "last_failure_code" TEXT,
    "last_failure_message" TEXT,
    "last_failure_at" TIMESTAMPTZ(3),
    "next_retry_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "charge_attempts_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "ops_events" (
    "id" UUID NOT NULL,
    "type" TEXT NOT NULL,
    "occurred_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "processor" "processor",
    "source" TEXT,
    "subject_type" TEXT,
    "subject_id" TEXT,
    "dedupe_key" TEXT,
    "metadata" JSONB,
    "resolved_at" TIMESTAMPTZ(3),
    "resolved_by" UUID,

    CONSTRAINT "ops_events_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "webhook_events" (
    "id" UUID NOT NULL,
    "processor" "processor" NOT NULL,
    "processor_event_id" TEXT NOT NULL,
    "type" TEXT NOT NULL,
    "payload" JSONB NOT NULL,
    "received_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "processed_at" TIMESTAMPTZ(3),
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "last_error" TEXT,

    CONSTRAINT "webhook_events_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "event_rollups" (
    "bucket_start" TIMESTAMPTZ(3) NOT NULL,
    "processor" "processor" NOT NULL,
    "outcome" TEXT NOT NULL,
    "count" BIGINT NOT NULL DEFAULT 0,

    CONSTRAINT "event_rollups_pkey" PRIMARY KEY ("bucket_start","processor","outcome")
);

-- CreateTable
CREATE TABLE "users" (
    "id" UUID NOT NULL,
    "email" TEXT NOT NULL,
    "name" TEXT,
    "password_hash" TEXT NOT NULL,
    "role_id" UUID NOT NULL,
    "disabled_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "users_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "roles" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "description" TEXT,

    CONSTRAINT "roles_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "permissions" (
    "id" UUID NOT NULL,
    "action" TEXT NOT NULL,
    "entity" TEXT NOT NULL,
    "access" TEXT NOT NULL,
    "description" TEXT,

    CONSTRAINT "permissions_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "role_permissions" (
    "role_id" UUID NOT NULL,
    "permission_id" UUID NOT NULL,

    CONSTRAINT "role_permissions_pkey" PRIMARY KEY ("role_id","permission_id")
);

-- CreateTable
CREATE TABLE "sessions" (
    "id" TEXT NOT NULL,
    "user_id" UUID NOT NULL,
    "expires_at" TIMESTAMPTZ(3) NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "ip" TEXT,
    "user_agent" TEXT,

    CONSTRAINT "sessions_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "login_attempts" (
    "id" BIGSERIAL NOT NULL,
    "email" TEXT NOT NULL,
    "ip" TEXT,
    "succeeded" BOOLEAN NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "login_attempts_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "api_keys" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "prefix" TEXT NOT NULL,
    "key_hash" TEXT NOT NULL,
    "created_by_id" UUID,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_used_at" TIMESTAMPTZ(3),
    "revoked_at" TIMESTAMPTZ(3),

    CONSTRAINT "api_keys_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "audit_log" (
    "id" BIGSERIAL NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "actor_user_id" UUID,
    "actor_label" TEXT NOT NULL,
    "actor_role" TEXT,
    "action" TEXT NOT NULL,
    "subject_type" TEXT NOT NULL,
    "subject_id" TEXT,
    "reason" TEXT,
    "before" JSONB,
    "after" JSONB,

    CONSTRAINT "audit_log_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "customers_external_id_key" ON "customers"("external_id");

-- CreateIndex
CREATE INDEX "customers_email_idx" ON "customers"("email");

-- CreateIndex
CREATE UNIQUE INDEX "customers_processor_processor_customer_id_key" ON "customers"("processor", "processor_customer_id");

-- CreateIndex
CREATE UNIQUE INDEX "plans_code_key" ON "plans"("code");

-- CreateIndex
CREATE INDEX "subscriptions_customer_id_status_idx" ON "subscriptions"("customer_id", "status");

-- CreateIndex
CREATE INDEX "subscriptions_plan_id_idx" ON "subscriptions"("plan_id");

-- CreateIndex
CREATE INDEX "subscriptions_current_period_end_idx" ON "subscriptions"("current_period_end");

-- CreateIndex
CREATE UNIQUE INDEX "subscriptions_processor_processor_subscription_id_key" ON "subscriptions"("processor", "processor_subscription_id");

-- CreateIndex
CREATE UNIQUE INDEX "meters_event_name_key" ON "meters"("event_name");

-- CreateIndex
CREATE INDEX "meter_prices_meter_id_idx" ON "meter_prices"("meter_id");

-- CreateIndex
CREATE UNIQUE INDEX "meter_prices_plan_id_meter_id_effective_from_key" ON "meter_prices"("plan_id", "meter_id", "effective_from");

-- CreateIndex
CREATE UNIQUE INDEX "meter_events_identifier_key" ON "meter_events"("identifier");

-- CreateIndex
CREATE INDEX "meter_events_status_id_idx" ON "meter_events"("status", "id");

-- CreateIndex
CREATE INDEX "meter_events_customer_id_id_idx" ON "meter_events"("customer_id", "id");

-- CreateIndex
CREATE INDEX "meter_events_event_name_id_idx" ON "meter_events"("event_name", "id");

-- CreateIndex
CREATE INDEX "meter_events_subscription_id_occurred_at_idx" ON "meter_events"("subscription_id", "occurred_at");

-- CreateIndex
CREATE INDEX "meter_events_occurred_at_idx" ON "meter_events"("occurred_at");

-- CreateIndex
CREATE INDEX "meter_events_window_id_idx" ON "meter_events"("window_id");

-- CreateIndex
CREATE INDEX "meter_events_invoice_line_id_idx" ON "meter_events"("invoice_line_id");

-- CreateIndex
CREATE INDEX "meter_events_meter_id_idx" ON "meter_events"("meter_id");

-- CreateIndex
CREATE INDEX "event_attempts_meter_event_id_started_at_idx" ON "event_attempts"("meter_event_id", "started_at");

-- CreateIndex
CREATE INDEX "windows_state_period_end_idx" ON "windows"("state", "period_end");

-- CreateIndex
CREATE INDEX "windows_customer_id_period_end_idx" ON "windows"("customer_id", "period_end");

-- CreateIndex
CREATE UNIQUE INDEX "windows_subscription_id_period_start_period_end_key" ON "windows"("subscription_id", "period_start", "period_end");

-- CreateIndex
CREATE UNIQUE INDEX "invoices_window_id_key" ON "invoices"("window_id");

-- CreateIndex
CREATE INDEX "invoices_customer_id_authored_at_idx" ON "invoices"("customer_id", "authored_at");

-- CreateIndex
CREATE INDEX "invoices_subscription_id_idx" ON "invoices"("subscription_id");

-- CreateIndex
CREATE INDEX "invoices_authored_at_idx" ON "invoices"("authored_at");

-- CreateIndex
CREATE INDEX "invoice_lines_invoice_id_idx" ON "invoice_lines"("invoice_id");

-- CreateIndex
CREATE INDEX "invoice_lines_meter_id_idx" ON "invoice_lines"("meter_id");

-- CreateIndex
CREATE INDEX "invoice_lines_carried_from_window_id_idx" ON "invoice_lines"("carried_from_window_id");

-- CreateIndex
CREATE UNIQUE INDEX "charge_attempts_window_id_key" ON "charge_attempts"("window_id");

-- CreateIndex
CREATE UNIQUE INDEX "charge_attempts_order_id_key" ON "charge_attempts"("order_id");

-- CreateIndex
CREATE INDEX "charge_attempts_status_next_retry_at_idx" ON "charge_attempts"("status", "next_retry_at");

-- CreateIndex
CREATE UNIQUE INDEX "ops_events_dedupe_key_key" ON "ops_events"("dedupe_key");

-- CreateIndex
CREATE INDEX "ops_events_type_occurred_at_idx" ON "ops_events"("type", "occurred_at");

-- CreateIndex
CREATE INDEX "ops_events_resolved_at_occurred_at_idx" ON "ops_events"("resolved_at", "occurred_at");

-- CreateIndex
CREATE INDEX "ops_events_subject_type_subject_id_idx" ON "ops_events"("subject_type", "subject_id");

-- CreateIndex
CREATE INDEX "webhook_events_processed_at_received_at_idx" ON "webhook_events"("processed_at", "received_at");

-- CreateIndex
CREATE UNIQUE INDEX "webhook_events_processor_processor_event_id_key" ON "webhook_events"("processor", "processor_event_id");

-- CreateIndex
CREATE UNIQUE INDEX "users_email_key" ON "users"("email");

-- CreateIndex
CREATE INDEX "users_role_id_idx" ON "users"("role_id");

-- CreateIndex
CREATE UNIQUE INDEX "roles_name_key" ON "roles"("name");

-- CreateIndex
CREATE UNIQUE INDEX "permissions_action_entity_access_key" ON "permissions"("action", "entity", "access");

-- CreateIndex
CREATE INDEX "role_permissions_permission_id_idx" ON "role_permissions"("permission_id");

-- CreateIndex
CREATE INDEX "sessions_user_id_idx" ON "sessions"("user_id");

-- CreateIndex
CREATE INDEX "sessions_expires_at_idx" ON "sessions"("expires_at");

-- CreateIndex
CREATE INDEX "login_attempts_email_at_idx" ON "login_attempts"("email", "at");

-- CreateIndex
CREATE INDEX "login_attempts_ip_at_idx" ON "login_attempts"("ip", "at");

-- CreateIndex
CREATE UNIQUE INDEX "api_keys_key_hash_key" ON "api_keys"("key_hash");

-- CreateIndex
CREATE INDEX "api_keys_created_by_id_idx" ON "api_keys"("created_by_id");

-- CreateIndex
CREATE INDEX "audit_log_action_at_idx" ON "audit_log"("action", "at");

-- CreateIndex
CREATE INDEX "audit_log_subject_type_subject_id_idx" ON "audit_log"("subject_type", "subject_id");

-- CreateIndex
CREATE INDEX "audit_log_actor_user_id_at_idx" ON "audit_log"("actor_user_id", "at");

-- CreateIndex
CREATE INDEX "audit_log_at_idx" ON "audit_log"("at");

-- AddForeignKey
ALTER TABLE "subscriptions" ADD CONSTRAINT "subscriptions_customer_id_fkey" FOREIGN KEY ("customer_id") REFERENCES "customers"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "subscriptions" ADD CONSTRAINT "subscriptions_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "plans"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "meter_prices" ADD CONSTRAINT "meter_prices_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "plans"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "meter_prices" ADD CONSTRAINT "meter_prices_meter_id_fkey" FOREIGN KEY ("meter_id") REFERENCES "meters"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "meter_events" ADD CONSTRAINT "meter_events_customer_id_fkey" FOREIGN KEY ("customer_id") REFERENCES "customers"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "meter_events" ADD CONSTRAINT "meter_events_subscription_id_fkey" FOREIGN KEY ("subscription_id") REFERENCES "subscriptions"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "meter_events" ADD CONSTRAINT "meter_events_meter_id_fkey" FOREIGN KEY ("meter_id") REFERENCES "meters"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "meter_events" ADD CONSTRAINT "meter_events_window_id_fkey" FOREIGN KEY ("window_id") REFERENCES "windows"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "meter_events" ADD CONSTRAINT "meter_events_invoice_line_id_fkey" FOREIGN KEY ("invoice_line_id") REFERENCES "invoice_lines"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "event_attempts" ADD CONSTRAINT "event_attempts_meter_event_id_fkey" FOREIGN KEY ("meter_event_id") REFERENCES "meter_events"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "windows" ADD CONSTRAINT "windows_subscription_id_fkey" FOREIGN KEY ("subscription_id") REFERENCES "subscriptions"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "windows" ADD CONSTRAINT "windows_customer_id_fkey" FOREIGN KEY ("customer_id") REFERENCES "customers"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "invoices" ADD CONSTRAINT "invoices_window_id_fkey" FOREIGN KEY ("window_id") REFERENCES "windows"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "invoices" ADD CONSTRAINT "invoices_customer_id_fkey" FOREIGN KEY ("customer_id") REFERENCES "customers"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "invoices" ADD CONSTRAINT "invoices_subscription_id_fkey" FOREIGN KEY ("subscription_id") REFERENCES "subscriptions"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "invoice_lines" ADD CONSTRAINT "invoice_lines_invoice_id_fkey" FOREIGN KEY ("invoice_id") REFERENCES "invoices"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "invoice_lines" ADD CONSTRAINT "invoice_lines_meter_id_fkey" FOREIGN KEY ("meter_id") REFERENCES "meters"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "invoice_lines" ADD CONSTRAINT "invoice_lines_carried_from_window_id_fkey" FOREIGN KEY ("carried_from_window_id") REFERENCES "windows"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "charge_attempts" ADD CONSTRAINT "charge_attempts_window_id_fkey" FOREIGN KEY ("window_id") REFERENCES "windows"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "users" ADD CONSTRAINT "users_role_id_fkey" FOREIGN KEY ("role_id") REFERENCES "roles"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "role_permissions" ADD CONSTRAINT "role_permissions_role_id_fkey" FOREIGN KEY ("role_id") REFERENCES "roles"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "role_permissions" ADD CONSTRAINT "role_permissions_permission_id_fkey" FOREIGN KEY ("permission_id") REFERENCES "permissions"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "sessions" ADD CONSTRAINT "sessions_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "api_keys" ADD CONSTRAINT "api_keys_created_by_id_fkey" FOREIGN KEY ("created_by_id") REFERENCES "users"("id") ON DELETE SET NULL ON UPDATE CASCADE;


-- ───────────── Hand-written: rules the database itself keeps (Prisma does not model these) ─────────────

-- The audit log is append-only: no role, not even the application's, can rewrite history.
CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON "audit_log"
  FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON "audit_log"
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

-- Ledger rules, enforced below the application as a last line of defence.
ALTER TABLE "meter_events" ADD CONSTRAINT "meter_events_value_range" CHECK ("value" >= 0 AND "value" <= 9007199254740991);
ALTER TABLE "meter_events" ADD CONSTRAINT "meter_events_identifier_length" CHECK (char_length("identifier") BETWEEN 1 AND 100);
ALTER TABLE "meters" ADD CONSTRAINT "meters_event_name_format" CHECK ("event_name" ~ '^[a-z0-9_.:-]{1,100}$');
ALTER TABLE "meter_prices" ADD CONSTRAINT "meter_prices_amounts" CHECK ("unit_amount_minor" >= 0 AND "per_units" >= 1);
ALTER TABLE "invoice_lines" ADD CONSTRAINT "invoice_lines_amounts" CHECK ("amount_minor" >= 0 AND "quantity" >= 0 AND "billed_units" >= 0);
ALTER TABLE "subscriptions" ADD CONSTRAINT "subscriptions_period" CHECK ("current_period_end" > "current_period_start");
ALTER TABLE "windows" ADD CONSTRAINT "windows_period" CHECK ("period_end" > "period_start");
