-- One row per desk form submission (app/utils/submissions.server.ts): a second POST with the same key (a double
-- click, a resent form) waits for the first and answers with its redirect instead of running the action again.
CREATE TABLE "desk_submissions" (
    "key" TEXT NOT NULL,
    "path" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "location" TEXT,

    CONSTRAINT "desk_submissions_pkey" PRIMARY KEY ("key")
);

CREATE INDEX "desk_submissions_created_at_idx" ON "desk_submissions"("created_at");
