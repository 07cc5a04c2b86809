#!/usr/bin/env bash
# Python beside TypeScript (native backend), one table: python/bench/compare.sh [COUNT]
# Needs the workspace's node_modules (npx tsx) and Debian's python3 with PyNaCl.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
exec "${PYTHON:-/usr/bin/python3}" "$root/python/bench/compare.py" --count "${1:-2000}"
