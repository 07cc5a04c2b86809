#!/bin/sh
# smqtt-c round trip: keypair, seal, open, verify, and a tampered envelope refused.
set -eu
cli="$1"
seed=1a1f24292e33383d42474c51565b60656a6f74797e83888d92979ca1a6abb0b5
key=808386898c8f9295989b9ea1a4a7aaadb0b3b6b9bcbfc2c5c8cbced1d4d7dadd
pk=$(echo "{\"op\":\"keypair\",\"signingSeed\":\"$seed\"}" | "$cli" | sed 's/.*"publicKey":"\([0-9a-f]*\)".*/\1/')
env=$(echo "{\"op\":\"seal\",\"suite\":1,\"group\":7,\"epoch\":300,\"kid\":1000,\"seq\":42,\"sentAt\":1790000000,\"topic\":\"home/t\",\"payload\":\"68656c6c6f\",\"epochKey\":\"$key\",\"signingSeed\":\"$seed\"}" | "$cli" | sed 's/.*"envelope":"\([0-9a-f]*\)".*/\1/')
open="{\"op\":\"open\",\"suite\":1,\"group\":7,\"epoch\":300,\"topic\":\"home/t\",\"epochKey\":\"$key\",\"writers\":[{\"kid\":1000,\"publicKey\":\"$pk\"}],\"now\":1790000000"
out=$(echo "$open,\"envelope\":\"$env\"}" | "$cli")
echo "$out" | grep -q '"payload":"68656c6c6f","sender":1000' || { echo "open: $out"; exit 1; }
out=$(echo "{\"op\":\"verify\",\"group\":7,\"topic\":\"home/t\",\"writers\":[{\"kid\":1000,\"publicKey\":\"$pk\"}],\"envelope\":\"$env\"}" | "$cli")
echo "$out" | grep -q '"ok":true' || { echo "verify: $out"; exit 1; }
# flip the last hex digit (in the signature)
last=$(printf %s "$env" | tail -c 1)
case "$last" in 0) new=1 ;; *) new=0 ;; esac
bad="$(printf %s "$env" | sed 's/.$//')$new"
set +e
out=$(echo "$open,\"envelope\":\"$bad\"}" | "$cli"); rc=$?
set -e
[ "$rc" = 1 ] && echo "$out" | grep -q ERR_ENVELOPE_SIGNATURE_INVALID || { echo "tampered: rc $rc $out"; exit 1; }
echo "cli: round trip and tamper refusal ok"
