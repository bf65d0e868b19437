#!/usr/bin/env bash
# Runs the MCP end-to-end tests: installs the pinned MCP client SDK from package-lock.json, then runs every
# *.test.mjs with node's test runner against real servers the tests start from $SUNDIAL_BIN
# (default <repo>/target/debug/sundial).
set -euo pipefail
if [[ -n "${SUNDIAL_BIN:-}" && "${SUNDIAL_BIN}" != /* ]]; then
  export SUNDIAL_BIN="${PWD}/${SUNDIAL_BIN}"
fi
cd "$(dirname "${BASH_SOURCE[0]}")"
npm ci --no-audit --no-fund
node --test --test-reporter=spec *.test.mjs
