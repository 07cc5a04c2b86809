import { defineConfig } from 'vitest/config'

// Tests import each package's TypeScript sources through the `source` export condition,
// so `npm test` needs no build step.
export default defineConfig({
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'], externalConditions: ['source'] } },
  test: {
    projects: ['packages/*', 'examples/*', 'test'],
    // Two files at a time even on 2 cores (Vitest's default is cores - 1): most files wait on
    // sockets, child processes and timers, so CI's wall time falls by about a third.
    maxWorkers: 2,
    testTimeout: 20_000,
    hookTimeout: 30_000,
  },
})
