// Issue 14, cliff 2: what a broker's scheduled pull costs when nothing changed, at N principals,
// over the key server's real HTTPS. Value: bytes of the answer (status line, headers, body). The
// pull names the tag signed into the snapshot held, and the key server answers 304 with a signed
// notice that this content is still current (a sync for the snapshot's age). Note: the key
// server's ms per such answer, and the whole snapshot's bytes and ms: what every scheduled pull
// fetched, and every broker verified and indexed again, before.
import { signRequest } from '@smqtt/core'
import { addFleet } from '@smqtt/test-kit/keyserver'
import { kib, median, type ScaleCurve, SNAPSHOT_PRINCIPALS, timed } from './_curve.js'
import { withKeyServer } from './_key-server.js'

const PATH = '/v1/broker/snapshot'

export const snapshotUnchanged: ScaleCurve = {
  name: 'snapshot-unchanged',
  title: 'Bytes of a scheduled snapshot pull when nothing changed (the whole snapshot in the note)',
  unit: 'bytes',
  axis: SNAPSHOT_PRINCIPALS,
  measure: (size) =>
    withKeyServer({}, async (h) => {
      await addFleet(h, size)
      const { identity } = await h.enroll('bench-broker', ['broker'])
      const pull = async (tag?: string) => {
        const headers = signRequest(
          identity.id,
          identity,
          { method: 'GET', path: PATH, body: new Uint8Array() },
          { now: h.clock.now },
        )
        const { result: response, ms } = await timed(() =>
          h.request('GET', PATH, { headers: { ...headers, ...(tag ? { 'if-none-match': `"${tag}"` } : {}) } }),
        )
        const headerBytes = Object.entries(response.headers).reduce(
          (sum, [k, v]) => sum + k.length + String(v).length + 4,
          17,
        )
        return { response, ms, bytes: headerBytes + Buffer.byteLength(response.text) }
      }
      const full = await pull()
      const tag = /"(.+)"/.exec(String(full.response.headers.etag))?.[1]
      const unchanged: { bytes: number; ms: number; status: number }[] = []
      for (let i = 0; i < 5; i++) {
        h.clock.now += 1
        const answer = await pull(tag)
        unchanged.push({ bytes: answer.bytes, ms: answer.ms, status: answer.response.status })
      }
      if (unchanged.some((u) => u.status !== 304)) throw new Error(`expected 304s at ${size}`)
      return {
        value: median(unchanged.map((u) => u.bytes)),
        note: `304 + signed notice in ${median(unchanged.map((u) => u.ms)).toFixed(0)} ms (median of 5); the whole snapshot: ${kib(full.bytes)} in ${full.ms.toFixed(0)} ms`,
      }
    }),
}
