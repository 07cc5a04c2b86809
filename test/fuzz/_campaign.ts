// What the fuzz scripts share: their settings from the environment, inputs generated in lazy
// batches, and the memory table of their markdown reports.
import fc from 'fast-check'

/** FUZZ_RUNS and FUZZ_CONCURRENCY (or the script's defaults), FUZZ_SEED (default: the clock; set it to replay a run). */
export function fuzzSettings(defaults: { runs: number; concurrency?: number }) {
  return {
    runs: Number(process.env.FUZZ_RUNS ?? defaults.runs),
    seed: process.env.FUZZ_SEED === undefined ? Date.now() : Number(process.env.FUZZ_SEED),
    concurrency: Number(process.env.FUZZ_CONCURRENCY ?? defaults.concurrency ?? 1),
  }
}

/** `runs` inputs in batches of `size`, each generated when needed (seed + batch index), so they never sit in memory at once. */
export function* lazyBatches<T>(inputs: fc.Arbitrary<T>, runs: number, seed: number, size: number): Generator<T[]> {
  for (let done = 0, i = 0; done < runs; done += size, i++)
    yield fc.sample(inputs, { numRuns: Math.min(size, runs - done), seed: seed + i })
}

/**
 * Runs `campaign` against `server`, closes the server either way, and sets the exit code: 1 when
 * the campaign found a problem (returned true) or threw.
 */
export async function runToExitCode<Server extends { close(): Promise<void> }>(
  server: Server,
  campaign: (server: Server) => Promise<boolean>,
): Promise<void> {
  let failed = true
  try {
    failed = await campaign(server)
  } catch (err) {
    console.error(err)
  } finally {
    await server.close()
  }
  process.exitCode = failed ? 1 : 0
}

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`

/** Memory at the start, each quarter and the end of a run, as markdown table rows under `header`. */
export function memoryTable<Sample extends { readonly rss: number; readonly heapUsed: number }>(
  header: string,
  samples: readonly Sample[],
  sentBy: (sample: Sample) => number,
): string[] {
  return [
    header,
    '| ---: | ---: | ---: |',
    ...[0, 0.25, 0.5, 0.75, 1]
      .map((at) => samples[Math.round(at * (samples.length - 1))] as Sample)
      .map((m) => `| ${sentBy(m)} | ${mib(m.rss)} | ${mib(m.heapUsed)} |`),
  ]
}
