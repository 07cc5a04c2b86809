// Issue 14, cliff 2: a broker holding a snapshot of N principals (N/10 key groups) applies the
// delta of one revocation (the principal revoked, its home's group re-keyed, the revocation list
// moved on), as its pull after the key server's notice gets it. Measured: time until enforced,
// and the longest the event loop was held; the note sets the delta's bytes beside the whole
// snapshot's, which a broker fetched, opened and indexed for every change before.
import { createBrokerSnapshot, createBrokerSnapshotDelta } from '@smqtt/core'
import { startBareBroker } from '@smqtt/test-kit/broker'
import { kib, type ScaleCurve } from './_curve.js'
import { APPLIED_PRINCIPALS, fleetKeyServer, fleetSnapshot, longestBlockDuring } from './policy-fleet.js'

const ISSUED_AT = 1_800_000_000

export const snapshotDelta: ScaleCurve = {
  name: 'snapshot-delta',
  title: 'Broker applies the delta of one revocation to a snapshot of N principals (ms until enforced; longest block)',
  unit: 'ms',
  axis: APPLIED_PRINCIPALS,
  async measure(size) {
    const snapshot = { ...fleetSnapshot(size, ISSUED_AT, true), tag: 'base' }
    const whole = createBrokerSnapshot(snapshot, fleetKeyServer)
    const victim = snapshot.principals[1]
    if (!victim) throw new Error('no principal')
    const delta = createBrokerSnapshotDelta(
      {
        issuedAt: ISSUED_AT + 1,
        baseTag: 'base',
        tag: 'next',
        principals: [{ ...victim, status: 'revoked' }],
        removedPrincipals: [],
        epochGroups: [1],
        epochs: [
          { group: 1, epoch: 1, activatesAt: ISSUED_AT - 60, retiresAt: ISSUED_AT + 120 },
          { group: 1, epoch: 2, activatesAt: ISSUED_AT + 1 },
        ],
        revocationListVersion: 2,
      },
      fleetKeyServer,
    )
    const { plugin, close } = await startBareBroker(fleetKeyServer.signingKey, { now: () => ISSUED_AT + 1 })
    plugin.applySnapshot(whole)
    await plugin.snapshotSettled()
    const { result, ms, blockMs } = await longestBlockDuring(() => plugin.applySnapshotDelta(delta))
    const revoked = plugin.snapshot?.principals.find((p) => p.id === victim.id)?.status === 'revoked'
    await close()
    if (!result || !revoked) throw new Error('delta not applied')
    const bytes = (doc: unknown) => JSON.stringify(doc).length
    return {
      value: ms,
      note: `longest block ${blockMs.toFixed(1)} ms; delta ${kib(bytes(delta))}, whole snapshot ${kib(bytes(whole))}`,
    }
  },
}
