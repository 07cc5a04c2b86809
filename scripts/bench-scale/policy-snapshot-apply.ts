// Cliff 3 of issue 14: a broker applying a snapshot of N principals (N/10 key groups) builds the
// policy evaluator and the principal index; it used to do it in one synchronous block, the
// broker answering nothing meanwhile. Measured: time until the snapshot is enforced, and the
// longest the event loop was held during it (the note). A snapshot above 256 KiB is opened on a
// worker thread, started by a first, warm-up snapshot (as a running broker has it by then).
// From 10,000 principals the note also gives the broker's heap per principal once enforced.
import { attachSmqtt } from '@smqtt/broker-plugin'
import { createBrokerSnapshot, generateIdentity } from '@smqtt/core'
import { Aedes } from 'aedes'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import type { ScaleCurve } from './_curve.js'
import { heapAfterGc } from './_heap.js'
import { fleetPolicy, fleetPrincipals, longestBlockDuring, PRINCIPALS_PER_HOME } from './policy-fleet.js'

const keyServer = generateIdentity('smqtt-keyserver')
const WARM_UP_PRINCIPALS = 3_000

export const snapshotApply: ScaleCurve = {
  name: 'snapshot-apply',
  title: 'Broker applies a snapshot of N principals, N/10 key groups (ms until enforced; longest event-loop block)',
  unit: 'ms',
  sizeLabel: 'principals',
  sizes: [100, 1_000, 10_000, 30_000, 100_000],
  quickSizes: [100, 1_000, 10_000],
  async measure(size) {
    const snapshot = {
      issuedAt: 1_800_000_000,
      policy: fleetPolicy(size / PRINCIPALS_PER_HOME),
      principals: fleetPrincipals(size),
      epochs: [],
      revocationListVersion: 0,
    }
    const signed = createBrokerSnapshot(snapshot, keyServer)
    const broker = await Aedes.createBroker()
    const plugin = await attachSmqtt(broker, {
      keyServerPublicKey: keyServer.signingKey,
      logger: pino({ level: 'silent' }),
      registry: new Registry(),
      verifyWorkers: 0,
      now: () => 1_800_000_000,
    })
    const settled = (plugin as { snapshotSettled?: () => Promise<void> }).snapshotSettled
    const warmUp = { ...snapshot, issuedAt: snapshot.issuedAt - 1, principals: fleetPrincipals(WARM_UP_PRINCIPALS) }
    plugin.applySnapshot(createBrokerSnapshot({ ...warmUp, policy: fleetPolicy(300) }, keyServer))
    await settled?.()
    const heapBefore = heapAfterGc()
    const start = performance.now()
    const { result, blockMs } = await longestBlockDuring(async () => {
      const applied = plugin.applySnapshot(signed)
      await settled?.()
      return applied
    })
    const ms = performance.now() - start
    if (!result || plugin.snapshot?.principals.length !== size) throw new Error('snapshot not applied')
    // What the enforced snapshot holds beyond the warm-up one it replaced, per principal more.
    const perPrincipal = size >= 10_000 ? (heapAfterGc() - heapBefore) / (size - WARM_UP_PRINCIPALS) : undefined
    await plugin.close()
    await new Promise<void>((resolve) => broker.close(() => resolve()))
    const heap = perPrincipal === undefined ? '' : `; heap ${perPrincipal.toFixed(0)} B/principal`
    return { size, value: ms, note: `longest block ${blockMs.toFixed(1)} ms${heap}` }
  },
}
