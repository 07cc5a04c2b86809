import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inspect } from 'node:util'
import { cryptoBackend, isSmqttError } from '@smqtt/core'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { MASTER_KEY_ENV, MasterKey } from '../src/master-key.js'

const encoder = new TextEncoder()
const posixOnly = test.skipIf(process.platform === 'win32')

function randomKeyText(length = 32): string {
  return Buffer.from(cryptoBackend.randomBytes(length)).toString('base64url')
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    return isSmqttError(err) ? err.code : `not an SmqttError: ${String(err)}`
  }
  return undefined
}

let dir: string

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'smqtt-master-key-'))
})

afterEach(() => {
  rmSync(dir, { recursive: true, force: true })
})

function keyFile(content: string, mode = 0o600): string {
  const path = join(dir, `key-${Math.random().toString(36).slice(2)}`)
  writeFileSync(path, content, { mode })
  chmodSync(path, mode) // the umask may have narrowed the mode; tests want it exact
  return path
}

describe('seal and open', () => {
  const masterKey = MasterKey.generate()

  test('round-trips secrets of any length, including empty', () => {
    for (const plaintext of [new Uint8Array(0), encoder.encode('epoch key'), cryptoBackend.randomBytes(1000)]) {
      expect(masterKey.open('epoch:7:1', masterKey.seal('epoch:7:1', plaintext))).toEqual(plaintext)
    }
  })

  test('lays out version 0x01 || nonce || ChaCha20-Poly1305 with AAD binding the label', () => {
    const keyText = randomKeyText()
    const loaded = MasterKey.fromEnvOrFile({ env: { [MASTER_KEY_ENV]: keyText } })
    const plaintext = encoder.encode('secret')
    const sealed = loaded.seal('epoch:7:1', plaintext)
    expect(sealed.length).toBe(1 + 12 + plaintext.length + 16)
    expect(sealed[0]).toBe(0x01)
    const opened = cryptoBackend.aeadOpen(
      'chacha20-poly1305',
      new Uint8Array(Buffer.from(keyText, 'base64url')),
      sealed.subarray(1, 13),
      sealed.subarray(13),
      encoder.encode('smqtt/v1 at-rest epoch:7:1'),
    )
    expect(opened).toEqual(plaintext)
  })

  test('uses a fresh nonce each time', () => {
    const plaintext = encoder.encode('same')
    expect(masterKey.seal('l', plaintext)).not.toEqual(masterKey.seal('l', plaintext))
  })

  test('refuses to open under another master key', () => {
    const sealed = masterKey.seal('epoch:7:1', encoder.encode('secret'))
    expect(codeOf(() => MasterKey.generate().open('epoch:7:1', sealed))).toBe('ERR_SEALED_SECRET_INVALID')
  })

  test('refuses a secret moved to another label', () => {
    const sealed = masterKey.seal('epoch:7:1', encoder.encode('secret'))
    expect(codeOf(() => masterKey.open('epoch:7:2', sealed))).toBe('ERR_SEALED_SECRET_INVALID')
  })

  test('refuses any altered byte, truncation, or extra byte, always with the same message', () => {
    const sealed = masterKey.seal('label', encoder.encode('secret'))
    const messages = new Set<string>()
    const attempt = (bytes: Uint8Array) => {
      try {
        masterKey.open('label', bytes)
        expect.fail('an altered secret opened')
      } catch (err) {
        expect(isSmqttError(err, 'ERR_SEALED_SECRET_INVALID')).toBe(true)
        messages.add((err as Error).message)
      }
    }
    for (let i = 0; i < sealed.length; i++) {
      const altered = sealed.slice()
      altered[i] = (altered[i] ?? 0) ^ 0x01
      attempt(altered)
    }
    attempt(sealed.subarray(0, sealed.length - 1))
    attempt(sealed.subarray(0, 28))
    attempt(new Uint8Array(0))
    const extended = new Uint8Array(sealed.length + 1)
    extended.set(sealed)
    attempt(extended)
    expect(messages.size).toBe(1)
  })

  test('treats wrong argument types as programmer mistakes', () => {
    expect(() => masterKey.seal(7 as unknown as string, new Uint8Array(1))).toThrow(TypeError)
    expect(() => masterKey.seal('l', 'text' as unknown as Uint8Array)).toThrow(TypeError)
    expect(() => masterKey.open('l', 'text' as unknown as Uint8Array)).toThrow(TypeError)
  })
})

describe('fromEnvOrFile', () => {
  test('takes the environment variable over the file', () => {
    const fromEnv = MasterKey.fromEnvOrFile({ env: { [MASTER_KEY_ENV]: randomKeyText() } })
    const file = keyFile(`${randomKeyText()}\n`)
    const both = MasterKey.fromEnvOrFile({ env: { [MASTER_KEY_ENV]: randomKeyText() }, file })
    const fileOnly = MasterKey.fromEnvOrFile({ env: {}, file })
    const sealed = fileOnly.seal('l', encoder.encode('x'))
    expect(codeOf(() => both.open('l', sealed))).toBe('ERR_SEALED_SECRET_INVALID')
    expect(codeOf(() => fromEnv.open('l', sealed))).toBe('ERR_SEALED_SECRET_INVALID')
    expect(MasterKey.fromEnvOrFile({ env: {}, file }).open('l', sealed)).toEqual(encoder.encode('x'))
  })

  test('uses the file when the variable is empty', () => {
    const file = keyFile(randomKeyText())
    const sealed = MasterKey.fromEnvOrFile({ env: {}, file }).seal('l', encoder.encode('x'))
    expect(MasterKey.fromEnvOrFile({ env: { [MASTER_KEY_ENV]: '' }, file }).open('l', sealed)).toEqual(
      encoder.encode('x'),
    )
  })

  test('reads the same key from the environment and from a file with or without a trailing newline', () => {
    const keyText = randomKeyText()
    const sealed = MasterKey.fromEnvOrFile({ env: { [MASTER_KEY_ENV]: keyText } }).seal('l', encoder.encode('x'))
    for (const content of [keyText, `${keyText}\n`, `${keyText}\r\n`]) {
      expect(MasterKey.fromEnvOrFile({ env: {}, file: keyFile(content) }).open('l', sealed)).toEqual(
        encoder.encode('x'),
      )
    }
  })

  test('refuses a missing key', () => {
    expect(codeOf(() => MasterKey.fromEnvOrFile({ env: {} }))).toBe('ERR_MASTER_KEY_INVALID')
    expect(codeOf(() => MasterKey.fromEnvOrFile({ env: {}, file: join(dir, 'absent.key') }))).toBe(
      'ERR_MASTER_KEY_INVALID',
    )
    expect(codeOf(() => MasterKey.fromEnvOrFile({ env: {}, file: dir }))).toBe('ERR_MASTER_KEY_INVALID')
  })

  test('refuses keys of the wrong length', () => {
    for (const keyText of [randomKeyText(31), randomKeyText(33), randomKeyText(16), '']) {
      expect(codeOf(() => MasterKey.fromEnvOrFile({ env: {}, file: keyFile(keyText) }))).toBe('ERR_MASTER_KEY_INVALID')
    }
    expect(codeOf(() => MasterKey.fromEnvOrFile({ env: { [MASTER_KEY_ENV]: randomKeyText(31) } }))).toBe(
      'ERR_MASTER_KEY_INVALID',
    )
  })

  test('refuses anything but strict base64url, and never echoes the value', () => {
    const good = randomKeyText()
    const standardBase64 = Buffer.from(Buffer.from(good, 'base64url')).toString('base64')
    // 43 characters carry 258 bits: the last character of a canonical encoding has its low 2 bits clear.
    const lastIndex = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.indexOf(good.at(-1) ?? 'A')
    const nonCanonical =
      good.slice(0, -1) + 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'[lastIndex | 1]
    for (const keyText of [
      `${good}=`,
      standardBase64.includes('+') || standardBase64.includes('/') ? standardBase64 : `${good.slice(0, -2)}+/`,
      `${good.slice(0, 20)} ${good.slice(20)}`,
      nonCanonical,
      `${good}\n`,
    ]) {
      try {
        MasterKey.fromEnvOrFile({ env: { [MASTER_KEY_ENV]: keyText } })
        expect.fail(`accepted ${JSON.stringify(keyText)}`)
      } catch (err) {
        expect(isSmqttError(err, 'ERR_MASTER_KEY_INVALID')).toBe(true)
        expect((err as Error).message).not.toContain(good.slice(0, 10))
      }
    }
    expect(codeOf(() => MasterKey.fromEnvOrFile({ env: {}, file: keyFile(`${good}\n\n`) }))).toBe(
      'ERR_MASTER_KEY_INVALID',
    )
  })

  posixOnly('refuses a key file that group or others may access', () => {
    for (const mode of [0o644, 0o640, 0o604, 0o620, 0o660]) {
      const file = keyFile(randomKeyText(), mode)
      expect(codeOf(() => MasterKey.fromEnvOrFile({ env: {}, file }))).toBe('ERR_MASTER_KEY_INVALID')
    }
    expect(() => MasterKey.fromEnvOrFile({ env: {}, file: keyFile(randomKeyText(), 0o644) })).toThrow(/chmod 600/)
    expect(() => MasterKey.fromEnvOrFile({ env: {}, file: keyFile(randomKeyText(), 0o400) })).not.toThrow()
  })
})

describe('writeFile', () => {
  test('writes a 0600 file that loads as the same key', () => {
    const masterKey = MasterKey.generate()
    const path = join(dir, 'master.key')
    masterKey.writeFile(path)
    if (process.platform !== 'win32') expect(statSync(path).mode & 0o777).toBe(0o600)
    expect(readFileSync(path, 'utf8')).toMatch(/^[A-Za-z0-9_-]{43}\n$/)
    const sealed = masterKey.seal('l', encoder.encode('x'))
    expect(MasterKey.fromEnvOrFile({ env: {}, file: path }).open('l', sealed)).toEqual(encoder.encode('x'))
  })

  test('refuses to overwrite an existing file', () => {
    const path = join(dir, 'master.key')
    MasterKey.generate().writeFile(path)
    const before = readFileSync(path, 'utf8')
    expect(() => MasterKey.generate().writeFile(path)).toThrow(/already exists/)
    expect(readFileSync(path, 'utf8')).toBe(before)
  })
})

describe('redaction', () => {
  test('JSON.stringify and util.inspect never show the key', () => {
    const keyText = randomKeyText()
    const masterKey = MasterKey.fromEnvOrFile({ env: { [MASTER_KEY_ENV]: keyText } })
    const keyHex = Buffer.from(keyText, 'base64url').toString('hex')
    const renderings = [
      JSON.stringify(masterKey),
      JSON.stringify({ config: { masterKey } }),
      inspect(masterKey, { showHidden: true, depth: Number.POSITIVE_INFINITY }),
      inspect({ masterKey }),
      String(masterKey),
    ]
    for (const text of renderings) {
      expect(text).not.toContain(keyText)
      expect(text).not.toContain(keyHex)
      expect(text).not.toMatch(/\d+, \d+, \d+/) // no byte array
    }
    expect(JSON.stringify(masterKey)).toBe('"[MasterKey redacted]"')
    expect(inspect(masterKey)).toContain('redacted')
  })
})
