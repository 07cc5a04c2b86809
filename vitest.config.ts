import { defineConfig } from 'vitest/config'

// Tests import each package's TypeScript sources through the `source` export condition,
// so `npm test` needs no build step.
export default defineConfig({
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'], externalConditions: ['source'] } },
  test: {
    projects: ['packages/*', 'examples/*', 'test'],
    testTimeout: 20_000,
    hookTimeout: 30_000,
  },
})
