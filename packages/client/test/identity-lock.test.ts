// The storage lock that keeps a second running copy of an identity out (issue 12, item 1): a
// lock file beside a fileStorage folder, shared by processes; stale locks are taken over.
import { spawnSync } from 'node:child_process'
import { readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { describe, expect, test } from 'vitest'
import { holdIdentity } from '../src/_identity-lock.js'
import { fileStorage, memoryStorage } from '../src/index.js'
import { tempDirs } from './_temp-dirs.js'

const freshDir = tempDirs('smqtt-lock-')

const lockFileIn = (dir: string) => join(dir, readdirSync(dir).find((name) => name.endsWith('.lock')) as string)
/** The pid of a process that has just exited: nothing runs under it now. */
const deadPid = () => spawnSync(process.execPath, ['-e', '0']).pid as number

describe('fileStorage lock', () => {
  test('a second storage on the same folder is refused while the first holds the lock, and gets it once released', async () => {
    const dir = freshDir()
    const release = await fileStorage(dir).lock?.('identity:thermostat-1')
    await expect(fileStorage(dir).lock?.('identity:thermostat-1')).rejects.toMatchObject({
      code: 'ERR_IDENTITY_IN_USE',
      message: expect.stringContaining(`process ${process.pid} on ${hostname()}`),
    })
    await expect(fileStorage(dir).lock?.('identity:other')).resolves.toBeTypeOf('function') // per name
    await release?.()
    const again = await fileStorage(dir).lock?.('identity:thermostat-1')
    await again?.()
  })

  test('the lock of a process that died on this host is taken over at once', async () => {
    const dir = freshDir()
    const release = await fileStorage(dir).lock?.('identity:thermostat-1')
    const path = lockFileIn(dir)
    const holder = JSON.parse(readFileSync(path, 'utf8')) as { token: string }
    writeFileSync(path, JSON.stringify({ pid: deadPid(), host: hostname(), token: holder.token }))
    const taken = await fileStorage(dir).lock?.('identity:thermostat-1')
    await release?.() // the old holder's release leaves the new holder's file alone
    await expect(fileStorage(dir).lock?.('identity:thermostat-1')).rejects.toMatchObject({
      code: 'ERR_IDENTITY_IN_USE',
    })
    await taken?.()
  })

  test('a lock from another host is respected while fresh and taken over once 30 s stale', async () => {
    const dir = freshDir()
    const release = await fileStorage(dir).lock?.('identity:thermostat-1')
    const path = lockFileIn(dir)
    writeFileSync(path, JSON.stringify({ pid: 1, host: 'elsewhere', token: 'x' }))
    await expect(fileStorage(dir).lock?.('identity:thermostat-1')).rejects.toMatchObject({
      code: 'ERR_IDENTITY_IN_USE',
    })
    const old = new Date(Date.now() - 31_000)
    utimesSync(path, old, old)
    const taken = await fileStorage(dir).lock?.('identity:thermostat-1')
    expect(JSON.parse(readFileSync(path, 'utf8'))).toMatchObject({ pid: process.pid, host: hostname() })
    await taken?.()
    await release?.()
  })

  test('an unreadable lock file (not written by SMQTT) does not lock anyone out', async () => {
    const dir = freshDir()
    const release = await fileStorage(dir).lock?.('identity:thermostat-1')
    writeFileSync(lockFileIn(dir), 'garbage')
    const taken = await fileStorage(dir).lock?.('identity:thermostat-1')
    await taken?.()
    await release?.()
  })
})

describe('holdIdentity', () => {
  test('clients of one process share the lock; it is let go when the last one releases', async () => {
    const storage = memoryStorage()
    const a = await holdIdentity(storage, 'thermostat-1')
    const b = await holdIdentity(storage, 'thermostat-1')
    await a()
    await a() // idempotent: does not release b's share
    await expect(storage.lock?.('identity:thermostat-1')).rejects.toMatchObject({ code: 'ERR_IDENTITY_IN_USE' })
    await b()
    const direct = await storage.lock?.('identity:thermostat-1')
    await expect(holdIdentity(storage, 'thermostat-1')).rejects.toMatchObject({ code: 'ERR_IDENTITY_IN_USE' })
    await direct?.()
    await (await holdIdentity(storage, 'thermostat-1'))() // a refusal is not remembered
  })

  test('a storage without lock locks nothing', async () => {
    const { get, set } = memoryStorage()
    const storage = { get, set }
    await (await holdIdentity(storage, 'a'))()
  })
})
