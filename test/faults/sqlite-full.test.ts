// Fault: the disk under the key server's SQLite file fills up, then is freed; later the file
// sits on a read-only file system. The database lives on a tmpfs of its own (2 MiB), filled
// with a ballast file, so SQLite meets a real ENOSPC (SQLITE_FULL), not a simulation. The key
// server stays up, answers 503 ERR_STORE_UNAVAILABLE for writes while reads go on, accepts
// writes again once space is back, and the file passes PRAGMA integrity_check with every
// earlier row in it. On a read-only mount it refuses to start, naming the file.
//
// Why not PRAGMA max_page_count: it holds for one connection only, and the key server's
// connection is private to its store. Why not a read-only remount under the running server:
// Linux refuses it (EBUSY) while the file is open for writing.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createEnrollmentRequest, generateIdentity } from '@smqtt/core'
import { type Harness, type Response, startHarness } from '@smqtt/test-kit/keyserver'
import Database from 'better-sqlite3'
import { afterAll, expect, test } from 'vitest'
import { report } from './_cluster.js'
import { fillDiskUnderStore, mountSmallDisk } from './_full-disk.js'

const dir = mkdtempSync(join(tmpdir(), 'smqtt-fault-sqlite-'))
const run = (...args: string[]) => spawnSync(args[0] as string, args.slice(1), { stdio: 'ignore' }).status === 0
/** Mounting needs root with CAP_SYS_ADMIN; without it the test is skipped (and says so). */
const mounted = mountSmallDisk(dir)
let h: Harness | undefined

afterAll(async () => {
  await h?.close({ keepFiles: true })
  if (mounted) run('umount', dir)
  rmSync(dir, { recursive: true, force: true })
})

const unavailable = (r: Response) =>
  r.status === 503 && (r.body as { error?: { code?: string } }).error?.code === 'ERR_STORE_UNAVAILABLE'

test.runIf(mounted)(
  'disk full: 503 ERR_STORE_UNAVAILABLE, reads go on, writes resume after space is freed, nothing lost; a read-only file refuses to start',
  async () => {
    const keyServer = await startHarness({ dir })
    h = keyServer
    keyServer.clock.now = Math.floor(Date.now() / 1000)
    const enroll = async (id: string): Promise<Response> => {
      const token = await keyServer.admin('POST', '/v1/admin/enrollment-tokens', { principalId: id, roles: ['app'] })
      if (token.status !== 201) return token
      const request = createEnrollmentRequest(generateIdentity(id), (token.body as { token: string }).token)
      return keyServer.request('POST', '/v1/enroll', { body: request })
    }
    for (let i = 0; i < 5; i++) expect((await enroll(`before-${i}`)).status).toBe(200)
    const principalsBefore = (await keyServer.admin('GET', '/v1/admin/principals')).body
    const auditBefore = (await keyServer.admin('GET', '/v1/admin/audit?limit=1000')).body as { entries: unknown[] }

    const ballast = fillDiskUnderStore(dir)

    const answers: Response[] = []
    for (let i = 0; i < 5; i++) answers.push(await enroll(`full-${i}`))
    const read = await keyServer.admin('GET', '/v1/admin/principals')
    expect(answers.every(unavailable)).toBe(true)
    expect(read.status).toBe(200)
    expect(read.body).toEqual(principalsBefore)

    rmSync(ballast)
    const after = await enroll('after-0')
    expect(after.status).toBe(200)

    await keyServer.close({ keepFiles: true })
    h = undefined
    const check = new Database(join(dir, 'keyserver.db'), { readonly: true })
    const integrity = check.pragma('integrity_check', { simple: true })
    const ids = (check.prepare('SELECT id FROM principals ORDER BY kid').all() as { id: string }[]).map((r) => r.id)
    const auditRows = (check.prepare('SELECT count(*) AS n FROM audit').get() as { n: number }).n
    check.close()
    expect(integrity).toBe('ok')
    expect(ids).toEqual(['before-0', 'before-1', 'before-2', 'before-3', 'before-4', 'after-0'])
    expect(auditRows).toBeGreaterThan(auditBefore.entries.length)

    // Read-only: the key server refuses to start rather than fail at its first write.
    expect(run('mount', '-o', 'remount,ro', dir)).toBe(true)
    await expect(startHarness({ dir, masterKey: keyServer.masterKey })).rejects.toThrow(
      /cannot open SQLite database .*keyserver\.db for writing/,
    )
    report({
      fault: 'sqlite-disk-full',
      sent: answers.length + 1,
      received: 1,
      lost: 0,
      duplicates: 0,
      refusedWhileFull: answers.filter(unavailable).length,
      integrity,
    })
  },
  60_000,
)
