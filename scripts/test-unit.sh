#!/usr/bin/env bash
# The unit tier (`npm run test:unit`): tests that need no service (no PostgreSQL, Redis,
# Mosquitto, Chromium, key server or broker process, no network), for the edit-test loop.
# `npm run check` stays the full suite CI runs. test/repository.test.ts checks each file
# listed here exists and starts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
exec npx vitest run "$@" \
  packages/core/test/ \
  packages/client/test/receive-line.test.ts \
  packages/client/test/replay-state.test.ts \
  packages/client/test/unknown-senders.test.ts \
  packages/client/test/freshness-monitor.test.ts \
  packages/client/test/bundle-rollback.test.ts \
  packages/client/test/browser-storage.test.ts \
  packages/keyserver/test/config.test.ts \
  packages/keyserver/test/sqlite-store.test.ts \
  packages/keyserver/test/master-key.test.ts \
  packages/keyserver/test/request-limits.test.ts \
  packages/keyserver/test/sealed-key-cache.test.ts \
  packages/broker-plugin/test/bounds.test.ts \
  packages/broker-plugin/test/cli-paths.test.ts \
  packages/broker-plugin/test/patched-map.test.ts
