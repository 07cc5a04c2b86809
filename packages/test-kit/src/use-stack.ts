// The client stack a vitest file shares. Apart from `./client` so that benches and scripts,
// which run outside vitest, never load vitest.
import { afterAll, afterEach, beforeAll } from 'vitest'
import { type Stack, startStack } from './client-stack.js'

/**
 * The stack a test file shares: started before its first test, its clients closed after each
 * test, everything closed after the last. Use it at the top level of the file.
 */
export function useStack(): Stack {
  const stack = {} as Stack
  beforeAll(async () => {
    Object.assign(stack, await startStack())
  })
  afterEach(async () => {
    await stack.closeClients()
  })
  afterAll(async () => {
    await stack.close?.()
  })
  return stack
}
