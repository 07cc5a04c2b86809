import { defineProject } from 'vitest/config'

export default defineProject({
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'], externalConditions: ['source'] } },
  test: { name: 'integration', include: ['**/*.test.ts'], exclude: ['**/node_modules/**'], testTimeout: 30_000 },
})
