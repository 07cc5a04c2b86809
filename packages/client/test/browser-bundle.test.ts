// The browser build: bundles `@smqtt/client` as a browser app would (esbuild, platform browser,
// the package's own "exports"/"imports" under the `browser` condition, TypeScript sources via
// `smqtt-source`) and fails if any Node built-in reaches the bundle. Records minified and gzip sizes.
import { builtinModules } from 'node:module'
import { dirname, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import { build, type Metafile, type Plugin } from 'esbuild'
import { expect, test } from 'vitest'

const packageDir = dirname(dirname(fileURLToPath(import.meta.url)))
const BUILTINS = new Set(builtinModules.flatMap((name) => [name, name.split('/')[0] as string]))

/** Records every import of a Node built-in (`node:x`, or a bare `fs`, `crypto`, ...) instead of failing on the first. */
function builtinGuard(found: { path: string; importer: string }[]): Plugin {
  return {
    name: 'node-builtin-guard',
    setup(b) {
      b.onResolve({ filter: /.*/ }, (args) => {
        const bare = args.path.startsWith('node:') ? args.path.slice(5) : args.path
        if (args.path.startsWith('node:') || BUILTINS.has(bare.split('/')[0] as string)) {
          found.push({ path: args.path, importer: relative(packageDir, args.importer) })
          return { path: args.path, external: true }
        }
        return undefined
      })
    },
  }
}

async function bundle(external: string[], from = '@smqtt/client') {
  const found: { path: string; importer: string }[] = []
  const result = await build({
    stdin: { contents: `export * from '${from}'`, resolveDir: packageDir, loader: 'ts', sourcefile: 'app.ts' },
    bundle: true,
    write: false,
    metafile: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    conditions: ['smqtt-source', 'browser'],
    external,
    logLevel: 'silent',
    plugins: [builtinGuard(found)],
  })
  const output = result.outputFiles[0]
  if (!output) throw new Error('esbuild produced no output')
  const meta = result.metafile as Metafile
  const outputMeta = Object.values(meta.outputs)[0]
  return {
    found,
    inputs: Object.keys(meta.inputs),
    exports: outputMeta?.exports ?? [],
    minified: output.contents.length,
    gzip: gzipSync(output.contents, { level: 9 }).length,
  }
}

const kb = (n: number) => `${(n / 1024).toFixed(1)} KiB`

test('the browser bundle holds no Node built-in, and core uses its noble backend', async () => {
  const own = await bundle(['mqtt']) // what @smqtt/client adds to an app that already has mqtt.js
  expect(own.found, 'Node built-ins imported by the browser build').toEqual([])
  // core's #crypto-backend must resolve to noble, the client's #default-transport to fetch, and
  // its #default-verifier to the event loop (no worker threads).
  expect(own.inputs.some((p) => p.endsWith('core/src/crypto/backend.browser.ts'))).toBe(true)
  expect(own.inputs.some((p) => p.endsWith('core/src/crypto/backend.node.ts') || p.includes('sodium'))).toBe(false)
  expect(own.inputs.some((p) => p.endsWith('client/src/default-transport.browser.ts'))).toBe(true)
  expect(own.inputs.some((p) => p.endsWith('client/src/default-verifier.browser.ts'))).toBe(true)
  expect(
    own.inputs.filter((p) =>
      /node-https-transport|file-storage|default-(transport|verifier)\.node|verify-pool/.test(p),
    ),
  ).toEqual([])
  // The browser entry: the universal API, without the two Node-only helpers.
  expect(own.exports).toEqual(expect.arrayContaining(['secure', 'secureConnectAsync', 'enroll', 'localStorageStorage']))
  expect(own.exports).not.toContain('fileStorage')
  expect(own.exports).not.toContain('nodeHttpsTransport')

  const full = await bundle([]) // with mqtt.js's own browser build (dist/mqtt.esm.js)
  expect(full.found, 'Node built-ins imported by the browser build with mqtt.js').toEqual([])

  console.log(
    `browser bundle (esbuild, minified, es2022): @smqtt/client + core without mqtt.js ${kb(own.minified)}, ` +
      `gzip ${kb(own.gzip)}; with mqtt.js ${kb(full.minified)}, gzip ${kb(full.gzip)}`,
  )
  // A budget, so a dependency that drags in a large polyfill shows up here.
  expect(own.gzip).toBeLessThan(150 * 1024)
}, 60_000)

test('the guard is not vacuous: the Node entry, bundled for a browser, is caught', async () => {
  const node = await bundle(['mqtt'], './src/index.ts')
  expect(node.found.map((f) => f.path)).toEqual(expect.arrayContaining(['node:fs/promises', 'node:https']))
}, 60_000)
