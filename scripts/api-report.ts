// The public API of each published package as committed text (`packages/*/api/*.api.md`), one
// report per entry point of its "exports", made by API Extractor from the built `dist/*.d.ts`:
// any change to what users can import shows in review.
//   npm run api         rebuilds and rewrites the reports
//   npm run api:check   rebuilds and fails if a report differs from what is committed
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import {
  CompilerState,
  Extractor,
  ExtractorConfig,
  ExtractorLogLevel,
  type IConfigFile,
} from '@microsoft/api-extractor'

const PACKAGES = ['core', 'client', 'keyserver', 'broker-plugin']
const check = process.argv.includes('--check')
const root = resolve(import.meta.dirname, '..')
const temp = mkdtempSync(join(tmpdir(), 'smqtt-api-'))

interface Manifest {
  readonly name: string
  readonly exports: Record<string, string | { readonly types?: string }>
}

/** Each subpath with types: `.` → `core`, `./verify-pool` → `core-verify-pool`. */
function entryPoints(folder: string, manifest: Manifest): { report: string; types: string }[] {
  const unscoped = manifest.name.replace(/^@smqtt\//, '')
  return Object.entries(manifest.exports).flatMap(([subpath, target]) => {
    if (typeof target === 'string' || target.types === undefined) return [] // policy.schema.json
    const report = subpath === '.' ? unscoped : `${unscoped}-${subpath.slice(2).replaceAll('/', '-')}`
    return [{ report, types: join(folder, target.types) }]
  })
}

function config(folder: string, report: string, types: string): ExtractorConfig {
  const configObject: IConfigFile = {
    projectFolder: folder,
    mainEntryPointFilePath: types,
    compiler: {
      overrideTsconfig: {
        compilerOptions: {
          module: 'nodenext',
          moduleResolution: 'nodenext',
          target: 'es2022',
          lib: ['es2022', 'dom'],
          types: ['node'],
          strict: true,
          skipLibCheck: true,
        },
        files: [types],
      },
    },
    apiReport: { enabled: true, reportFileName: report, reportFolder: join(folder, 'api'), reportTempFolder: temp },
    docModel: { enabled: false },
    dtsRollup: { enabled: false },
    tsdocMetadata: { enabled: false },
    messages: {
      // Findings (a type used but not exported, …) are written into the report, not printed.
      extractorMessageReporting: {
        default: { logLevel: ExtractorLogLevel.None, addToApiReportFile: true },
        'ae-missing-release-tag': { logLevel: ExtractorLogLevel.None, addToApiReportFile: false },
        // Missing TSDoc is not an API change, and its notes carry line numbers that churn.
        'ae-undocumented': { logLevel: ExtractorLogLevel.None, addToApiReportFile: false },
      },
      tsdocMessageReporting: { default: { logLevel: ExtractorLogLevel.None } },
      compilerMessageReporting: { default: { logLevel: ExtractorLogLevel.Error } },
    },
  }
  return ExtractorConfig.prepare({
    configObject,
    configObjectFullPath: join(folder, 'api-extractor.json'), // not a file: where paths resolve from
    packageJsonFullPath: join(folder, 'package.json'),
  })
}

let failed = 0
try {
  for (const name of PACKAGES) {
    const folder = join(root, 'packages', name)
    const manifest = JSON.parse(readFileSync(join(folder, 'package.json'), 'utf8')) as Manifest
    const entries = entryPoints(folder, manifest)
    // A report whose entry point is gone (a subpath removed from "exports") must go with it.
    const reports = new Set(entries.map((entry) => `${entry.report}.api.md`))
    const apiFolder = join(folder, 'api')
    for (const fileName of existsSync(apiFolder) ? readdirSync(apiFolder) : []) {
      if (!fileName.endsWith('.api.md') || reports.has(fileName)) continue
      const file = `packages/${name}/api/${fileName}`
      if (check) {
        failed++
        console.error(`${file}: no such entry point in package.json "exports" (npm run api deletes it)`)
      } else {
        rmSync(join(apiFolder, fileName))
        console.log(`${file}: deleted (no such entry point)`)
      }
    }
    const [first, ...rest] = entries.map((entry) => config(folder, entry.report, entry.types))
    if (first === undefined) continue
    if (!check) mkdirSync(join(folder, 'api'), { recursive: true })
    // One TypeScript program per package, shared by its entry points.
    const compilerState = CompilerState.create(first, { additionalEntryPoints: entries.map((entry) => entry.types) })
    for (const extractorConfig of [first, ...rest]) {
      const result = Extractor.invoke(extractorConfig, {
        localBuild: !check,
        compilerState,
        // Only errors and warnings reach the console ("Analysis will use the bundled TypeScript…" does not).
        messageCallback: (message) => {
          if (message.logLevel === ExtractorLogLevel.Info || message.logLevel === ExtractorLogLevel.Verbose)
            message.handled = true
        },
      })
      const fileName = extractorConfig.reportConfigs[0]?.fileName ?? ''
      const file = `packages/${name}/api/${fileName}`
      if (!result.succeeded) {
        failed++
        console.error(`${file}: ${check && result.apiReportChanged ? 'differs (npm run api rewrites it):' : 'failed'}`)
        if (check && result.apiReportChanged)
          spawnSync('git', ['diff', '--no-index', '--', join(root, file), join(temp, fileName)], { stdio: 'inherit' })
      } else console.log(`${file}: ${result.apiReportChanged ? 'updated' : 'unchanged'}`)
    }
  }
} finally {
  rmSync(temp, { recursive: true, force: true })
}
if (failed > 0) process.exitCode = 1
