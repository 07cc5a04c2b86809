// Starts one of this folder's worker modules (verify-worker, snapshot-worker) on a thread.
import { Worker } from 'node:worker_threads'

/**
 * Starts the worker module `name` beside `from` (the caller's `import.meta.url`), from compiled
 * JavaScript (dist/) or from the TypeScript sources (vitest, `tsx --conditions=smqtt-source`).
 * Node 20 does not pass the main thread's module hooks, nor an `--import` in `execArgv`, on to
 * worker threads, and tsx's own `tsx/esm` entry registers on the main thread only: so a source
 * worker is a one-line bootstrap that registers tsx's loader (its `register` API) in the worker,
 * then imports the .ts file; `--conditions=smqtt-source` makes `@smqtt/core` resolve to its
 * sources there too.
 */
export function startWorker(name: string, from: string): Worker {
  const fromSources = from.endsWith('.ts')
  const file = new URL(`./${name}${fromSources ? '.ts' : '.js'}`, from)
  if (!fromSources) return new Worker(file)
  const tsx = import.meta.resolve('tsx/esm/api')
  const bootstrap = `import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return import(${JSON.stringify(file.href)}) })`
  return new Worker(bootstrap, { eval: true, execArgv: ['--conditions=smqtt-source'] })
}
