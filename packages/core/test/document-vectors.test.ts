// Frozen document vectors (docs/documents.md): if these fail, a wire format a device depends on
// changed (key bundle, revocation list, writer record, principal record, CONNECT password,
// signed request, enrollment proof, HPKE info). That needs a new version, not new vectors.
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, test } from 'vitest'
import { concatBytes, fromBase64Url, fromHex, toBase64Url, toHex, utf8 } from '../src/_bytes.js'
import { createConnectPassword, verifyConnectPassword } from '../src/connect-password.js'
import { principalControlTopic } from '../src/control-topics.js'
import type { CryptoBackend } from '../src/crypto/backend.js'
import { hpkeOpen, hpkeSeal } from '../src/crypto/hpke.js'
import { sha256 } from '../src/crypto/kdf.js'
import { signedBytes, signWithContext, verifyWithContext } from '../src/crypto/signature.js'
import { createEnrollmentRequest, verifyEnrollmentProof } from '../src/enrollment-request.js'
import { type Identity, importIdentity } from '../src/identity.js'
import { createKeyBundle, openKeyBundle } from '../src/key-bundle.js'
import { createPrincipalRecord, openPrincipalRecord } from '../src/principal-record.js'
import { parseRequestSignature, signRequest, verifyRequestSignature } from '../src/request-signature.js'
import { createRevocationList, RevocationList } from '../src/revocation-list.js'
import type { SignedDocument } from '../src/signed-document.js'
import { createWriterRecord, openWriterRecord } from '../src/writer-record.js'
import { fixedRandom, groupKeyInfo, payloadText } from './_document-vectors.js'
import { backends, codeOf } from './_fixtures.js'

interface IdentityHex {
  id: string
  signingSeed: string
  signingKey: string
  kem: 'x25519'
  agreementSecret: string
  agreementKey: string
}
interface WriterJson {
  kid: number
  principal: string
  signingKey: string
  publish: { allow: string[]; deny: string[] }
}
interface OpenedBundleJson {
  principal: string
  issuedAt: number
  notBefore: number
  notAfter: number
  groups: {
    group: number
    name: string
    filter: string
    suite: number
    epochs: { epoch: number; activatesAt: number; retiresAt: number; key: string }[]
    writers: WriterJson[]
  }[]
}
interface NegativeCase {
  name: string
  now: number
  document: unknown
  error: string
}

const file = fileURLToPath(new URL('../vectors/documents-v1.json', import.meta.url))
const V = JSON.parse(readFileSync(file, 'utf8'))
const keyServer = { signingSeed: fromHex(V.keyServer.signingSeed), signingKey: fromHex(V.keyServer.signingKey) }
const principals = new Map<string, IdentityHex>((V.principals as IdentityHex[]).map((p) => [p.id, p]))

function identity(id: string, backend: CryptoBackend): Identity {
  const p = principals.get(id)
  if (!p) throw new Error(`no principal ${id} in the vectors`)
  return importIdentity(
    {
      type: 'smqtt.identity',
      v: 1,
      id,
      kem: p.kem,
      signingSeed: toBase64Url(fromHex(p.signingSeed)),
      agreementSecret: toBase64Url(fromHex(p.agreementSecret)),
      signingKey: toBase64Url(fromHex(p.signingKey)),
      agreementKey: toBase64Url(fromHex(p.agreementKey)),
    },
    { backend },
  )
}
const writerInput = (w: WriterJson) => ({ ...w, signingKey: fromHex(w.signingKey) })

describe('document vectors v1', () => {
  test('every section is there', () => {
    expect(V.keyBundle.negative.length).toBeGreaterThanOrEqual(30)
    expect(V.hpke).toHaveLength(2)
    expect(V.requestSignature.requests).toHaveLength(5)
  })

  test('base64url: canonical, unpadded', () => {
    for (const { hex, text } of V.base64url.valid) {
      expect(toBase64Url(fromHex(hex))).toBe(text)
      expect(toHex(fromBase64Url(text) as Uint8Array)).toBe(hex)
    }
    for (const text of V.base64url.invalid) expect(fromBase64Url(text), text).toBeUndefined()
  })

  for (const backend of backends)
    describe(backend.name, () => {
      test('signature with context: exact signed bytes and signature', () => {
        for (const c of V.signatureWithContext) {
          const message = fromHex(c.message)
          expect(toHex(signedBytes(c.context, message))).toBe(c.signedBytes)
          expect(toHex(signedBytes(c.context, message))).toBe(
            toHex(concatBytes(utf8(`smqtt/v1 ${c.context}\0`), message)),
          )
          const keys = { signingSeed: fromHex(c.signingSeed), signingKey: fromHex(c.signingKey) }
          expect(toHex(signWithContext(keys, c.context, message, backend))).toBe(c.signature)
          expect(backend.ed25519Verify(fromHex(c.signature), fromHex(c.signedBytes), keys.signingKey)).toBe(true)
        }
      })

      test('HPKE single-shot as bundles use it', () => {
        for (const c of V.hpke) {
          const info = groupKeyInfo(c.recipient, c.group, c.epoch, c.suite)
          expect(toHex(info)).toBe(c.info)
          const sealed = hpkeSeal({
            kem: 'x25519',
            recipientPublicKey: fromHex(c.recipientPublicKey),
            info,
            plaintext: fromHex(c.plaintext),
            unsafeEphemeralSecret: fromHex(c.ephemeralSecretKey),
            backend,
          })
          expect(toHex(sealed.enc)).toBe(c.enc)
          expect(toHex(sealed.ciphertext)).toBe(c.ciphertext)
          const open = (infoBytes: Uint8Array) =>
            hpkeOpen({
              kem: 'x25519',
              recipientSecretKey: fromHex(c.recipientSecretKey),
              enc: fromHex(c.enc),
              info: infoBytes,
              ciphertext: fromHex(c.ciphertext),
              backend,
            })
          expect(toHex(open(info))).toBe(c.plaintext)
          expect(codeOf(() => open(concatBytes(info, Uint8Array.of(0))))).toBe('ERR_HPKE_OPEN_FAILED')
        }
      })

      test('key bundle: opens to the expected content, and is what createKeyBundle writes', () => {
        const kb = V.keyBundle
        const device = identity(kb.recipient.id, backend)
        const options = { keyServerPublicKey: keyServer.signingKey, recipient: device, backend }
        const opened = openKeyBundle(kb.document, { ...options, now: kb.now })
        expect({
          ...opened,
          groups: opened.groups.map((g) => ({
            ...g,
            epochs: g.epochs.map((e) => ({ ...e, key: toHex(e.key) })),
            writers: [...g.writers].map(([kid, w]) => ({ kid, ...w, signingKey: toHex(w.signingKey) })),
          })),
        }).toEqual(kb.opened)
        expect(payloadText(kb.document)).toBe(kb.payloadText)
        for (const b of kb.boundaries)
          expect(codeOf(() => openKeyBundle(kb.document, { ...options, now: b.now }))).toBe(b.result)

        // The same inputs, with the sealed keys of the document, give the same bytes.
        const body = JSON.parse(kb.payloadText)
        const expected = kb.opened as OpenedBundleJson
        const again = createKeyBundle({
          recipient: device,
          issuedAt: expected.issuedAt,
          validity: { notBefore: expected.notBefore, notAfter: expected.notAfter },
          keyServer,
          backend,
          groups: expected.groups.map((g, i) => ({
            group: g.group,
            name: g.name,
            filter: g.filter,
            suite: g.suite,
            writers: g.writers.map(writerInput),
            epochs: g.epochs.map((e, j) => {
              const sealed = body.groups[i].epochs[j]
              return {
                epoch: e.epoch,
                activatesAt: e.activatesAt,
                retiresAt: e.retiresAt,
                sealed: {
                  recipient: device.id,
                  group: g.group,
                  epoch: e.epoch,
                  suite: g.suite,
                  kem: sealed.kem,
                  enc: sealed.enc,
                  sealedKey: sealed.sealedKey,
                },
              }
            }),
          })),
        })
        expect(again).toEqual(kb.document)
      })

      test('key bundle: every refusal with its code, other spellings accepted', () => {
        for (const c of V.keyBundle.negative as (NegativeCase & { recipient: string })[]) {
          const recipient = identity(c.recipient, backend)
          const result = codeOf(() =>
            openKeyBundle(c.document, { keyServerPublicKey: keyServer.signingKey, recipient, now: c.now, backend }),
          )
          expect(result, c.name).toBe(c.error)
        }
        const device = identity(V.keyBundle.recipient.id, backend)
        for (const c of V.keyBundleAccepted) {
          expect(payloadText(c.document)).toBe(c.payloadText)
          const opened = openKeyBundle(c.document, {
            keyServerPublicKey: keyServer.signingKey,
            recipient: device,
            now: V.keyBundle.now,
            backend,
          })
          expect(opened.issuedAt, c.name).toBe(V.keyBundle.opened.issuedAt)
        }
      })

      test('revocation list: valid lists, refusals, rollback', () => {
        const accept = (list: RevocationList, doc: unknown) =>
          list.accept(doc, { keyServerPublicKey: keyServer.signingKey, backend })
        for (const v of V.revocationList.valid) {
          const list = new RevocationList()
          expect(accept(list, v.document)).toBe(true)
          expect(payloadText(v.document)).toBe(v.payloadText)
          expect({ version: list.version, issuedAt: list.issuedAt, prunedBefore: list.prunedBefore }).toEqual({
            version: v.version,
            issuedAt: v.issuedAt,
            prunedBefore: v.prunedBefore,
          })
          expect(list.entries).toEqual(v.entries)
          const again = createRevocationList({
            version: v.version,
            issuedAt: v.issuedAt,
            prunedBefore: v.prunedBefore,
            entries: v.entries,
            keyServer,
            backend,
          })
          expect(again).toEqual(v.document)
        }
        for (const c of V.revocationList.negative)
          expect(
            codeOf(() => accept(new RevocationList(), c.document)),
            c.name,
          ).toBe(c.error)
        for (const s of V.revocationList.sequences) {
          const list = new RevocationList()
          const results = s.documents.map((d: SignedDocument) => {
            let changed = false
            const r = codeOf(() => {
              changed = accept(list, d)
            })
            return r !== 'ok' ? r : changed ? 'accepted' : 'unchanged'
          })
          expect(results, s.name).toEqual(s.results)
          expect({ version: list.version, prunedBefore: list.prunedBefore }).toEqual(s.held)
        }
      })

      test('writer record: opens, is what createWriterRecord writes, refusals', () => {
        const wr = V.writerRecord
        const open = (doc: unknown, reader: string, now: number) =>
          openWriterRecord(doc, { keyServerPublicKey: keyServer.signingKey, reader, now, backend })
        const opened = open(wr.document, wr.reader, wr.now)
        expect({
          ...opened,
          writers: [...opened.writers].map(([kid, w]) => ({ kid, ...w, signingKey: toHex(w.signingKey) })),
        }).toEqual(wr.opened)
        expect(payloadText(wr.document)).toBe(wr.payloadText)
        for (const b of wr.boundaries) expect(codeOf(() => open(wr.document, wr.reader, b.now))).toBe(b.result)
        const again = createWriterRecord({
          reader: wr.opened.reader,
          group: wr.opened.group,
          filter: wr.opened.filter,
          writers: wr.opened.writers.map(writerInput),
          issuedAt: wr.opened.issuedAt,
          notAfter: wr.opened.notAfter,
          keyServer,
          backend,
        })
        expect(again).toEqual(wr.document)
        for (const c of wr.negative as (NegativeCase & { reader: string })[])
          expect(
            codeOf(() => open(c.document, c.reader, c.now)),
            c.name,
          ).toBe(c.error)
      })

      test('principal record and enrollment', () => {
        const pr = V.principalRecord
        const record = openPrincipalRecord(pr.document, keyServer.signingKey, backend)
        expect(payloadText(pr.document)).toBe(pr.payloadText)
        expect(createPrincipalRecord(record, keyServer, backend)).toEqual(pr.document)
        for (const c of pr.negative)
          expect(
            codeOf(() => openPrincipalRecord(c.document, keyServer.signingKey, backend)),
            c.name,
          ).toBe(c.error)

        const en = V.enrollment
        const device = identity(en.identity.id, backend)
        const tokenHash = sha256(utf8(en.token))
        expect(toHex(tokenHash)).toBe(en.tokenHash)
        const proven = concatBytes(tokenHash, device.signingKey, device.agreementKey)
        expect(toHex(proven)).toBe(en.provenBytes)
        expect(toHex(signedBytes('enrollment', proven))).toBe(en.signedBytes)
        const request = createEnrollmentRequest(device, en.token, { roles: en.request.roles, backend })
        expect(request).toEqual(en.request)
        expect(JSON.stringify(request)).toBe(en.requestBody)
        expect(verifyEnrollmentProof(en.token, device, en.proof, backend)).toBe(true)
        expect(verifyEnrollmentProof(`${en.token}x`, device, en.proof, backend)).toBe(false)
        expect(fromHex(en.identity.signingKey)).toEqual(record.signingKey)
        expect(en.response.principal).toEqual(pr.document)
      })

      test('CONNECT password', () => {
        const cp = V.connectPassword
        const device = identity(cp.clientId, backend)
        expect(toBase64Url(fromHex(cp.nonce))).toBe(cp.nonceText)
        expect(toHex(signedBytes('mqtt-connect', utf8(cp.signedMessage)))).toBe(cp.signedBytes)
        const password = createConnectPassword(device, cp.clientId, {
          now: cp.timestamp,
          backend: fixedRandom(backend, fromHex(cp.nonce)),
        })
        expect(password).toBe(cp.password)
        const signature = fromBase64Url(password.split('.')[3] as string) as Uint8Array
        expect(verifyWithContext(device.signingKey, 'mqtt-connect', utf8(cp.signedMessage), signature, backend)).toBe(
          true,
        )
        for (const c of cp.checks) {
          const result = codeOf(() =>
            verifyConnectPassword(c.password, {
              clientId: c.clientId,
              signingKey: device.signingKey,
              now: c.now,
              backend,
            }),
          )
          expect(result, c.name).toBe(c.result)
        }
      })

      test('signed HTTP requests', () => {
        for (const r of V.requestSignature.requests) {
          const device = identity(r.principal, backend)
          const body = utf8(r.body)
          expect(r.signedMessage).toBe(
            `${r.method.toUpperCase()}\n${r.path}\n${r.timestamp}\n${toBase64Url(fromHex(r.nonce))}\n${toBase64Url(sha256(body))}`,
          )
          expect(toHex(signedBytes('http-request', utf8(r.signedMessage)))).toBe(r.signedBytes)
          const headers = signRequest(
            r.principal,
            device,
            { method: r.method, path: r.path, body },
            { now: r.timestamp, backend: fixedRandom(backend, fromHex(r.nonce)) },
          )
          expect(headers).toEqual(r.headers)
        }
        const first = V.requestSignature.requests[2]
        const device = identity(first.principal, backend)
        for (const c of V.requestSignature.checks) {
          const result = codeOf(() =>
            verifyRequestSignature(
              parseRequestSignature(c.headers),
              device.signingKey,
              { method: first.method, path: first.path, body: utf8(c.body) },
              { now: c.now, backend },
            ),
          )
          expect(result, c.name).toBe(c.result)
        }
      })
    })

  test('push topic and message', () => {
    expect(principalControlTopic(V.keyBundle.recipient.id)).toBe(V.push.topic)
    expect(JSON.parse(V.push.message)).toEqual({ type: 'bundle', bundle: V.keyBundle.document })
  })
})
