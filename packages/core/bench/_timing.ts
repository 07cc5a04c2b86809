// Timing for the benchmarks of every package: the fastest of interleaved batches.

/** Microseconds per call of one timed batch at least `batchMs` long. */
function batch(fn: () => unknown, batchMs: number): number {
  let calls = 0
  const start = performance.now()
  let elapsed = 0
  do {
    fn()
    calls++
    elapsed = performance.now() - start
  } while (elapsed < batchMs)
  return (elapsed * 1000) / calls
}

/**
 * Microseconds per call of each function: seven rounds, each timing every function once in
 * turn, then the fastest batch of each. Interleaving gives an envelope and its raw primitives
 * the same background load; the minimum drops what other processes added.
 */
export function measureTogether<K extends string>(fns: Record<K, () => unknown>, batchMs: number): Record<K, number> {
  const names = Object.keys(fns) as K[]
  for (const name of names) batch(fns[name], batchMs / 2) // warm up the JIT
  const best = Object.fromEntries(names.map((name) => [name, Number.POSITIVE_INFINITY])) as Record<K, number>
  for (let round = 0; round < 7; round++)
    for (const name of names) best[name] = Math.min(best[name], batch(fns[name], batchMs))
  return best
}
