// Cliff 3 of issue 14: a broker applying a snapshot of N principals (N/10 key groups) builds the
// policy evaluator and the principal index; it used to do it in one synchronous block, the
// broker answering nothing meanwhile. Measured: time until the snapshot is enforced, and the
// longest the event loop was held during it (the note). A snapshot above 256 KiB is opened on a
// worker thread, started by a first, warm-up snapshot (as a running broker has it by then).
// From 10,000 principals the note also gives the broker's heap per principal once enforced.
import { createBrokerSnapshot } from '@smqtt/core'
import { startBareBroker } from '@smqtt/test-kit/broker'
import type { ScaleCurve } from './_curve.js'
import { heapAfterGc } from './_heap.js'
import { APPLIED_PRINCIPALS, fleetKeyServer, fleetSnapshot, longestBlockDuring } from './policy-fleet.js'

const ISSUED_AT = 1_800_000_000
const WARM_UP_PRINCIPALS = 3_000

export const snapshotApply: ScaleCurve = {
  name: 'snapshot-apply',
  title: 'Broker applies a snapshot of N principals, N/10 key groups (ms until enforced; longest event-loop block)',
  unit: 'ms',
  axis: APPLIED_PRINCIPALS,
  async measure(size) {
    const signed = createBrokerSnapshot(fleetSnapshot(size, ISSUED_AT), fleetKeyServer)
    const { plugin, close } = await startBareBroker(fleetKeyServer.signingKey, { now: () => ISSUED_AT })
    plugin.applySnapshot(createBrokerSnapshot(fleetSnapshot(WARM_UP_PRINCIPALS, ISSUED_AT - 1), fleetKeyServer))
    await plugin.snapshotSettled()
    const heapBefore = heapAfterGc()
    const { result, ms, blockMs } = await longestBlockDuring(async () => {
      const applied = plugin.applySnapshot(signed)
      await plugin.snapshotSettled()
      return applied
    })
    if (!result || plugin.snapshot?.principals.length !== size) throw new Error('snapshot not applied')
    // What the enforced snapshot holds beyond the warm-up one it replaced, per principal more.
    const perPrincipal = size >= 10_000 ? (heapAfterGc() - heapBefore) / (size - WARM_UP_PRINCIPALS) : undefined
    await close()
    const heap = perPrincipal === undefined ? '' : `; heap ${perPrincipal.toFixed(0)} B/principal`
    return { value: ms, note: `longest block ${blockMs.toFixed(1)} ms${heap}` }
  },
}
