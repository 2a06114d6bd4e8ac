-- The identifier an event is sent to Stripe under when it is not its own (ADR 033): a retry of an event Stripe
-- rejected asynchronously (a meter error report) sends `<identifier>:r<n>`, since Stripe's documented uniqueness
-- ("at least 24 hours") makes no exception for rejected events and a v1 re-send with the same Idempotency-Key is
-- answered from the first call. NULL: sent as `identifier`.
-- Unique, and found by error reports, through meter_event_identifiers (ADR 032): the retry claims it there for the
-- event, in the transaction that records it here.
ALTER TABLE "meter_events" ADD COLUMN "sent_identifier" TEXT;
