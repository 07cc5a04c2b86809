// A real full disk under the key server's SQLite store: a 2 MiB tmpfs of its own, filled with a
// ballast file, so SQLite meets a real ENOSPC (SQLITE_FULL), not a simulation.
import { spawnSync } from 'node:child_process'
import { closeSync, openSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'

/** Mounts a 2 MiB tmpfs on `dir`. False without root and CAP_SYS_ADMIN: the caller skips its test. */
export const mountSmallDisk = (dir: string): boolean =>
  spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir], { stdio: 'ignore' }).status === 0

/**
 * Empties the write-ahead log of the store in `dir` (so its next write must grow a file), then
 * writes a ballast file until the disk is full, down to the last block. Returns the ballast's
 * path: removing it frees the space.
 */
export function fillDiskUnderStore(dir: string): string {
  const side = new Database(join(dir, 'keyserver.db'))
  side.pragma('wal_checkpoint(TRUNCATE)')
  side.close()
  const ballast = join(dir, 'ballast')
  const fd = openSync(ballast, 'w')
  try {
    for (const size of [65_536, 4_096, 512, 1])
      for (;;) {
        try {
          writeSync(fd, Buffer.alloc(size))
        } catch {
          break
        }
      }
  } finally {
    closeSync(fd)
  }
  return ballast
}
