#!/bin/sh
# Builds the libFuzzer harnesses (clang, ASan + UBSan) and runs each for a fixed short run,
# seeded with the frozen vectors' envelopes and documents. Long run (documented in README):
#   SMQTT_FUZZ_RUNS=1000000 libsmqtt/scripts/fuzz.sh
# Needs: clang (Debian package clang), libsodium-dev, libcjson-dev, /usr/bin/python3.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$here/.." && pwd)
build="${SMQTT_FUZZ_BUILD_DIR:-$here/build/fuzz}"
runs="${SMQTT_FUZZ_RUNS:-20000}"
CC=clang cmake -S "$here" -B "$build" -DSMQTT_FUZZ=ON -DSMQTT_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" >/dev/null
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" --target fuzz_envelope fuzz_documents
rm -rf "$build/seeds" && mkdir -p "$build/seeds/envelope" "$build/seeds/documents"
/usr/bin/python3 - "$repo" "$build/seeds" <<'PY'
import json, sys
repo, out = sys.argv[1], sys.argv[2]
n = 0
for name in ('envelope-v1.json', 'envelope-v1-bound-properties.json'):
    for case in json.load(open(f'{repo}/packages/core/vectors/{name}'))['cases']:
        open(f'{out}/envelope/{n}', 'wb').write(bytes.fromhex(case['envelope'])); n += 1
docs = json.load(open(f'{repo}/packages/core/vectors/documents-v1.json'))
seeds = [(1, docs['keyBundle']['document'])] + [(1, c['document']) for c in docs['keyBundle']['negative']]
seeds += [(0, c['document']) for c in docs['revocationList']['valid'] + docs['revocationList']['negative']]
for i, (kind, doc) in enumerate(seeds):
    open(f'{out}/documents/{i}', 'wb').write(bytes([kind]) + json.dumps(doc, separators=(',', ':')).encode())
PY
for f in envelope documents; do
  mkdir -p "$build/corpus/$f"
  "$build/fuzz_$f" -runs="$runs" -max_len=8192 "$build/corpus/$f" "$build/seeds/$f" 2>&1 | tail -3
done
