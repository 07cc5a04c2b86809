// Issue 14, cliff 4: bytes of a reader's key bundle at N writers in its group. Value: the bundle
// a new reader gets (`GET /v1/bundle`), which lists at most `bundleInlineWriters` (64) writers per
// group; note: what it weighed when it listed every writer (before: the listed bundle's size at
// the smallest points, then the same per-writer bytes times N), and the bytes of one writer's
// record (`POST /v1/writers`), which a subscriber fetches once per writer it hears from.
import { addWriters, SMART_HOME_POLICY } from '@smqtt/test-kit/keyserver'
import { kib, type ScaleCurve } from './_curve.js'
import { spendKeepAliveReset, withKeyServer } from './_key-server.js'

export const bundleBytes: ScaleCurve = {
  name: 'bundle-bytes',
  title: 'Bytes of a reader’s key bundle by writers in its group (listing every writer in the note)',
  unit: 'bundle bytes',
  axis: { label: 'writers', sizes: [10, 100, 1_000, 10_000, 100_000], quickSizes: [10, 3_000] },
  measure: (size) =>
    withKeyServer({ policy: SMART_HOME_POLICY }, async (h) => {
      const kids = await addWriters(h, size)
      await spendKeepAliveReset(h)
      const reader = await h.enroll('bench-reader', ['app']) // the change: a new reader
      const bundle = await h.device(reader.identity, 'GET', '/v1/bundle')
      const bundleBytes = Buffer.byteLength(bundle.text)
      const record = await h.device(reader.identity, 'POST', '/v1/writers', { group: 1, kids: [kids[0]] })
      const recordBytes = Buffer.byteLength(record.text)
      const empty = await h.device(reader.identity, 'POST', '/v1/writers', { group: 1, kids: [0] })
      // A writer entry in base64url JSON: what one more record entry weighs, as a bundle's did.
      const perWriter = Math.ceil(((recordBytes - Buffer.byteLength(empty.text)) * 3) / 4)
      const listed = size <= 64 ? bundleBytes : bundleBytes + Math.ceil((size * perWriter * 4) / 3)
      return { value: bundleBytes, note: `listing every writer: ${kib(listed)}; one writer's record ${recordBytes} B` }
    }),
}
