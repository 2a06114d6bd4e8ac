#!/usr/bin/env bash
# Runs every test: makes sure Debian's Chromium is there (installing it when it can: scripts/ensure-chromium.sh),
# builds the web app (the browser tests serve it), then vitest and Playwright. Both runners run even when one fails;
# the last line is `N passed, N failed[, N skipped]` summed from their JSON reports.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
export CHECKPOINT_DISABLE=1

mkdir -p reports
# A report left over from an earlier run must never stand in for one this run failed to write.
rm -f reports/vitest.json reports/playwright.json

summary_args=()

# Before anything slow: a machine that cannot run the browser tests is told so at once, in one line.
bash scripts/ensure-chromium.sh || exit $?

echo "== react-router build"
if ! react-router build; then
  summary_args+=(--step-failed "react-router build")
fi

if [ -f prisma/schema.prisma ]; then
  echo "== prisma generate"
  # generate never connects, but with DATABASE_URL unset Prisma 6 cannot resolve the schema's env("DATABASE_URL"),
  # falls back to the native library engine and tries to download it from binaries.prisma.sh.
  if ! DATABASE_URL="${DATABASE_URL:-postgresql://generate@127.0.0.1:5432/unused}" prisma generate; then
    summary_args+=(--step-failed "prisma generate")
  fi
fi

echo "== typecheck"
if ! { react-router typegen && tsc; }; then
  summary_args+=(--step-failed "typecheck")
fi

echo "== vitest"
vitest run --exclude 'test/browser/**' \
  --reporter=default --reporter=json --outputFile.json=reports/vitest.json
summary_args+=(--exit "vitest=$?")

echo "== playwright"
playwright test
summary_args+=(--exit "playwright=$?")

echo "== summary"
exec node scripts/summarize-tests.mjs \
  --vitest reports/vitest.json --playwright reports/playwright.json "${summary_args[@]}"
