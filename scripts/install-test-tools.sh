#!/usr/bin/env bash
# Installs what the test suite needs beyond npm, from Debian's packages, when missing:
# - independent tools the tests drive: Chromium (the browser client test, through
#   playwright-core), mosquitto-clients and Python paho-mqtt (interop with MQTT clients no one
#   here wrote), sslscan (the TLS scan of every listener);
# - the C library's build (libsmqtt/): a compiler, CMake, libsodium and cJSON; clang for its
#   fuzz run (with libclang-rt-dev: its sanitizer and libFuzzer runtimes, which clang only
#   recommends); libcurl and libmosquitto for its reference device program;
# - the Python library (python/): PyNaCl, paho-mqtt, pytest, mypy, and `build` for its packaging check.
# Idempotent; needs root or sudo. Without apt-get it says what to install and stops, so the
# tests never run half-equipped.
set -euo pipefail

packages=(
  chromium mosquitto-clients sslscan
  gcc clang libclang-rt-dev cmake make pkg-config libsodium-dev libcjson-dev libcurl4-openssl-dev libmosquitto-dev
  python3 python3-venv python3-nacl python3-paho-mqtt python3-pytest python3-build python3-setuptools mypy
)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for package in "${packages[@]}"; do installed "$package" || missing+=("$package"); done
else
  missing=("${packages[@]}")
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "test tools: present (${packages[*]})"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "test tools missing: ${missing[*]} (Debian names); install them with your package manager" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "test tools: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
