import { defineProject } from 'vitest/config'

export default defineProject({
  resolve: { conditions: ['smqtt-source'] },
  ssr: { resolve: { conditions: ['smqtt-source'], externalConditions: ['smqtt-source'] } },
  test: { name: 'integration', include: ['**/*.test.ts'], exclude: ['**/node_modules/**'], testTimeout: 30_000 },
})
