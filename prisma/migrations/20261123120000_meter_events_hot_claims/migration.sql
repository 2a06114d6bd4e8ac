-- Reporting updates each Stripe event twice within a second of its insert: the claim (claimed_at, attempts,
-- first_attempt_at: no indexed column) and the settle (status). Leaving half of each heap page free lets the
-- claim be a HOT update (no entry in any of the table's indexes) on the page the row was inserted into,
-- which more than halves its cost; see docs/decisions/006-meter-events-fillfactor.md.
-- Only pages written from now on are affected. Prisma's schema language cannot express storage parameters, so
-- schema.prisma carries a comment instead; `prisma migrate diff` does not see fillfactor and reports no drift.
ALTER TABLE "meter_events" SET (fillfactor = 50);
