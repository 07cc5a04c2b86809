// Node only: kept out of storage.ts so a browser build never sees node:fs.
import { link, mkdir, open, readFile, rename, stat, unlink, utimes, writeFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { cryptoBackend, SmqttError, sha256 } from '@smqtt/core'
import type { StringStorage } from './storage.js'

const FILE_MODE = 0o600 // the identity holds private keys
const DIR_MODE = 0o700
const MAX_NAME = 200

/** A held lock's file is touched this often, so others can tell a live holder from a dead one. */
const LOCK_HEARTBEAT_MS = 10_000
/** A lock file untouched for this long belongs to a holder that is gone (or frozen: see lockFile). */
const LOCK_STALE_MS = 30_000

const randomHex = (bytes: number) => Buffer.from(cryptoBackend.randomBytes(bytes)).toString('hex')

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
export function fileStorage(dir: string): StringStorage {
  let ready: Promise<unknown> | undefined
  const ensureDir = () => {
    ready ??= mkdir(dir, { recursive: true, mode: DIR_MODE })
    return ready
  }
  // Serialize writes per key: two racing renames could otherwise leave the older value.
  const queues = new Map<string, Promise<void>>()

  async function write(path: string, value: string): Promise<void> {
    await ensureDir()
    const temp = `${path}.${randomHex(6)}.tmp`
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
    lock: async (name) => {
      await ensureDir()
      return lockFile(join(dir, `${fileName(name)}.lock`), name)
    },
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

interface LockHolder {
  readonly pid: number
  readonly host: string
  readonly token: string
}

/**
 * An exclusive lock as a file holding its owner (pid, host, a random token). It is created
 * complete or not at all (written aside, then hard-linked into place, which fails if the name
 * exists) and touched every 10 s while held. A lock whose holder is a dead process of this host,
 * or whose file is 30 s stale (a holder on another host, or a container whose pids restarted), is
 * taken over. A holder frozen for longer than that can lose the lock while it sleeps; the key
 * server's sequence ranges still keep the two from ever sharing a nonce.
 */
/** Lock files this process holds, with their tokens: one naming this pid but not held here is a previous run's (pid reused). */
const heldHere = new Map<string, string>()

async function lockFile(path: string, name: string): Promise<() => Promise<void>> {
  const me: LockHolder = { pid: process.pid, host: hostname(), token: randomHex(16) }
  const mine = JSON.stringify(me)
  for (let attempt = 0; attempt < 3; attempt++) {
    const temp = `${path}.${randomHex(6)}.tmp`
    await writeFile(temp, mine, { mode: FILE_MODE, flag: 'wx' })
    try {
      await link(temp, path)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const holder = await lockHolder(path)
      if (holder === 'gone' || (await holderIsGone(path, holder))) {
        await unlink(path).catch(() => {})
        continue
      }
      throw new SmqttError(
        'ERR_IDENTITY_IN_USE',
        `${name} is in use by process ${holder.pid} on ${holder.host} (lock ${path}; it is taken over once that process has been gone for ${LOCK_STALE_MS / 1000} s)`,
      )
    } finally {
      await unlink(temp).catch(() => {})
    }
    heldHere.set(path, me.token)
    const heartbeat = setInterval(() => {
      const now = new Date()
      utimes(path, now, now).catch(() => {})
    }, LOCK_HEARTBEAT_MS)
    heartbeat.unref()
    return async () => {
      clearInterval(heartbeat)
      // Only our own lock: after a takeover the file is someone else's.
      if (heldHere.get(path) === me.token) heldHere.delete(path)
      if ((await readFile(path, 'utf8').catch(() => '')) === mine) await unlink(path).catch(() => {})
    }
  }
  throw new SmqttError('ERR_IDENTITY_IN_USE', `${name}: could not take over the stale lock ${path}`)
}

async function lockHolder(path: string): Promise<LockHolder | 'gone'> {
  try {
    const holder = JSON.parse(await readFile(path, 'utf8')) as Partial<LockHolder>
    if (typeof holder?.pid === 'number' && typeof holder.host === 'string' && typeof holder.token === 'string')
      return holder as LockHolder
    return 'gone' // not a lock file this code wrote
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'gone'
    if (err instanceof SyntaxError) return 'gone'
    throw err
  }
}

async function holderIsGone(path: string, holder: LockHolder): Promise<boolean> {
  if (
    holder.host === hostname() &&
    (holder.pid === process.pid ? heldHere.get(path) !== holder.token : !processAlive(holder.pid))
  )
    return true
  const touched = await stat(path).then(
    (s) => s.mtimeMs,
    () => 0,
  )
  return Date.now() - touched > LOCK_STALE_MS
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
