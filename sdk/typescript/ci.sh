#!/usr/bin/env bash
# CI entry of the TypeScript SDK: install the pinned tools from the lockfile, build ESM + CJS + .d.ts, compile the
# Jobs API document's examples with `tsc --strict`, run the tests against a real `sundial serve` (SUNDIAL_BIN,
# default <repo>/target/debug/sundial), and check the package with publint and @arethetypeswrong/cli.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
export SUNDIAL_BIN="${SUNDIAL_BIN:-$(cd ../.. && pwd)/target/debug/sundial}"
if [[ ! -x "$SUNDIAL_BIN" ]]; then
  echo "ci.sh: no sundial binary at $SUNDIAL_BIN (build it, or set SUNDIAL_BIN)" >&2
  exit 1
fi

echo "== npm ci"
npm ci --no-audit --no-fund

echo "== build (ESM + CJS + .d.ts)"
npm run --silent build

echo "== the Jobs API examples and job files under tsc --strict"
npx --no-install tsc -p test/seed/tsconfig.json --strict

echo "== tests against $SUNDIAL_BIN"
node --test --test-reporter=spec test/*.test.mjs

echo "== publint"
npx --no-install publint --strict

echo "== attw --pack"
npx --no-install attw --pack .
