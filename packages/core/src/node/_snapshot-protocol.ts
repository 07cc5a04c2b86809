// The messages between snapshot-opener.ts and its worker (snapshot-worker.ts): internal, not
// part of `@smqtt/core/snapshot-opener`.
import type { BrokerSnapshot, SnapshotPrincipal } from '../broker-snapshot.js'
import type { SmqttErrorCode } from '../errors.js'

export type SnapshotWorkerRequest =
  | {
      readonly type: 'open'
      readonly id: number
      /** The signed document, its payload moved to `payload` when it is a string. */
      readonly signed: unknown
      readonly payload: Uint8Array | undefined
      readonly keyServerPublicKey: Uint8Array
    }
  | { readonly type: 'next'; readonly id: number }

export type SnapshotWorkerReply =
  | { readonly id: number; readonly type: 'head'; readonly snapshot: Omit<BrokerSnapshot, 'principals'> }
  | { readonly id: number; readonly type: 'principals'; readonly principals: readonly SnapshotPrincipal[] }
  | { readonly id: number; readonly type: 'done' }
  | { readonly id: number; readonly type: 'refused'; readonly code: SmqttErrorCode; readonly message: string }
