-- Telemetry and overview: ops events of a time range grouped by type, processor and source (readOpsEventGroups).
CREATE INDEX "ops_events_occurred_at_type_processor_source_resolved_at_idx" ON "ops_events"("occurred_at", "type", "processor", "source", "resolved_at");
