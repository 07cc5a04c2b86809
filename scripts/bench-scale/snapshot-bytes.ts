// Issue 14, cliff 2: bytes a change costs at N principals. Value: bytes the key server pushes
// over MQTT per change (the whole signed snapshot while it is under 64 KiB, past that a signed
// notice); note: bytes each broker then pulls over HTTPS (the whole snapshot, today), and what a
// delta carrying the one changed principal would weigh (the plan, not implemented).
// Before: the push was the whole snapshot at every size, refused by brokers past 256 KiB.
import { DEFAULT_MAX_INLINE_SNAPSHOT_BYTES } from '@smqtt/keyserver'
import { addFleet } from '@smqtt/test-kit/keyserver'
import { kib, type ScaleCurve, SNAPSHOT_PRINCIPALS } from './_curve.js'
import { withKeyServer } from './_key-server.js'

export const snapshotBytes: ScaleCurve = {
  name: 'snapshot-bytes',
  title: 'Bytes pushed over MQTT per change (pulled per broker in the note)',
  unit: 'bytes pushed',
  axis: SNAPSHOT_PRINCIPALS,
  measure: (size) =>
    withKeyServer({}, async (h) => {
      await addFleet(h, size)
      await h.enroll('bench-new', ['thermostat']) // the change
      const pushed = await h.keyServer.brokerSnapshotPush(DEFAULT_MAX_INLINE_SNAPSHOT_BYTES)
      const message =
        'snapshot' in pushed
          ? { type: 'snapshot', snapshot: pushed.snapshot }
          : { type: 'snapshot-notice', notice: pushed.notice }
      const pushedBytes = Buffer.byteLength(JSON.stringify(message))
      const snapshot = await h.keyServer.brokerSnapshot()
      const pulledBytes = Buffer.byteLength(JSON.stringify({ snapshot }))
      // A delta would be a signed document carrying the changed entry and the version it
      // follows: its payload (the entry plus ~80 bytes of header) in base64url, plus the signature.
      const body = JSON.parse(Buffer.from(snapshot.payload, 'base64url').toString('utf8')) as {
        principals: { id: string }[]
      }
      const entry = JSON.stringify(body.principals.find((p) => p.id === 'bench-new'))
      const deltaBytes = Math.ceil(((Buffer.byteLength(entry) + 80) * 4) / 3) + snapshot.signature.length + 40
      return {
        value: pushedBytes,
        note: `${'snapshot' in pushed ? 'snapshot' : 'notice'}; pulled ${kib(pulledBytes)} (${(pulledBytes / (size + 3)).toFixed(0)} B/principal); a delta ~${deltaBytes} B`,
      }
    }),
}
