-- The identifier an event is sent to Stripe under when it is not its own (ADR 032): a retry of an event Stripe
-- rejected asynchronously (a meter error report) sends `<identifier>:r<n>`, since Stripe's documented uniqueness
-- ("at least 24 hours") makes no exception for rejected events and a v1 re-send with the same Idempotency-Key is
-- answered from the first call. NULL: sent as `identifier`.
ALTER TABLE "meter_events" ADD COLUMN "sent_identifier" TEXT;

-- Error reports name the identifier Stripe received: matched here as well as on "identifier" (unique index).
-- Partial: almost every row is NULL. Unique: one event per identifier Stripe knows, as for "identifier".
CREATE UNIQUE INDEX "meter_events_sent_identifier_key" ON "meter_events" ("sent_identifier") WHERE "sent_identifier" IS NOT NULL;
