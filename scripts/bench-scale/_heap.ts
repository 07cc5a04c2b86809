// The heap in use after a full garbage collection, for curves that report memory per principal.
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

export function heapAfterGc(): number {
  gc()
  return process.memoryUsage().heapUsed
}
