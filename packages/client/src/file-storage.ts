// Node only: kept out of storage.ts so a browser build never sees node:fs.
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { cryptoBackend, sha256 } from '@smqtt/core'
import type { ClientStorage } from './storage.js'

const FILE_MODE = 0o600 // the identity holds private keys
const DIR_MODE = 0o700
const MAX_NAME = 200

/** A portable file name for any key: percent-encoded, hashed when too long for a file system. */
function fileName(key: string): string {
  if (typeof key !== 'string' || key.length === 0) throw new TypeError('storage key must be a non-empty string')
  const encoded = encodeURIComponent(key).replace(/[.!'()*~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
  if (encoded.length <= MAX_NAME) return encoded
  return `h-${Buffer.from(sha256(new TextEncoder().encode(key))).toString('hex')}`
}

/**
 * Storage in a directory, one file per key (mode 0600). Each `set` writes a temporary file,
 * fsyncs it, renames it over the old one and fsyncs the directory, so a crash leaves either
 * the old or the new value, never a torn one, and a resolved `set` survives power loss.
 * Writes to one key are applied in call order.
 *
 * @example
 * ```ts
 * const storage = fileStorage('/var/lib/thermostat/smqtt')
 * const enrollment = await loadEnrollment(storage)
 * ```
 */
export function fileStorage(dir: string): ClientStorage {
  let ready: Promise<unknown> | undefined
  const ensureDir = () => {
    ready ??= mkdir(dir, { recursive: true, mode: DIR_MODE })
    return ready
  }
  // Serialize writes per key: two racing renames could otherwise leave the older value.
  const queues = new Map<string, Promise<void>>()

  async function write(path: string, value: string): Promise<void> {
    await ensureDir()
    const temp = `${path}.${Buffer.from(cryptoBackend.randomBytes(6)).toString('hex')}.tmp`
    const file = await open(temp, 'wx', FILE_MODE)
    try {
      await file.writeFile(value, 'utf8')
      await file.sync()
    } finally {
      await file.close()
    }
    try {
      await rename(temp, path)
    } catch (err) {
      await unlink(temp).catch(() => {})
      throw err
    }
    // The rename itself is durable only once the directory entry is flushed.
    const directory = await open(dir, 'r')
    try {
      await directory.sync()
    } finally {
      await directory.close()
    }
  }

  return {
    async get(key) {
      try {
        return await readFile(join(dir, fileName(key)), 'utf8')
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
        throw err
      }
    },
    set(key, value) {
      const path = join(dir, fileName(key))
      const previous = queues.get(path) ?? Promise.resolve()
      const next = previous.catch(() => {}).then(() => write(path, value))
      queues.set(path, next)
      void next
        .finally(() => {
          if (queues.get(path) === next) queues.delete(path)
        })
        .catch(() => {})
      return next
    },
  }
}
