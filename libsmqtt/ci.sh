#!/bin/sh
# Configure, build with warnings as errors, and run every CTest test of libsmqtt; then the same
# tests again under AddressSanitizer and UndefinedBehaviorSanitizer (SMQTT_SANITIZE=0 skips it).
# Needs: cmake, a C compiler, pkg-config, libsodium-dev, libcjson-dev (Debian names); with
# libcurl4-openssl-dev and libmosquitto-dev also the Linux reference device (examples/linux-device).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build="${SMQTT_BUILD_DIR:-$here/build}"
jobs="$(nproc 2>/dev/null || echo 2)"
cmake -S "$here" -B "$build" -DSMQTT_WERROR=ON -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-RelWithDebInfo}"
cmake --build "$build" -j "$jobs"
ctest --test-dir "$build" --output-on-failure
# The device program is driven against the real stack by test/interop/c-device.test.ts; here only
# that it was built and starts (no arguments: usage, exit 1).
if pkg-config --exists libcurl libmosquitto; then
  status=0
  "$build/examples/linux-device/smqtt-device" >/dev/null 2>&1 || status=$?
  if [ "$status" != 1 ]; then echo "smqtt-device: missing or broken (exit $status)"; exit 1; fi
else
  echo "smqtt-device: skipped, libcurl4-openssl-dev and libmosquitto-dev are missing"
fi
if [ "${SMQTT_SANITIZE:-1}" = 1 ]; then
  cmake -S "$here" -B "$build/sanitize" -DSMQTT_WERROR=ON -DSMQTT_BUILD_EXAMPLES=OFF -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_C_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
  cmake --build "$build/sanitize" -j "$jobs"
  ctest --test-dir "$build/sanitize" --output-on-failure
fi
# A fixed short fuzz run of the envelope and document parsers when clang is here (SMQTT_FUZZ=0 skips).
if [ "${SMQTT_FUZZ:-1}" = 1 ]; then
  if command -v clang >/dev/null 2>&1; then
    SMQTT_FUZZ_RUNS="${SMQTT_FUZZ_RUNS:-20000}" SMQTT_FUZZ_BUILD_DIR="$build/fuzz" "$here/scripts/fuzz.sh"
  else
    echo "fuzz: skipped, clang is missing (Debian package clang)"
  fi
fi
