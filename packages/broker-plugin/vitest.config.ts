import { defineProject } from 'vitest/config'

export default defineProject({
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'], externalConditions: ['source'] } },
  test: { name: 'broker-plugin', include: ['test/**/*.test.ts'], testTimeout: 30_000, hookTimeout: 30_000 },
})
