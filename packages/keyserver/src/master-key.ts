// The master key encrypts the key server's secrets at rest (epoch keys, its own signing key), so
// that a copy of the database alone reveals nothing. It comes from the environment or a 0600
// file, never from the database it protects.
//
// Sealed form: 0x01 (version) || 12-byte random nonce || ChaCha20-Poly1305 ciphertext and tag,
// with associated data utf8('smqtt/v1 at-rest ' + label). The label names the slot a secret
// belongs to (e.g. 'epoch:7:1'), so a secret copied into another slot fails to open. Random
// 96-bit nonces are safe here: a key server seals far fewer than the ~2^32 secrets per key
// after which a nonce collision becomes a concern.
import { statSync, writeFileSync } from 'node:fs'
import { cryptoBackend, SmqttError } from '@smqtt/core'
import { readDeploymentFile } from '@smqtt/core/file-modes'

/** The environment variable that holds the master key (base64url, 32 bytes); it wins over the file. */
export const MASTER_KEY_ENV = 'SMQTT_MASTER_KEY'

const KEY_LENGTH = 32
const SEALED_VERSION = 0x01
const NONCE_LENGTH = 12
const TAG_LENGTH = 16
const AAD_PREFIX = 'smqtt/v1 at-rest '
const SECRET_FILE_MODE = 0o600
const textEncoder = new TextEncoder()

export interface MasterKeySource {
  /** Where to look for `SMQTT_MASTER_KEY`; defaults to `process.env`. An empty value counts as unset. */
  readonly env?: Readonly<Record<string, string | undefined>>
  /** A file holding the key as base64url, optionally followed by one newline; must be mode 0600 or stricter. */
  readonly file?: string
}

/**
 * The key server's master key. Its bytes never leave the object: it seals and opens, and writes
 * itself to a new 0600 file; `JSON.stringify` and `util.inspect` show it redacted.
 *
 * @example
 * ```ts
 * const masterKey = MasterKey.fromEnvOrFile({ file: '/etc/smqtt/master.key' })
 * const sealed = masterKey.seal('epoch:7:1', epochKey)
 * const again = masterKey.open('epoch:7:1', sealed)
 * ```
 */
export class MasterKey {
  readonly #key: Uint8Array

  private constructor(key: Uint8Array) {
    this.#key = key
  }

  /**
   * Loads the master key from `SMQTT_MASTER_KEY` if set, else from `file`. Refuses, with
   * `ERR_MASTER_KEY_INVALID`, a missing key, one that is not strict base64url of 32 bytes, and
   * (on POSIX) a file that group or others may access.
   *
   * @example
   * ```ts
   * const masterKey = MasterKey.fromEnvOrFile({ env: process.env, file: config.masterKeyFile })
   * ```
   */
  static fromEnvOrFile(source: MasterKeySource = {}): MasterKey {
    const { env = process.env, file } = source
    const fromEnv = env[MASTER_KEY_ENV]
    if (fromEnv !== undefined && fromEnv !== '') return new MasterKey(decodeKey(fromEnv, MASTER_KEY_ENV))
    if (file === undefined)
      throw masterKeyInvalid(`no master key: ${MASTER_KEY_ENV} is not set and no key file is configured`)
    return new MasterKey(decodeKey(readKeyFile(file), file))
  }

  /**
   * A new random master key. Store it with {@link MasterKey.writeFile}: it exists nowhere else.
   *
   * @example
   * ```ts
   * MasterKey.generate().writeFile('/etc/smqtt/master.key')
   * ```
   */
  static generate(): MasterKey {
    return new MasterKey(cryptoBackend.randomBytes(KEY_LENGTH))
  }

  /**
   * Writes the key as base64url and a newline to a new file with mode 0600. Refuses to replace an
   * existing file: losing the old key would make every secret sealed under it unreadable.
   *
   * @example
   * ```ts
   * MasterKey.generate().writeFile(join(configDir, 'master.key'))
   * ```
   */
  writeFile(path: string): void {
    try {
      writeFileSync(path, `${Buffer.from(this.#key).toString('base64url')}\n`, { flag: 'wx', mode: SECRET_FILE_MODE })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new Error(`${path} already exists; a master key file is never overwritten`, { cause: err })
      }
      throw err
    }
  }

  /**
   * Encrypts `plaintext` for storage under `label`, the slot it belongs to.
   *
   * @example
   * ```ts
   * const sealed = masterKey.seal('server-signing-key', seed)
   * ```
   */
  seal(label: string, plaintext: Uint8Array): Uint8Array {
    const aad = labelAad(label)
    if (!(plaintext instanceof Uint8Array)) throw new TypeError('plaintext must be a Uint8Array')
    const nonce = cryptoBackend.randomBytes(NONCE_LENGTH)
    const ciphertext = cryptoBackend.aeadSeal('chacha20-poly1305', this.#key, nonce, plaintext, aad)
    const sealed = new Uint8Array(1 + NONCE_LENGTH + ciphertext.length)
    sealed[0] = SEALED_VERSION
    sealed.set(nonce, 1)
    sealed.set(ciphertext, 1 + NONCE_LENGTH)
    return sealed
  }

  /**
   * Decrypts what {@link MasterKey.seal} made under the same `label`. Any failure (another master
   * key, altered bytes, another label, unknown version) is the same `ERR_SEALED_SECRET_INVALID`.
   *
   * @example
   * ```ts
   * const seed = masterKey.open('server-signing-key', sealed)
   * ```
   */
  open(label: string, sealed: Uint8Array): Uint8Array {
    const aad = labelAad(label)
    if (!(sealed instanceof Uint8Array)) throw new TypeError('sealed must be a Uint8Array')
    if (sealed.length < 1 + NONCE_LENGTH + TAG_LENGTH || sealed[0] !== SEALED_VERSION) throw sealedSecretInvalid()
    const nonce = sealed.subarray(1, 1 + NONCE_LENGTH)
    const plaintext = cryptoBackend.aeadOpen(
      'chacha20-poly1305',
      this.#key,
      nonce,
      sealed.subarray(1 + NONCE_LENGTH),
      aad,
    )
    if (plaintext === undefined) throw sealedSecretInvalid()
    return plaintext
  }

  /** Redacted: a master key must not end up in logs or JSON. */
  toJSON(): string {
    return '[MasterKey redacted]'
  }

  /** Redacted for `util.inspect` and `console.log`. */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return 'MasterKey { [redacted] }'
  }
}

function labelAad(label: unknown): Uint8Array {
  if (typeof label !== 'string') throw new TypeError('label must be a string')
  return textEncoder.encode(AAD_PREFIX + label)
}

function readKeyFile(file: string): string {
  let mode: number
  try {
    const stats = statSync(file)
    if (!stats.isFile()) throw masterKeyInvalid(`master key file ${file} is not a regular file`)
    mode = stats.mode
  } catch (err) {
    if (err instanceof SmqttError) throw err
    const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : 'cannot be read'
    throw masterKeyInvalid(`no master key: ${MASTER_KEY_ENV} is not set and ${file} ${why}`, err)
  }
  const text = readDeploymentFile(file, 'secret', { code: 'ERR_MASTER_KEY_INVALID', label: 'master key file', mode })
  return text.replace(/\r?\n$/, '')
}

function decodeKey(text: string, source: string): Uint8Array {
  // Strict: only the base64url alphabet, no padding, and the one canonical spelling of the bytes.
  // Messages name the source, never the value.
  const bytes = Buffer.from(text, 'base64url')
  if (!/^[A-Za-z0-9_-]*$/.test(text) || bytes.toString('base64url') !== text) {
    throw masterKeyInvalid(`the master key in ${source} is not base64url`)
  }
  if (bytes.length !== KEY_LENGTH) {
    throw masterKeyInvalid(`the master key in ${source} is ${bytes.length} bytes; it must be ${KEY_LENGTH}`)
  }
  const key = new Uint8Array(bytes)
  bytes.fill(0) // small Buffers live in a shared pool: do not leave a copy there
  return key
}

function masterKeyInvalid(message: string, cause?: unknown): SmqttError {
  return new SmqttError('ERR_MASTER_KEY_INVALID', message, cause === undefined ? undefined : { cause })
}

function sealedSecretInvalid(): SmqttError {
  return new SmqttError('ERR_SEALED_SECRET_INVALID')
}
