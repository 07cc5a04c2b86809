import { defineConfig } from 'vitest/config'

// Tests import each package's TypeScript sources through the `smqtt-source` export condition,
// so `npm test` needs no build step.
export default defineConfig({
  resolve: { conditions: ['smqtt-source'] },
  ssr: { resolve: { conditions: ['smqtt-source'], externalConditions: ['smqtt-source'] } },
  test: {
    projects: ['packages/*', 'examples/*', 'test'],
    // Two test files at a time on CI's 2 cores (7 minutes instead of 11): the tests that a
    // loaded machine used to break are robust to it (docs/decisions.md, eighth session).
    maxWorkers: 2,
    testTimeout: 20_000,
    hookTimeout: 30_000,
  },
})
