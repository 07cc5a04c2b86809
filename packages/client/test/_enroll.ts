// Enrollment through the client's own enroll() with a fresh operator token: shared by the test
// stack and the benches (no vitest here, so scripts outside the runner can import it).
import type { Identity } from '@smqtt/core'
import type { Harness } from '@smqtt/keyserver/testing'
import { type ClientStorage, type Enrollment, type EnrollOptions, enroll, memoryStorage } from '../src/index.js'

/** Enrolls `id` through the client's own enroll(), with a fresh one-time token from the harness's operator. */
export async function enrollThrough(
  h: Harness,
  id: string,
  roles: string[],
  storage: ClientStorage = memoryStorage(),
  extra: Pick<EnrollOptions, 'clientCertificate'> = {},
): Promise<Enrollment<Identity> & { storage: ClientStorage }> {
  const token = await h.admin('POST', '/v1/admin/enrollment-tokens', { principalId: id, roles })
  if (token.status !== 201) throw new Error(`token: ${token.text}`)
  const enrollment = await enroll({
    keyServerUrl: h.url,
    ca: h.caPem,
    token: (token.body as { token: string }).token,
    id,
    storage,
    ...extra,
  })
  return { ...enrollment, identity: rawIdentity(enrollment.identity), storage }
}

/** The identity of an enrollment into a storage without CryptoKeys (Node): raw keys, which tests sign with directly. */
export function rawIdentity(identity: Enrollment['identity']): Identity {
  if (!('signingSeed' in identity)) throw new Error('expected an identity with raw keys')
  return identity
}
