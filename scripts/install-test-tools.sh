#!/usr/bin/env bash
# Installs the independent tools the test suite drives, from Debian's packages, when missing:
# Chromium (the browser client test, through playwright-core), mosquitto-clients and Python
# paho-mqtt (interop with MQTT clients no one here wrote), sslscan (the TLS scan of every
# listener). Idempotent; needs root or sudo.
# Without apt-get it says what to install and stops, so the tests never run half-equipped.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v mosquitto_pub >/dev/null 2>&1 || missing+=(mosquitto-clients)
/usr/bin/python3 -c 'import paho.mqtt' >/dev/null 2>&1 || missing+=(python3-paho-mqtt)
command -v sslscan >/dev/null 2>&1 || missing+=(sslscan)

if [ ${#missing[@]} -eq 0 ]; then
  echo "test tools: present (chromium, mosquitto-clients, python3-paho-mqtt, sslscan)"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "test tools missing: ${missing[*]}; install them with your package manager" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "test tools: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
