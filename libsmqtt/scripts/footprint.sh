#!/bin/sh
# Footprint of libsmqtt, measured and printed: code size of the library's own object code at -Os
# for x86_64 (host gcc) and a 32-bit microcontroller (arm-none-eabi-gcc, Cortex-M4, Thumb-2),
# stack use of the public functions (-fstack-usage; libsodium's own frames are not included),
# RAM per replay-window entry, and microseconds per seal/verify/open on this machine, C beside
# @smqtt/core's Node backend.
# Needs: gcc, gcc-arm-none-eabi (Debian), libsodium-dev, libcjson-dev, and a build (ci.sh) for the timing.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
out="${SMQTT_FOOTPRINT_DIR:-$here/build/footprint}"
rm -rf "$out" && mkdir -p "$out/include"
# Only the two dependency headers, so the cross compiler never sees the host's libc headers.
ln -s /usr/include/sodium.h /usr/include/sodium "$out/include/"
mkdir -p "$out/include/cjson" && ln -s /usr/include/cjson/cJSON.h "$out/include/cjson/"
core="errors hkdf envelope replay sequence hpke"
documents="json_strict document request"

measure() { # target-name compiler extra-flags
  name=$1 cc=$2
  shift 2
  mkdir -p "$out/$name"
  for f in $core $documents; do
    "$cc" -std=c99 -Os -ffunction-sections -fdata-sections -fstack-usage "$@" -I"$here/include" -isystem "$out/include" \
      -c "$here/src/$f.c" -o "$out/$name/$f.o"
  done
  size_cmd=size
  [ "$name" = cortex-m4 ] && size_cmd=arm-none-eabi-size
  (cd "$out/$name" && "$size_cmd" -t $(for f in $core; do echo "$f.o"; done) | tail -1 |
    awk -v n="$name" '{ printf "%-10s envelope+replay+sequence+hpke: text %6d B  data %4d B  bss %4d B\n", n, $1, $2, $3 }')
  (cd "$out/$name" && "$size_cmd" -t $(for f in $documents; do echo "$f.o"; done) | tail -1 |
    awk -v n="$name" '{ printf "%-10s documents, requests (no cJSON):  text %6d B  data %4d B  bss %4d B\n", n, $1, $2, $3 }')
}

measure x86_64 gcc
if command -v arm-none-eabi-gcc >/dev/null 2>&1; then
  measure cortex-m4 arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb
else
  echo "cortex-m4  skipped: arm-none-eabi-gcc is missing (Debian package gcc-arm-none-eabi)"
fi

for name in x86_64 cortex-m4; do
  [ -d "$out/$name" ] || continue
  echo "stack ($name, own frame of each function, bytes):"
  cat "$out/$name"/*.su | awk '{ sub(/.*:/, "", $1); print }' |
    grep -E '^(smqtt_envelope_seal|smqtt_envelope_open|smqtt_envelope_verify|check_signature|layout_signed_bytes|smqtt_sender_key|smqtt_hkdf_sha256|smqtt_replay_accept|smqtt_hpke_open_base|smqtt_key_bundle_open|smqtt_connect_password|smqtt_request_sign)[[:space:]]' |
    awk '{ printf "  %-28s %6d %s\n", $1, $2, $3 }'
done

cat > "$out/sizes.c" <<'C'
#include <stdio.h>
#include "smqtt/smqtt.h"
int main(void) {
    printf("RAM per replay-window entry: %zu B (window %d bits); per floor: %zu B; counter: %zu B\n",
           sizeof(smqtt_replay_entry), SMQTT_REPLAY_WINDOW_BITS, sizeof(smqtt_replay_floor), sizeof(smqtt_seq_counter));
    return 0;
}
C
gcc -I"$here/include" "$out/sizes.c" -o "$out/sizes" && "$out/sizes"
if [ -x "$here/build/smqtt-bench" ]; then
  printf 'time on this machine (%s), C libsodium:          ' "$(uname -m)"
  "$here/build/smqtt-bench" 2000
else
  echo "time: run libsmqtt/ci.sh first (builds smqtt-bench)"
fi
# The same measurement with @smqtt/core's Node backend, in the same run (needs the workspace's npm install).
tsx="$here/../node_modules/.bin/tsx"
if [ -x "$tsx" ]; then
  printf 'time on this machine (%s), TypeScript (Node):   ' "$(uname -m)"
  (cd "$here/.." && "$tsx" --conditions=smqtt-source libsmqtt/scripts/bench-ts.ts 2000)
fi
