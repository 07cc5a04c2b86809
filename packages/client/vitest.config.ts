import { defineProject } from 'vitest/config'

export default defineProject({
  resolve: { conditions: ['smqtt-source'] },
  ssr: { resolve: { conditions: ['smqtt-source'], externalConditions: ['smqtt-source'] } },
  test: { name: 'client', include: ['test/**/*.test.ts'], testTimeout: 30_000, hookTimeout: 30_000 },
})
