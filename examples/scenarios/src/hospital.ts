// Hospital: wearables publish their patients' heart rates; only the nurse station of the same
// ward reads them. Another ward's station can neither subscribe nor decrypt, a lost wearable is
// cut off, and a visitor's phone cannot raise a false alarm.
import { waitUntil } from '@smqtt/example-smart-home/wait'
import { reports } from './policy.js'
import {
  BOUND_MS,
  captured,
  check,
  type DefenceResult,
  type Device,
  forgeWithMadeUpKey,
  headerOf,
  imageKeys,
  newestEpoch,
  refusedByBroker,
  refusedByDevice,
  refusedSubscribe,
  revokeConnected,
  runStage,
  type ScenarioOptions,
  sealWithKeys,
  tryOpen,
} from './stage.js'

// A wearable publishes its own patient's vitals and alarms, in its own ward only; the ward's nurse
// station reads every wearable of the ward.
const wardRules = (ward: string) => reports(`hospital/${ward}/wearable`, `${ward}-wearable`, `${ward}-station`)

export const HOSPITAL_POLICY = {
  version: 1,
  // Visitors' phones hold no role with rights here: deny by default.
  rules: [...wardRules('ward-a'), ...wardRules('ward-b')],
  groups: [
    { id: 1, name: 'ward-a-vitals', filter: 'hospital/ward-a/wearable/#' },
    { id: 2, name: 'ward-b-vitals', filter: 'hospital/ward-b/wearable/#' },
  ],
  plaintext: [],
} as const

const PRINCIPALS = {
  bed7: { id: 'wearable-bed-7', roles: ['ward-a-wearable'] },
  // Will be lost in the corridor, and revoked.
  bed8: { id: 'wearable-bed-8', roles: ['ward-a-wearable'] },
  stationA: { id: 'station-ward-a', roles: ['ward-a-station'] },
  stationB: { id: 'station-ward-b', roles: ['ward-b-station'] },
  visitor: { id: 'visitor-phone', roles: ['visitor'] },
} as const

const WARD_A = 'hospital/ward-a/wearable/#'
const heartRate = (wearable: string) => `hospital/ward-a/wearable/${wearable}/heart-rate`
const alarm = (wearable: string) => `hospital/ward-a/wearable/${wearable}/alarm`

export function runHospital(options: ScenarioOptions = {}): Promise<DefenceResult[]> {
  return runStage('hospital', { policy: HOSPITAL_POLICY, watch: 'hospital/#' }, options, async (stage) => {
    const { deployment, log } = stage
    const bed7 = await stage.join(PRINCIPALS.bed7)
    const bed8 = await stage.join(PRINCIPALS.bed8)
    const stationA = await stage.join(PRINCIPALS.stationA)
    const stationB = await stage.join(PRINCIPALS.stationB)
    const visitor = await stage.join(PRINCIPALS.visitor)
    await stationA.client.subscribeAsync(WARD_A, { qos: 1 })
    await stationB.client.subscribeAsync('hospital/ward-b/wearable/#', { qos: 1 })

    log('  ward A at work')
    const beat = async (wearable: Device, bpm: number) => {
      const text = JSON.stringify({ bpm })
      await stage.send(wearable, heartRate(wearable.id), text)
      return stage.receive(stationA, heartRate(wearable.id), text)
    }
    await beat(bed7, 72)
    await beat(bed8, 64)
    await beat(bed7, 75)

    log('  attacks')
    await stage.defend('another ward subscribes', async () => {
      await refusedSubscribe(stationB, WARD_A)
      check(stationB.messages.length === 0, `${stationB.id} received ward A messages`)
      return `${stationB.id} subscribing to ${WARD_A}: SUBACK 0x80; it received none of ward A's readings`
    })

    await stage.defend('another ward decrypts', async () => {
      // Everything station B holds, tried on a reading a compromised broker handed it.
      const reading = captured(deployment, heartRate(bed7.id))
      const stationBKeys = await imageKeys(deployment, stationB)
      const held = stationBKeys.groups.map((g) => g.name).join(', ')
      const outcome = tryOpen(stationBKeys, heartRate(bed7.id), reading)
      check(outcome.startsWith('ERR_'), `${stationB.id}'s keys opened a ward A reading: ${outcome}`)
      // The control: the same bytes open with ward A's keys, so the refusal is about the keys.
      const control = tryOpen(await imageKeys(deployment, stationA), heartRate(bed7.id), reading)
      check(control === JSON.stringify({ bpm: 75 }), `control failed: ward A's keys do not open it (${control})`)
      return `${stationB.id} holds keys for ${held} only; a captured ward A reading does not open (${outcome}); ward A's keys open it`
    })

    await stage.defend('a visitor forges an alarm', async () => {
      const topic = alarm(bed7.id)
      const forged = forgeWithMadeUpKey(
        visitor,
        headerOf(captured(deployment, heartRate(bed7.id))),
        topic,
        JSON.stringify({ alarm: 'cardiac arrest' }),
      )
      await refusedByBroker(deployment, visitor, topic, forged, 'acl-denied')
      const code = await refusedByDevice(deployment, stationA, topic, forged, [
        'ERR_UNKNOWN_SENDER',
        'ERR_NO_KEY_GROUP',
      ])
      check(!stationA.messages.some((m) => m.topic === topic), 'the false alarm reached the nurse station')
      return `${visitor.id} publishing on ${topic}: refused (acl-denied), session closed; forced through a compromised broker, ${stationA.id} refused it (${code})`
    })

    // The wearable of bed 8 is lost. Whoever finds it has its identity and its current keys.
    const lostKeys = await imageKeys(deployment, bed8)
    const oldReading = captured(deployment, heartRate(bed7.id))
    const oldEpoch = newestEpoch(stationA, 1)
    await stage.defend('a lost wearable is revoked', async () => {
      const { closedMs, connack, keyServer } = await revokeConnected(deployment, bed8)
      return `session closed ${closedMs} ms after the revoke call; CONNECT again: CONNACK ${connack}; key server: ${keyServer}`
    })

    await stage.defend('the lost wearable reads or fakes readings', async () => {
      // Revocation re-keyed ward A: the finder's copy of the keys opens nothing new.
      await waitUntil(
        () => newestEpoch(stationA, 1) > oldEpoch && newestEpoch(bed7, 1) > oldEpoch,
        BOUND_MS,
        'ward A to be re-keyed after the revocation',
      )
      const topic = heartRate(bed7.id)
      const { info } = await beat(bed7, 73)
      check(info.encrypted && info.epoch > oldEpoch, 'bed 7 did not move to the new epoch')
      const control = tryOpen(lostKeys, topic, oldReading)
      check(
        control === JSON.stringify({ bpm: 75 }),
        `control failed: the lost keys do not open an old reading (${control})`,
      )
      const outcome = tryOpen(lostKeys, topic, captured(deployment, topic))
      check(outcome.startsWith('ERR_'), `the lost keys open a reading sent after the revocation: ${outcome}`)
      const fake = sealWithKeys(bed8, lostKeys, heartRate(bed8.id), JSON.stringify({ bpm: 180 }))
      const code = await refusedByDevice(deployment, stationA, heartRate(bed8.id), fake, [
        'ERR_UNKNOWN_SENDER',
        'ERR_SENDER_REVOKED',
      ])
      return `ward A re-keyed (epoch ${oldEpoch} → ${info.epoch}): the lost keys open old readings, not bed 7's next one (${outcome}); a reading faked with them: refused (${code})`
    })
  })
}
