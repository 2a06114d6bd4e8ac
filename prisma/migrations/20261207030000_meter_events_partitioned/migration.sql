-- meter_events range-partitioned by month of receipt (docs/decisions/032-ledger-partitions.md).
--
-- The partition key is the primary key itself: event ids are UUIDv7 minted at receipt (ADR 012), so a month of
-- receipt is the id range [uuidv7 floor of its first millisecond, that of the next month's). The primary key, the
-- keyset pages (ORDER BY id) and the foreign key from event_attempts keep working unchanged, and a page reads the
-- partitions in order (an ordered Append) instead of merging them.
--
-- A unique index on a partitioned table must contain the partition key, so `identifier` can no longer be unique
-- there: meter_event_identifiers holds every identifier once (its primary key), and the ledger's insert claims the
-- identifier there in the same statement that inserts the event.
--
-- In place: the existing table is kept as it is (no row is copied) and attached as the first partition, covering
-- every id up to the start of next month; its indexes become the partitions of the parent's indexes. The months
-- after it are created ahead, here and then daily by the crontab task ledger__create_partitions.

-- UUIDv7 helpers (the same arithmetic as app/billing/ids.ts uuidv7Floor / uuidv7Time).
CREATE FUNCTION meterdesk_uuidv7_floor(t timestamptz) RETURNS uuid
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN (regexp_replace(lpad(to_hex(floor(extract(epoch FROM t) * 1000)::bigint), 12, '0') || '00000000000000000000',
                         '^(.{8})(.{4})(.{4})(.{4})(.{12})$', '\1-\2-\3-\4-\5'))::uuid;

CREATE FUNCTION meterdesk_uuidv7_time(id uuid) RETURNS timestamptz
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN to_timestamp(('x' || lpad(left(replace(id::text, '-', ''), 12), 16, '0'))::bit(64)::bigint / 1000.0);

-- Creates the month partitions of meter_events up to and including the month `ahead` months after the current one
-- (UTC), each after the last existing one, and returns the names it created. Idempotent; called by the migration,
-- by `migrate` and daily by the crontab.
CREATE FUNCTION meter_events_create_partitions(ahead integer) RETURNS SETOF text
  LANGUAGE plpgsql AS $$
DECLARE
  last_bound timestamptz;
  target timestamptz := date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + make_interval(months => ahead + 1);
  name text;
BEGIN
  IF ahead < 0 OR ahead > 36 THEN
    RAISE EXCEPTION 'ahead must be 0 to 36 months, not %', ahead USING ERRCODE = '22023';
  END IF;
  -- Serialises concurrent callers (two workers' crontabs): the second sees what the first created.
  PERFORM pg_advisory_xact_lock(hashtext('meter_events_create_partitions'));
  SELECT max(meterdesk_uuidv7_time(
           substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([0-9a-f-]{36})''\)')::uuid))
    INTO last_bound
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
   WHERE i.inhparent = 'meter_events'::regclass;
  IF last_bound IS NULL THEN
    RAISE EXCEPTION 'meter_events has no bounded partition to continue from';
  END IF;
  WHILE last_bound < target LOOP
    name := 'meter_events_' || to_char(last_bound AT TIME ZONE 'UTC', 'YYYY_MM');
    EXECUTE format('CREATE TABLE %I PARTITION OF meter_events FOR VALUES FROM (%L) TO (%L) WITH (fillfactor = 50)',
                   name, meterdesk_uuidv7_floor(last_bound),
                   meterdesk_uuidv7_floor(last_bound + interval '1 month'));
    RETURN NEXT name;
    last_bound := last_bound + interval '1 month';
  END LOOP;
END $$;

-- 1. Every identifier once.
CREATE TABLE "meter_event_identifiers" (
    "identifier" TEXT NOT NULL,
    "event_id" UUID NOT NULL,
    CONSTRAINT "meter_event_identifiers_pkey" PRIMARY KEY ("identifier")
);
INSERT INTO "meter_event_identifiers" ("identifier", "event_id") SELECT "identifier", "id" FROM "meter_events";

-- 2. The table as it is becomes the first partition; its names step aside for the parent's.
DO $$
DECLARE
  bound timestamptz := greatest(
    date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '1 month',
    (SELECT date_trunc('month', meterdesk_uuidv7_time(id) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '1 month'
       FROM meter_events ORDER BY id DESC LIMIT 1));
  first_name text := 'meter_events_before_' || to_char(bound AT TIME ZONE 'UTC', 'YYYY_MM');
  ix record;
BEGIN
  ALTER TABLE event_attempts DROP CONSTRAINT event_attempts_meter_event_id_fkey;
  DROP INDEX meter_events_identifier_key;
  FOR ix IN SELECT indexrelid::regclass::text AS name FROM pg_index WHERE indrelid = 'meter_events'::regclass LOOP
    IF ix.name = 'meter_events_pkey' THEN
      EXECUTE format('ALTER TABLE meter_events RENAME CONSTRAINT meter_events_pkey TO %I', first_name || '_pkey');
    ELSE
      EXECUTE format('ALTER INDEX %I RENAME TO %I', ix.name, replace(ix.name, 'meter_events_', first_name || '_'));
    END IF;
  END LOOP;
  EXECUTE format('ALTER TABLE meter_events RENAME TO %I', first_name);

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
      CONSTRAINT "meter_events_pkey" PRIMARY KEY ("id"),
      CONSTRAINT "meter_events_value_range" CHECK ("value" >= 0 AND "value" <= 9007199254740991),
      CONSTRAINT "meter_events_identifier_length" CHECK (char_length("identifier") BETWEEN 1 AND 100)
  ) PARTITION BY RANGE ("id");

  CREATE INDEX "meter_events_status_id_idx" ON "meter_events" ("status", "id");
  CREATE INDEX "meter_events_customer_id_id_idx" ON "meter_events" ("customer_id", "id");
  CREATE INDEX "meter_events_event_name_id_idx" ON "meter_events" ("event_name", "id");
  CREATE INDEX "meter_events_recorded_subscription_occurred_at_idx" ON "meter_events" ("subscription_id", "occurred_at") WHERE "status" = 'recorded';
  CREATE INDEX "meter_events_window_id_idx" ON "meter_events" ("window_id") WHERE "window_id" IS NOT NULL;
  CREATE INDEX "meter_events_invoice_line_id_idx" ON "meter_events" ("invoice_line_id") WHERE "invoice_line_id" IS NOT NULL;
  CREATE INDEX "meter_events_missing_definition_idx" ON "meter_events" ("event_name") WHERE "meter_id" IS NULL;
  CREATE INDEX "meter_events_occurred_at_brin" ON "meter_events" USING brin ("occurred_at");
  CREATE INDEX "meter_events_failed_summary_idx" ON "meter_events" ("id")
    INCLUDE ("last_error_code", "last_error_message", "customer_id", "event_name", "processor", "occurred_at")
    WHERE "status" = 'failed';

  -- Validates that every existing id lies below the bound (one scan); the matching indexes are attached, not rebuilt.
  EXECUTE format('ALTER TABLE meter_events ATTACH PARTITION %I FOR VALUES FROM (MINVALUE) TO (%L)',
                 first_name, meterdesk_uuidv7_floor(bound));
END $$;

-- 3. The attempt log refers to the partitioned table.
ALTER TABLE "event_attempts" ADD CONSTRAINT "event_attempts_meter_event_id_fkey" FOREIGN KEY ("meter_event_id")
  REFERENCES "meter_events"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- 4. The months ahead.
SELECT meter_events_create_partitions(3);
