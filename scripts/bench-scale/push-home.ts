// Issue 14: the push after revoking one device of one home, at N principals in homes of 10 (an
// app reading its home's key group, 9 devices writing their own topics there through `%c`), one
// key group per home. Value: ms from the revocation's re-key until the home's remaining members
// have their new bundles built, as the push's send() does it (holders of the re-keyed group, then
// each one's tag, then its bundle; the broker snapshot and the MQTT publishes aside), median of 3
// homes. Note: `principalsHoldingKeys([group])` alone, the same answer found the old way (every
// active principal evaluated), and what the tags of every active principal cost (a policy change
// or a reconnect). Before the directory's index of holders: 7 s per push at 100,000 on a loaded
// 2-core machine, even for a home of 10 (docs/benchmarks.md, "Push after a home's re-key").
import { generateIdentity, type Policy } from '@smqtt/core'
import type { Harness } from '@smqtt/test-kit/keyserver'
import { median, type ScaleCurve } from './_curve.js'
import { withKeyServer } from './_key-server.js'

const PER_HOME = 10
const ROUNDS = 3

function homePolicy(homes: number): Policy {
  const rules: Policy['rules'] = []
  const groups: Policy['groups'] = []
  for (let h = 0; h < homes; h++) {
    rules.push(
      { effect: 'allow', actions: ['subscribe'], topics: [`home/h${h}/#`], roles: [`app-h${h}`] },
      { effect: 'allow', actions: ['publish'], topics: [`home/h${h}/+/cmd`], roles: [`app-h${h}`] },
      { effect: 'allow', actions: ['publish', 'subscribe'], topics: [`home/h${h}/%c/#`], roles: [`dev-h${h}`] },
    )
    groups.push({ id: h + 1, name: `home-${h}`, filter: `home/h${h}/#`, graceSeconds: 600 })
  }
  return { version: 1, rules, groups, plaintext: [] }
}

/** Homes of 10 straight into the store: `app<h>` and devices `d<h>-<i>`, one valid key pair shared. */
async function addHomes(h: Harness, homes: number): Promise<void> {
  const shared = generateIdentity('shared-fleet-key')
  for (let home = 0; home < homes; home++) {
    for (let i = 0; i < PER_HOME; i++)
      await h.store.createPrincipal({
        id: i === 0 ? `app${home}` : `d${home}-${i}`,
        roles: [i === 0 ? `app-h${home}` : `dev-h${home}`],
        username: undefined,
        signingKey: shared.signingKey,
        agreementKey: shared.agreementKey,
        kem: 'x25519',
        createdAt: h.clock.now,
        certificateSerial: undefined,
      })
    if (home % 50 === 49) await new Promise((resolve) => setImmediate(resolve))
  }
}

export const pushHome: ScaleCurve = {
  name: 'push-home',
  title:
    'Push after revoking one device of one home: ms until the home’s 9 remaining members have new bundles (holders alone, and every tag, in the note)',
  unit: 'ms',
  axis: { label: 'principals', sizes: [1_000, 10_000, 100_000], quickSizes: [1_000, 10_000] },
  measure: (size) =>
    withKeyServer({}, async (h) => {
      const homes = Math.ceil(size / PER_HOME)
      await h.keyServer.setPolicy(homePolicy(homes), 'bench') // first: its review of the fleet is then quick
      await addHomes(h, homes)
      const ks = h.keyServer
      // As the push does it after a reconnect: every active principal's tag (builds the directory).
      await ks.principalsHoldingKeys()
      let started = performance.now()
      for (const p of await ks.principalsHoldingKeys()) await ks.freshnessFor(p)
      const everyoneMs = performance.now() - started
      const push = async (group: number) => {
        for (const p of await ks.principalsHoldingKeys([group])) {
          await ks.freshnessFor(p)
          await ks.bundleFor(p)
        }
      }
      const totals: number[] = []
      const holders: number[] = []
      for (let round = 0; round < ROUNDS; round++) {
        const home = Math.floor((round * homes) / ROUNDS)
        await push(home + 1) // every member has had a bundle before
        h.clock.now += 10
        await ks.revokePrincipal(`d${home}-1`, 'bench') // re-keys the home's group
        started = performance.now()
        const found = await ks.principalsHoldingKeys([home + 1])
        holders.push(performance.now() - started)
        if (found.length !== PER_HOME - 1) throw new Error(`home ${home}: ${found.length} holders`)
        h.clock.now += 1
        await ks.revokePrincipal(`d${home}-2`, 'bench')
        started = performance.now()
        await push(home + 1)
        totals.push(performance.now() - started)
      }
      // The same answer the way it was found before the directory's index, for a same-run comparison.
      started = performance.now()
      const policy = ks.policy
      const brute = (await ks.listPrincipals()).filter((p) => p.status === 'active' && policy.keyedGroups(p).has(1))
      const bruteMs = performance.now() - started
      if (brute.length !== PER_HOME - 2) throw new Error(`home 0: ${brute.length} holders by brute force`)
      return {
        value: median(totals),
        note: `holders alone ${median(holders).toFixed(1)} ms (every principal evaluated: ${bruteMs.toFixed(0)} ms); every active principal's tag ${everyoneMs.toFixed(0)} ms`,
      }
    }),
}
