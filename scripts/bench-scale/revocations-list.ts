// Issue 14, cliff 1: what a client downloads for the revocation list at N lifetime revocations
// (100 a day, the newest just now). Value: bytes of GET /v1/revocations; note: its time, the
// entries listed and the broker snapshot's bytes. The list holds the revocations of the retention
// window (one day by default) and the snapshot lists revoked principals for the same window, so
// both stay flat once the fleet's history is longer than a day.
// Before: every revocation ever made, ~60 B each; past ~15,000 the list outgrew the 1 MiB a
// client accepts and the route answered 500.
import { addRevokedFleet } from '@smqtt/test-kit/keyserver'
import { type ScaleCurve, timed } from './_curve.js'
import { withKeyServer } from './_key-server.js'

const PER_DAY = 100

export const revocationsList: ScaleCurve = {
  name: 'revocations-list',
  title: 'Bytes of GET /v1/revocations (time, entries and broker snapshot in the note)',
  unit: 'bytes',
  axis: { label: 'lifetime revocations', sizes: [10, 1_000, 10_000, 100_000, 1_000_000], quickSizes: [10, 2_000] },
  measure: (size) =>
    withKeyServer({}, async (h) => {
      await addRevokedFleet(h, size, Math.ceil((size * 86_400) / PER_DAY), 'bench-revoked-')
      const device = await h.enroll('bench-device', ['thermostat'])
      await h.enroll('bench-stolen', ['thermostat'])
      const revoked = await h.admin('POST', '/v1/admin/principals/bench-stolen/revoke') // publishes the list
      if (revoked.status !== 200) throw new Error(`revoke: ${revoked.text}`)
      const { result: response, ms } = await timed(() => h.device(device.identity, 'GET', '/v1/revocations'))
      if (response.status !== 200) throw new Error(`GET /v1/revocations: ${response.status} ${response.text}`)
      const list = (response.body as { revocations: { payload: string } }).revocations
      const body = JSON.parse(Buffer.from(list.payload, 'base64url').toString('utf8')) as { entries: unknown[] }
      const snapshotBytes = Buffer.byteLength(JSON.stringify(await h.keyServer.brokerSnapshot()))
      return {
        value: Buffer.byteLength(response.text),
        note: `${ms.toFixed(1)} ms; ${body.entries.length} entries; snapshot ${(snapshotBytes / 1024).toFixed(1)} KiB`,
      }
    }),
}
