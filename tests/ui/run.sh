#!/usr/bin/env bash
# Runs the dashboard's browser tests: installs the pinned playwright-core from package-lock.json (it drives the
# system's Chromium at /usr/bin/chromium and downloads no browser), then runs every *.test.mjs with node's test
# runner against real servers the tests start from $SUNDIAL_BIN (default <repo>/target/debug/sundial).
# SUNDIAL_UI_SCREENSHOTS=1 also writes full-page screenshots to <repo>/docs/screenshots.
set -euo pipefail
if [[ ! -x /usr/bin/chromium ]]; then
  echo "tests/ui: /usr/bin/chromium is missing; install Debian's chromium package (apt-get install -y chromium)" >&2
  exit 1
fi
if [[ -n "${SUNDIAL_BIN:-}" && "${SUNDIAL_BIN}" != /* ]]; then
  export SUNDIAL_BIN="${PWD}/${SUNDIAL_BIN}"
fi
cd "$(dirname "${BASH_SOURCE[0]}")"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
npm ci --no-audit --no-fund
node --test --test-reporter=spec *.test.mjs
