// Attack: a script injected into the page reads the device's private keys and takes them away.
// With the X25519 key a non-extractable WebCrypto key, it cannot: exportKey refuses, and key
// bundles still open, with only the Diffie-Hellman step in WebCrypto (hpkeOpenWithAgreement).
// Real WebCrypto (Node's; Chromium's is exercised by packages/client/test/browser tests).
import { webcrypto } from 'node:crypto'
import { describe, expect, test } from 'vitest'
import { createConnectPasswordAsync, verifyConnectPassword } from '../src/connect-password.js'
import { hpkeOpenWithAgreement, hpkeSeal } from '../src/crypto/hpke.js'
import { signWithContext, signWithContextAsync, verifyWithContext } from '../src/crypto/signature.js'
import {
  generateNonExtractableIdentity,
  generateNonExtractableX25519,
  nonExtractableIdentity,
  type WebCryptoKey,
  x25519Agreement,
} from '../src/crypto/webcrypto-keys.js'
import { createEnrollmentRequestAsync, verifyEnrollmentProof } from '../src/enrollment-request.js'
import { EpochKey } from '../src/envelope/epoch-key.js'
import { sealEnvelope, sealEnvelopeAsync } from '../src/envelope/seal.js'
import { createAsyncEnvelopeSigner, createEnvelopeSigner } from '../src/envelope/signer.js'
import { verifyEnvelope } from '../src/envelope/verify.js'
import { isSmqttError } from '../src/errors.js'
import { exportPublicIdentity, generateIdentity, importPublicIdentity, type PublicIdentity } from '../src/identity.js'
import { createKeyBundle, openKeyBundle, openKeyBundleWithAgreement } from '../src/key-bundle.js'
import { parseRequestSignature, signRequestAsync, verifyRequestSignature } from '../src/request-signature.js'

const NOW = 1_750_000_000
const keyServer = generateIdentity('keyserver')
const info = new TextEncoder().encode('smqtt test info')

const code = (promise: Promise<unknown>) =>
  promise.then(
    () => 'opened',
    (err: unknown) => (isSmqttError(err) ? err.code : String(err)),
  )

describe('key exfiltration', () => {
  test('the private key cannot be exported, yet it opens what was sealed to it', async () => {
    const { privateKey, publicKey, agree } = await generateNonExtractableX25519()
    expect(privateKey.extractable).toBe(false)
    await expect(webcrypto.subtle.exportKey('pkcs8', privateKey as webcrypto.CryptoKey)).rejects.toThrow()
    await expect(webcrypto.subtle.exportKey('jwk', privateKey as webcrypto.CryptoKey)).rejects.toThrow()

    const plaintext = new Uint8Array(32).fill(7)
    const { enc, ciphertext } = hpkeSeal({ kem: 'x25519', recipientPublicKey: publicKey, info, plaintext })
    const open = (over: Partial<Parameters<typeof hpkeOpenWithAgreement>[0]> = {}) =>
      hpkeOpenWithAgreement({ agree, recipientPublicKey: publicKey, enc, info, ciphertext, ...over })
    expect(await open()).toEqual(plaintext)
    // Fails as hpkeOpen fails: altered enc, a small-order enc, another info, a short enc.
    const altered = enc.slice()
    altered[0] = (altered[0] as number) ^ 1
    expect(await code(open({ enc: altered }))).toBe('ERR_HPKE_OPEN_FAILED')
    expect(await code(open({ enc: new Uint8Array(32) }))).toBe('ERR_HPKE_OPEN_FAILED')
    expect(await code(open({ info: new Uint8Array(1) }))).toBe('ERR_HPKE_OPEN_FAILED')
    expect(await code(open({ enc: enc.subarray(1) }))).toBe('ERR_HPKE_OPEN_FAILED')
  })

  test('an extractable or public key is refused as an agreement key', async () => {
    const pair = (await webcrypto.subtle.generateKey({ name: 'X25519' }, true, [
      'deriveBits',
    ])) as webcrypto.CryptoKeyPair
    expect(() => x25519Agreement(pair.privateKey)).toThrow(/non-extractable/)
    expect(() => x25519Agreement(pair.publicKey)).toThrow(/private/)
  })

  test('a key bundle opens with the WebCrypto key exactly as with raw bytes, with the same refusals', async () => {
    const x = await generateNonExtractableX25519()
    const raw = generateIdentity('app-1')
    const recipient: PublicIdentity & { agree: typeof x.agree } = {
      id: 'app-1',
      signingKey: raw.signingKey,
      agreementKey: x.publicKey,
      kem: 'x25519',
      agree: x.agree,
    }
    const epochKey = (fill: number) => new Uint8Array(32).fill(fill)
    const signed = createKeyBundle({
      recipient,
      groups: [
        {
          group: 1,
          name: 'home',
          filter: 'home/#',
          suite: 1,
          epochs: [
            { epoch: 1, key: epochKey(1), activatesAt: NOW - 60, retiresAt: NOW + 60 },
            { epoch: 2, key: epochKey(2), activatesAt: NOW, retiresAt: NOW + 3600 },
          ],
          writers: [],
        },
      ],
      validity: { notBefore: NOW - 60, notAfter: NOW + 3600 },
      issuedAt: NOW,
      keyServer,
    })
    const options = { keyServerPublicKey: keyServer.signingKey, recipient, now: NOW }
    const opened = await openKeyBundleWithAgreement(signed, options)
    expect(opened.groups[0]?.epochs.map((e) => [e.epoch, e.key[0]])).toEqual([
      [1, 1],
      [2, 2],
    ])
    expect(await code(openKeyBundleWithAgreement(signed, { ...options, now: NOW + 3600 }))).toBe('ERR_BUNDLE_EXPIRED')
    expect(
      await code(openKeyBundleWithAgreement(signed, { ...options, recipient: { ...recipient, id: 'app-2' } })),
    ).toBe('ERR_BUNDLE_WRONG_RECIPIENT')
    // Another WebCrypto key (a device that never received this bundle) opens nothing.
    const other = await generateNonExtractableX25519()
    expect(
      await code(openKeyBundleWithAgreement(signed, { ...options, recipient: { ...recipient, agree: other.agree } })),
    ).toBe('ERR_HPKE_OPEN_FAILED')
    // And the raw-bytes path is unchanged: a raw identity's bundle opens with openKeyBundle.
    const rawSigned = createKeyBundle({
      recipient: raw,
      groups: [],
      validity: { notBefore: NOW - 60, notAfter: NOW + 3600 },
      issuedAt: NOW,
      keyServer,
    })
    expect(
      openKeyBundle(rawSigned, { keyServerPublicKey: keyServer.signingKey, recipient: raw, now: NOW }).groups,
    ).toEqual([])
  })
})

/** A raw identity's Ed25519 seed imported into WebCrypto, non-extractable: the same key both ways. */
async function sameKeyInWebCrypto(id: string) {
  const raw = generateIdentity(id)
  const pkcs8 = new Uint8Array([...Buffer.from('302e020100300506032b657004220420', 'hex'), ...raw.signingSeed])
  const signing = await webcrypto.subtle.importKey('pkcs8', pkcs8, { name: 'Ed25519' }, false, ['sign'])
  const x = await generateNonExtractableX25519()
  const web = nonExtractableIdentity(
    { id, kem: 'x25519', signingKey: raw.signingKey, agreementKey: x.publicKey },
    { signing: signing as WebCryptoKey, agreement: x.privateKey },
  )
  return { raw, web }
}

describe('an identity whose private keys are non-extractable WebCrypto keys', () => {
  test('neither private key can be exported, and its public keys are valid', async () => {
    const identity = await generateNonExtractableIdentity('app-1')
    for (const key of [identity.privateKeys.signing, identity.privateKeys.agreement]) {
      expect(key).toMatchObject({ type: 'private', extractable: false })
      const cryptoKey = key as webcrypto.CryptoKey
      await expect(webcrypto.subtle.exportKey('pkcs8', cryptoKey)).rejects.toThrow()
      await expect(webcrypto.subtle.exportKey('jwk', cryptoKey)).rejects.toThrow()
      await expect(webcrypto.subtle.exportKey('raw', cryptoKey)).rejects.toThrow()
    }
    expect(importPublicIdentity(exportPublicIdentity(identity))).toMatchObject({ id: 'app-1', kem: 'x25519' })
    expect('signingSeed' in identity || 'agreementSecret' in identity).toBe(false)
  })

  test('WebCrypto signs the very bytes raw keys sign (RFC 8032), which core verifies strictly', async () => {
    const { raw, web } = await sameKeyInWebCrypto('app-1')
    const message = new TextEncoder().encode('hello')
    const signature = await signWithContextAsync(web, 'smqtt.test', message)
    expect(signature).toEqual(signWithContext(raw, 'smqtt.test', message))
    expect(verifyWithContext(web.signingKey, 'smqtt.test', message, signature)).toBe(true)
    expect(verifyWithContext(web.signingKey, 'smqtt.other', message, signature)).toBe(false)

    // An envelope sealed through the async signer: byte for byte the synchronous one.
    const epochKey = new EpochKey({ group: 1, epoch: 1, suite: 1, key: new Uint8Array(32).fill(9) })
    const input = { topic: 'home/1/lock/front/cmd', payload: message, epochKey, seq: 7, sentAt: 1_750_000_000 }
    const sealed = await sealEnvelopeAsync({ ...input, signer: createAsyncEnvelopeSigner({ kid: 5, key: web }) })
    expect(sealed).toEqual(sealEnvelope({ ...input, signer: createEnvelopeSigner({ kid: 5, seed: raw.signingSeed }) }))
    expect(verifyEnvelope(sealed, input.topic, { writerKey: () => web.signingKey }).header.seq).toBe(7)
  })

  test('its enrollment proof, request signatures and CONNECT passwords verify', async () => {
    const identity = await generateNonExtractableIdentity('app-1')
    const request = await createEnrollmentRequestAsync(identity, 'token-1')
    expect(verifyEnrollmentProof('token-1', importPublicIdentity(request.identity), request.proof)).toBe(true)
    expect(verifyEnrollmentProof('token-2', importPublicIdentity(request.identity), request.proof)).toBe(false)

    const toSign = { method: 'GET', path: '/v1/bundle', body: new Uint8Array(0) }
    const headers = await signRequestAsync('app-1', identity, toSign)
    expect(() => verifyRequestSignature(parseRequestSignature(headers), identity.signingKey, toSign)).not.toThrow()

    const password = await createConnectPasswordAsync(identity, 'app-1')
    expect(verifyConnectPassword(password, { clientId: 'app-1', signingKey: identity.signingKey })).toMatch(
      /^[\w-]{22}$/,
    )
    expect(() => verifyConnectPassword(password, { clientId: 'app-2', signingKey: identity.signingKey })).toThrow()
  })

  test('extractable, public or wrong-algorithm keys are refused', async () => {
    const { web } = await sameKeyInWebCrypto('app-1')
    const extractable = (await webcrypto.subtle.generateKey({ name: 'Ed25519' }, true, [
      'sign',
      'verify',
    ])) as webcrypto.CryptoKeyPair
    const identityWith = (keys: Partial<typeof web.privateKeys>) => () =>
      nonExtractableIdentity(web, { ...web.privateKeys, ...keys } as typeof web.privateKeys)
    expect(identityWith({ signing: extractable.privateKey as WebCryptoKey })).toThrow(/non-extractable/)
    expect(identityWith({ signing: extractable.publicKey as WebCryptoKey })).toThrow(/Ed25519 private/)
    expect(identityWith({ signing: web.privateKeys.agreement })).toThrow(/Ed25519 private/)
    expect(identityWith({ agreement: web.privateKeys.signing })).toThrow(/X25519 private/)
    expect(() => nonExtractableIdentity({ ...web, kem: 'xwing' }, web.privateKeys)).toThrow(/X25519/)
  })
})
