// The client's own test helper (the shared stack is `@smqtt/test-kit/client`): it seals with the
// client's internal Keyring, which no other workspace may import.
import { createEnvelopeSigner, type EnvelopeProperties, openKeyBundle, sealEnvelope } from '@smqtt/core'
import { now, type Stack } from '@smqtt/test-kit/client'
import { Keyring } from '../src/keyring.js'

/**
 * What a writer can do with its own keys, outside the client: seal and sign an envelope for any
 * topic, with its current epoch key of the topic's group (compromised firmware, or a message a
 * test then tampers with in transit).
 */
export async function sealAs(
  stack: Stack,
  writer: Awaited<ReturnType<Stack['enroll']>>,
  sealed: { topic: string; text: string; seq: number; properties?: EnvelopeProperties },
): Promise<Buffer> {
  const response = await stack.h.device(writer.identity, 'GET', '/v1/bundle')
  const keyring = new Keyring(now)
  keyring.apply(
    openKeyBundle((response.body as { bundle: unknown }).bundle, {
      keyServerPublicKey: stack.h.keyServer.publicKey,
      recipient: writer.identity,
      now: now(),
    }),
  )
  const envelope = sealEnvelope({
    topic: sealed.topic,
    payload: new TextEncoder().encode(sealed.text),
    epochKey: keyring.sealingKey(sealed.topic, writer.kid).epochKey,
    signer: createEnvelopeSigner({ kid: writer.kid, seed: writer.identity.signingSeed }),
    seq: sealed.seq,
    ...(sealed.properties === undefined ? {} : { properties: sealed.properties }),
  })
  return Buffer.from(envelope)
}
