// What the document vectors' generator (_generate-document-vectors.ts) and their test
// (document-vectors.test.ts) share: the HPKE info written out from docs/documents.md (not
// imported, so the vectors check the documentation against the code), a fixed nonce, and the
// payload text of a signed document.
import { concatBytes, fromBase64Url, fromUtf8, utf8 } from '../src/_bytes.js'
import type { CryptoBackend } from '../src/crypto/backend.js'
import type { SignedDocument } from '../src/signed-document.js'

/** The HPKE info of a sealed epoch key, as docs/documents.md writes it. */
export function groupKeyInfo(recipient: string, group: number, epoch: number, suite: number): Uint8Array {
  const slot = new Uint8Array(12)
  const view = new DataView(slot.buffer)
  view.setUint32(0, group, false)
  view.setUint32(4, epoch, false)
  view.setUint32(8, suite, false)
  return concatBytes(utf8('smqtt/v1 group-key\0'), slot, utf8(recipient))
}

/** `backend` with a randomBytes that returns `bytes` (test-only: fixes a nonce). */
export const fixedRandom = (backend: CryptoBackend, bytes: Uint8Array): CryptoBackend => ({
  ...backend,
  randomBytes: (length: number) => {
    if (length !== bytes.length) throw new Error(`asked for ${length} random bytes, have ${bytes.length}`)
    return bytes.slice()
  },
})

/** The JSON text a signed document carries. */
export const payloadText = (doc: SignedDocument) => fromUtf8(fromBase64Url(doc.payload) as Uint8Array) as string
