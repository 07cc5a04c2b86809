#!/usr/bin/env bash
# The release gate: the four packages as a user gets them. Builds, packs each package, installs
# the tarballs into a fresh project outside the repository, then with plain `node` (no
# `smqtt-source` condition) imports every entry point and subpath, runs every bin's --help,
# starts both worker threads from dist/, type-checks a consumer under `moduleResolution` node16
# and bundler, and lints the package metadata (publint, are-the-types-wrong).
# Usage: npm run release-gate   (exits non-zero at the first failing step)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
packages=(core client keyserver broker-plugin)

work=$(mktemp -d "${TMPDIR:-/tmp}/smqtt-release-gate.XXXXXX")
trap 'rm -rf "$work"' EXIT
tarballs=$work/tarballs
consumer=$work/consumer
mkdir -p "$tarballs" "$consumer"

gate_start=$(date +%s%N)
step() {
  local name=$1
  shift
  local start=$(date +%s%N)
  echo "── $name"
  "$@"
  printf '   %s: %.1f s\n' "$name" "$((($(date +%s%N) - start) / 1000000))e-3"
}

build() { npm run build --silent >"$work/build.log" 2>&1 || { cat "$work/build.log"; return 1; }; }

pack() {
  npm pack --silent --pack-destination "$tarballs" "${packages[@]/#/--workspace=packages/}" >/dev/null
  local t listing extra
  for t in "$tarballs"/*.tgz; do
    listing=$(tar -tzf "$t")
    grep -qx 'package/LICENSE' <<<"$listing" || { echo "$t: no LICENSE" >&2; return 1; }
    extra=$(grep -E '^package/(vectors|test|bench|demo)/|^package/(src|dist)/testing[./]' <<<"$listing" || true)
    [[ -z $extra ]] || { echo "$t ships test material: $(head -3 <<<"$extra")" >&2; return 1; }
    printf '   %-40s %6d kB, %d files\n' "$(basename "$t")" "$(($(stat -c %s "$t") / 1024))" "$(wc -l <<<"$listing")"
  done
}

# The consumer depends on the tarballs only; typescript and @types/node at the repo's versions.
# --ignore-scripts: better-sqlite3's install script would compile SQLite (minutes) where no
# prebuilt binary can be fetched; nothing here opens a key store. sodium-native ships prebuilds.
install() {
  local deps=() t
  for t in "$tarballs"/*.tgz; do deps+=("\"$(tar -xzOf "$t" package/package.json | node -p 'JSON.parse(require("fs").readFileSync(0)).name')\": \"file:$t\""); done
  local ts types
  ts=$(node -p "require('$root/node_modules/typescript/package.json').version")
  types=$(node -p "require('$root/node_modules/@types/node/package.json').version")
  cat >"$consumer/package.json" <<EOF
{
  "name": "smqtt-release-gate-consumer",
  "private": true,
  "type": "module",
  "dependencies": { $(IFS=,; echo "${deps[*]}") },
  "devDependencies": { "typescript": "$ts", "@types/node": "$types" }
}
EOF
  (cd "$consumer" && npm install --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error >"$work/install.log" 2>&1) ||
    { cat "$work/install.log"; return 1; }
  # Each package once, from its tarball: a nested copy would mean a range our versions miss.
  local nested
  nested=$(find "$consumer/node_modules" -path '*/node_modules/*/node_modules/@smqtt' -prune -print)
  [[ -z $nested ]] || { echo "nested copies of our packages: $nested" >&2; return 1; }
}

imports() {
  cat >"$consumer/imports.mjs" <<'EOF'
// Every subpath of every package's "exports", resolved as plain Node resolves it.
import { readFileSync } from 'node:fs'
const names = ['@smqtt/core', '@smqtt/client', '@smqtt/keyserver', '@smqtt/broker-plugin']
for (const name of names) {
  const manifest = JSON.parse(readFileSync(`node_modules/${name}/package.json`, 'utf8'))
  for (const subpath of Object.keys(manifest.exports)) {
    const specifier = subpath === '.' ? name : `${name}${subpath.slice(1)}`
    const url = import.meta.resolve(specifier)
    const json = specifier.endsWith('.json')
    if (!json && !/\/dist\/.*\.js$/.test(url)) throw new Error(`${specifier} resolves to ${url}, not dist/`)
    const module = json ? await import(specifier, { with: { type: 'json' } }) : await import(specifier)
    const count = Object.keys(module).length
    if (count === 0) throw new Error(`${specifier} exports nothing`)
    console.log(`   ${specifier}: ${count} exports`)
  }
}
EOF
  cat >"$consumer/imports-browser.mjs" <<'EOF'
// The client's browser entry (`browser` condition) is in the tarball. Resolved, not loaded:
// mqtt's browser build needs a browser's globals.
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
const url = import.meta.resolve('@smqtt/client')
if (!url.endsWith('/dist/index.browser.js') || !existsSync(fileURLToPath(url))) throw new Error(`browser entry: ${url}`)
console.log(`   @smqtt/client (browser): ${url.slice(url.indexOf('/dist/') + 1)}`)
EOF
  (cd "$consumer" && node imports.mjs && node --conditions=browser imports-browser.mjs)
}

bins() {
  local bin
  for bin in smqtt-broker smqtt-keyserver smqtt-pub smqtt-sub; do
    local out
    out=$(cd "$consumer" && "node_modules/.bin/$bin" --help 2>&1) || { echo "$bin --help failed:" >&2; echo "$out" >&2; return 1; }
    grep -qi 'usage' <<<"$out" || { echo "$bin --help printed no usage: $out" >&2; return 1; }
    echo "   $bin --help: $(head -1 <<<"$out" | cut -c1-70)"
  done
}

workers() {
  cat >"$consumer/workers.mjs" <<'EOF'
// Both worker threads of @smqtt/core started from dist/: the verify pool checks one good and one
// tampered envelope on its worker; the snapshot opener's worker refuses a forged snapshot.
import { createEnvelopeSigner, cryptoBackend, EpochKey, isSmqttError, sealEnvelope } from '@smqtt/core'
import { SnapshotOpener } from '@smqtt/core/snapshot-opener'
import { VerifyPool } from '@smqtt/core/verify-pool'

const deadline = setTimeout(() => {
  console.error('workers: no answer within 20 s')
  process.exit(1)
}, 20_000)
// sodium-native (an optional dependency, prebuilt binaries inside) came along and loads.
if (cryptoBackend.name !== 'native') throw new Error(`crypto backend: ${cryptoBackend.name}, not native`)
const epochKey = new EpochKey({ group: 7, epoch: 300, suite: 1, key: new Uint8Array(32).fill(0x42) })
const signer = createEnvelopeSigner({ kid: 1000, seed: new Uint8Array(32).fill(1) })
const topic = 'gate/verify'
const payload = new TextEncoder().encode('release gate')
const good = sealEnvelope({ topic, payload, epochKey, signer, seq: 1, sentAt: 1_700_000_000 })
const tampered = good.slice()
tampered[tampered.length - 1] ^= 1

const pool = new VerifyPool({
  workers: 1,
  onFailure: (reason, _refused, error) => {
    console.error(`verify worker ${reason}`, error)
    process.exit(1)
  },
})
pool.shareWithMainThread = false // every envelope through the worker
const verdict = (envelope) => new Promise((resolve) => pool.verify(signer.publicKey, topic, envelope, resolve))
const verdicts = await Promise.all([verdict(good), verdict(tampered)])
if (verdicts.join() !== 'valid,invalid') throw new Error(`verify pool answered ${verdicts}`)
if (pool.workers.length !== 1) throw new Error('verify pool has no worker thread')
await pool.close()
console.log(`   verify worker (${cryptoBackend.name} backend): ${verdicts.join(', ')}`)

const opener = new SnapshotOpener(signer.publicKey)
const refusal = await opener.open({ payload: 'e30', signatures: [] }).then(
  () => new Error('a forged snapshot was opened'),
  (error) => error,
)
// A worker that failed to load rejects with a plain Error; the refusal must come from the worker.
if (!isSmqttError(refusal) || opener.worker === undefined) throw refusal
await opener.close()
console.log(`   snapshot worker: refused a forged snapshot (${refusal.code})`)
clearTimeout(deadline)
EOF
  (cd "$consumer" && node workers.mjs)
}

types() {
  # Every subpath of every package's "exports", as namespace imports (so a new subpath is covered)...
  (cd "$consumer" && node -e '
    const { readFileSync } = require("node:fs")
    const lines = []
    for (const name of ["@smqtt/core", "@smqtt/client", "@smqtt/keyserver", "@smqtt/broker-plugin"]) {
      const manifest = JSON.parse(readFileSync(`node_modules/${name}/package.json`, "utf8"))
      for (const subpath of Object.keys(manifest.exports).filter((s) => !s.endsWith(".json")))
        lines.push(`export * as e${lines.length} from "${subpath === "." ? name : name + subpath.slice(1)}"`)
    }
    require("node:fs").writeFileSync("entries.ts", lines.join("\n") + "\n")')
  # ...and core's central signatures used as a consumer would.
  cat >"$consumer/consumer.ts" <<'EOF'
import { type EnvelopeSigner, EpochKey, type SmqttError, type SmqttErrorCode, sealEnvelope } from '@smqtt/core'
import { SnapshotOpener } from '@smqtt/core/snapshot-opener'
import { type Verdict, VerifyPool } from '@smqtt/core/verify-pool'

export const seal = (signer: EnvelopeSigner, key: EpochKey): Uint8Array =>
  sealEnvelope({ topic: 't', payload: new Uint8Array(1), epochKey: key, signer, seq: 1, sentAt: 0 })
export const codeOf = (error: SmqttError): SmqttErrorCode => error.code
export const verdict = (pool: VerifyPool): Promise<Verdict> =>
  new Promise((resolve) => pool.verify(new Uint8Array(32), 't', new Uint8Array(1), resolve))
export const opened = (opener: SnapshotOpener, signed: unknown) => opener.open(signed)
EOF
  # skipLibCheck as most consumers have it: checking every dependency's .d.ts too passed as well,
  # but took 28 s instead of 6.
  local resolution
  for resolution in node16 bundler; do
    local module=node16
    [[ $resolution == bundler ]] && module=esnext
    cat >"$consumer/tsconfig.$resolution.json" <<EOF
{
  "compilerOptions": {
    "module": "$module",
    "moduleResolution": "$resolution",
    "target": "es2022",
    "lib": ["es2022", "dom"],
    "types": ["node"],
    "strict": true,
    "exactOptionalPropertyTypes": true,
    "noEmit": true,
    "skipLibCheck": true
  },
  "files": ["entries.ts", "consumer.ts"]
}
EOF
    (cd "$consumer" && node_modules/.bin/tsc -p "tsconfig.$resolution.json") || return 1
    echo "   tsc, moduleResolution $resolution: no errors ($(wc -l <"$consumer/entries.ts") entry points)"
  done
}

metadata() {
  local t out
  for t in "$tarballs"/*.tgz; do
    out=$("$root/node_modules/.bin/publint" run "$t" --strict 2>&1) || { echo "$out"; return 1; }
    grep -q 'All good' <<<"$out" || { echo "$out"; return 1; } # suggestions fail the gate too
    # ESM only by design: the CommonJS (node10, node16-cjs) resolutions are out of scope.
    out=$("$root/node_modules/.bin/attw" "$t" --profile esm-only --no-definitely-typed --format table-flipped 2>&1) ||
      { echo "$out"; return 1; }
    echo "   $(basename "$t"): publint all good; attw node16 (ESM) and bundler OK"
  done
}

step build build
step pack pack
step install install
step imports imports
step bins bins
step workers workers
step types types
step metadata metadata
printf '── release gate passed in %.1f s\n' "$((($(date +%s%N) - gate_start) / 1000000))e-3"
