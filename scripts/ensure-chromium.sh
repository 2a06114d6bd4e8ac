#!/usr/bin/env bash
# Makes sure Debian's Chromium is at /usr/bin/chromium for the browser tests (playwright.config.ts launches it;
# `npx playwright install` downloads from outside the npm registry and fails on these machines). Installs Debian's
# package when it can (root, or passwordless sudo); otherwise says in one line what to do and exits 3.
set -uo pipefail

chromium=/usr/bin/chromium
[ -x "$chromium" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "Chromium is missing at $chromium and this user cannot install it: run 'sudo apt-get install -y chromium' once, then npm test again." >&2
  exit 3
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "Chromium is missing at $chromium and there is no apt-get here: install Debian's chromium package (or link a Chromium binary to $chromium), then npm test again." >&2
  exit 3
fi

echo "== installing Chromium from Debian (once per machine)"
export DEBIAN_FRONTEND=noninteractive
# A fresh machine's package lists may be empty or stale: try as they are, then refresh once.
if ! "${as_root[@]}" apt-get install -y -q chromium >/dev/null 2>&1; then
  "${as_root[@]}" apt-get update -q >/dev/null && "${as_root[@]}" apt-get install -y -q chromium >/dev/null
fi
if [ ! -x "$chromium" ]; then
  echo "Installing Debian's chromium package did not give $chromium: see 'apt-get install chromium' output, then npm test again." >&2
  exit 3
fi
echo "== $("$chromium" --version 2>/dev/null || echo chromium) installed"
