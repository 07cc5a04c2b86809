import { defineProject } from 'vitest/config'

export default defineProject({
  resolve: { conditions: ['smqtt-source'] },
  ssr: { resolve: { conditions: ['smqtt-source'], externalConditions: ['smqtt-source'] } },
  test: { name: 'core', include: ['test/**/*.test.ts'], testTimeout: 20_000 },
})
