// Attack: a broker relays key bundles on the control topic, so it can re-push one it recorded.
// The keyring keeps only strictly newer bundles: a different bundle with the same `issuedAt` (a
// swap within the second) or an older one is refused with ERR_BUNDLE_ROLLBACK and the bundle
// held stays; the very same bundle again (even sealed afresh) is simply nothing to do.
import {
  createKeyBundle,
  generateIdentity,
  isSmqttError,
  type KeyBundleGroupInput,
  type OpenedKeyBundle,
  openKeyBundle,
} from '@smqtt/core'
import { describe, expect, test } from 'vitest'
import { Keyring } from '../src/keyring.js'

const NOW = 1_750_000_000
const keyServer = generateIdentity('keyserver')
const device = generateIdentity('app-1')
const writer = {
  kid: 1000,
  principal: 'app-1',
  signingKey: device.signingKey,
  publish: { allow: ['home/#'], deny: [] },
}

function group(epoch: number, fill: number, writers = [writer]): KeyBundleGroupInput {
  const key = new Uint8Array(32).fill(fill)
  return {
    group: 1,
    name: 'home',
    filter: 'home/#',
    suite: 1,
    epochs: [{ epoch, key, activatesAt: NOW - 60, retiresAt: NOW + 3600 }],
    writers,
  }
}

/** A bundle signed by the key server and opened as the client opens it. */
function bundle(issuedAt: number, groups: KeyBundleGroupInput[]): OpenedKeyBundle {
  const signed = createKeyBundle({
    recipient: device,
    groups,
    validity: { notBefore: NOW - 60, notAfter: NOW + 3600 },
    issuedAt,
    keyServer,
  })
  return openKeyBundle(signed, { keyServerPublicKey: keyServer.signingKey, recipient: device, now: NOW })
}

const refusal = (run: () => unknown): string => {
  try {
    run()
  } catch (err) {
    if (isSmqttError(err)) return err.code
    throw err
  }
  return 'accepted'
}

describe('bundle rollback', () => {
  test('a different bundle re-pushed with the same issuedAt is refused; the held one stays', () => {
    const keyring = new Keyring(() => NOW)
    const before = bundle(NOW, [group(1, 0x11)]) // recorded by the broker
    const after = bundle(NOW, [group(2, 0x22, [])]) // rotated and writer dropped, same second
    expect(keyring.apply(after)).toBe(true)
    expect(refusal(() => keyring.apply(before))).toBe('ERR_BUNDLE_ROLLBACK')
    expect(keyring.groups[0]?.epochs.map((e) => e.epoch)).toEqual([2])
    expect(keyring.groups[0]?.writers.size).toBe(0)
  })

  test('an older bundle is refused', () => {
    const keyring = new Keyring(() => NOW)
    keyring.apply(bundle(NOW, [group(2, 0x22)]))
    expect(refusal(() => keyring.apply(bundle(NOW - 1, [group(1, 0x11)])))).toBe('ERR_BUNDLE_ROLLBACK')
    expect(keyring.groups[0]?.epochs.map((e) => e.epoch)).toEqual([2])
  })

  test('the same bundle again, sealed afresh (another key server process, a re-fetch), is nothing to do', () => {
    const keyring = new Keyring(() => NOW)
    expect(keyring.apply(bundle(NOW, [group(1, 0x11)]))).toBe(true)
    expect(keyring.apply(bundle(NOW, [group(1, 0x11)]))).toBe(false)
    // Same issuedAt, another epoch key: different, refused.
    expect(refusal(() => keyring.apply(bundle(NOW, [group(1, 0x12)])))).toBe('ERR_BUNDLE_ROLLBACK')
  })

  test('a strictly newer bundle is applied', () => {
    const keyring = new Keyring(() => NOW)
    keyring.apply(bundle(NOW, [group(1, 0x11)]))
    expect(keyring.apply(bundle(NOW + 1, [group(2, 0x22)]))).toBe(true)
    expect(keyring.issuedAt).toBe(NOW + 1)
  })
})
