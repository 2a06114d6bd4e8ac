-- Reconciliation of the ledger with the processors (app/billing/reconciliation.ts, ADR 011): each run and the
-- differences it found, so the desk can show the last run. Differences also raise `ledger_drift` ops events.

CREATE TYPE "reconciliation_run_status" AS ENUM ('running', 'succeeded', 'failed');

CREATE TABLE "reconciliation_runs" (
    "id" UUID NOT NULL,
    "started_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "finished_at" TIMESTAMPTZ(3),
    "status" "reconciliation_run_status" NOT NULL DEFAULT 'running',
    "trigger" TEXT NOT NULL,
    "requested_by" UUID,
    "period_from" TIMESTAMPTZ(3) NOT NULL,
    "period_to" TIMESTAMPTZ(3) NOT NULL,
    -- NULL: that processor was not checked in this run (not configured where the run happened).
    "stripe_checked" INTEGER,
    "stripe_skipped" INTEGER,
    "stripe_errors" INTEGER,
    "braintree_checked" INTEGER,
    "braintree_skipped" INTEGER,
    "braintree_errors" INTEGER,
    "drift_count" INTEGER NOT NULL DEFAULT 0,
    "new_drift_count" INTEGER NOT NULL DEFAULT 0,
    "resolved_count" INTEGER NOT NULL DEFAULT 0,
    "error" TEXT,

    CONSTRAINT "reconciliation_runs_pkey" PRIMARY KEY ("id")
);

-- customer_id and window_id have no foreign key: customers and windows are never deleted (ADR 009).
CREATE TABLE "reconciliation_findings" (
    "id" UUID NOT NULL,
    "run_id" UUID NOT NULL,
    "processor" "processor" NOT NULL,
    "kind" TEXT NOT NULL,
    "customer_id" UUID NOT NULL,
    "event_name" TEXT,
    "window_id" UUID,
    "period_start" TIMESTAMPTZ(3) NOT NULL,
    "period_end" TIMESTAMPTZ(3) NOT NULL,
    "ledger_value" DECIMAL(38,6) NOT NULL,
    "ledger_count" INTEGER NOT NULL,
    "processor_value" DECIMAL(38,6) NOT NULL,
    "processor_count" INTEGER,
    "difference" DECIMAL(38,6) NOT NULL,
    "currency" CHAR(3),
    "ops_event_id" UUID,
    "detail" JSONB,

    CONSTRAINT "reconciliation_findings_pkey" PRIMARY KEY ("id")
);

-- The desk page and the CLI: the latest runs, newest first.
CREATE INDEX "reconciliation_runs_started_at_idx" ON "reconciliation_runs"("started_at");

-- Foreign key; one run's findings.
CREATE INDEX "reconciliation_findings_run_id_idx" ON "reconciliation_findings"("run_id");

ALTER TABLE "reconciliation_findings" ADD CONSTRAINT "reconciliation_findings_run_id_fkey" FOREIGN KEY ("run_id") REFERENCES "reconciliation_runs"("id") ON DELETE CASCADE ON UPDATE CASCADE;
