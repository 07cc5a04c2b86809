// An identity whose private keys are sealed in the store under the master key: the key server's
// own, and its service principals'. Created on first use; every process of a deployment then
// reads the same one.
import { exportIdentity, generateIdentity, type Identity, importIdentity, SmqttError } from '@smqtt/core'
import type { MasterKey } from '../master-key.js'
import type { KeyStore } from '../store/key-store.js'

/** The identity sealed as `secretName`, generated as `id` if there is none yet. */
export async function sealedIdentity(
  store: KeyStore,
  masterKey: MasterKey,
  secretName: string,
  id: string,
): Promise<Identity> {
  let sealed = await store.getSecret(secretName)
  if (!sealed) {
    const json = new TextEncoder().encode(JSON.stringify(exportIdentity(generateIdentity(id))))
    await store.insertSecret(secretName, masterKey.seal(secretName, json))
    sealed = await store.getSecret(secretName) // another process may have won the race
    if (!sealed) throw new SmqttError('ERR_STORE_UNAVAILABLE', `${secretName} was written but cannot be read back`)
  }
  return importIdentity(JSON.parse(new TextDecoder().decode(masterKey.open(secretName, sealed))))
}
