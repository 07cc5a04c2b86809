// Default backend on Node: native when sodium-native is installed (it is an optional
// dependency), else the portable one, with a warning so the 30x slowdown is not silent.
import type { CryptoBackend } from './backend.js'
import { createNativeBackend, loadSodium } from './native.js'
import { nobleBackend } from './noble.js'

function pickBackend(): CryptoBackend {
  const sodium = loadSodium()
  if (sodium) return createNativeBackend(sodium)
  process.emitWarning('sodium-native is not installed: SMQTT uses the portable (slower) noble backend', {
    code: 'SMQTT_PORTABLE_CRYPTO',
  })
  return nobleBackend
}

export const defaultBackend: CryptoBackend = pickBackend()
