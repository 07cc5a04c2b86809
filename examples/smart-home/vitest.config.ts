import { defineProject } from 'vitest/config'

export default defineProject({
  resolve: { conditions: ['smqtt-source'] },
  ssr: { resolve: { conditions: ['smqtt-source'], externalConditions: ['smqtt-source'] } },
  test: { name: 'smart-home', include: ['test/**/*.test.ts'], testTimeout: 60_000, hookTimeout: 30_000 },
})
