-- Indexes for the desk's read paths, none of them on the ingest path.

-- desk__rollup_events: the `reported` minutes, by started_at range. Attempts are appended in started_at order,
-- so a BRIN index (a few pages) narrows the scan to the recent block ranges.
CREATE INDEX "event_attempts_started_at_brin" ON "event_attempts" USING BRIN ("started_at");

-- Events page "failures by error code" and the failed list: an index-only scan over failed rows. Partial, so
-- ingest (status 'pending' / 'recorded') never touches it; only the move to and from 'failed' does.
CREATE INDEX "meter_events_failed_summary_idx" ON "meter_events" ("id")
  INCLUDE ("last_error_code", "last_error_message", "customer_id", "event_name", "processor", "occurred_at")
  WHERE "status" = 'failed';
