// Prometheus metrics of one plugin instance. Each attach gets its own registry by default, so two
// brokers in one process (tests, or a CLI with two listeners) never collide on metric names.
import { Counter, Gauge, Registry } from 'prom-client'

export type SignatureResult = 'valid' | 'invalid' | 'skipped' | 'unavailable'

/** The metrics a plugin instance keeps; serve `registry.metrics()` on `/metrics`. */
export interface BrokerMetrics {
  readonly registry: Registry
  /** Refusals by hook (`connect`, `publish`, `subscribe`, `forward`) and reason code. */
  readonly refusals: Counter<'hook' | 'reason'>
  /** Accepted CONNECTs by authentication method. */
  readonly connects: Counter<'method'>
  /** Sessions the plugin closed itself, by reason code. */
  readonly sessionsClosed: Counter<'reason'>
  /** Snapshots accepted, by source (`pull`, `push`, `api`). */
  readonly snapshotsApplied: Counter<'source'>
  /** Signed notices (on a 304, or pushed) that vouched the content held still current: syncs that fetched nothing. */
  readonly snapshotsVouched: Counter<'source'>
  /** Pulled deltas, by outcome: applied, not-applicable (the whole snapshot pulled instead), refused. */
  readonly snapshotDeltas: Counter<'outcome'>
  /** Snapshots refused or pulls failed, by source. */
  readonly snapshotErrors: Counter<'source'>
  /**
   * Pulls made on demand for CONNECTs naming a principal the snapshot did not know, by result
   * (`applied`; `current`: the key server answered 304 with its signed notice; `unchanged`: a
   * snapshot came but was not newer; `failed`).
   */
  readonly onDemandPulls: Counter<'result'>
  /** Envelope signatures checked, by result (`valid`, `invalid`, `skipped`, `unavailable`). */
  readonly signatures: Counter<'result'>
  /**
   * The hot path counts signatures here (a labelled `inc` hashes its labels on every call);
   * `signatures` takes these in when it is read.
   */
  readonly signatureTally: Record<SignatureResult, number>
  /** Verification worker threads replaced, by reason (`crashed`, `timeout`). */
  readonly verifyWorkerFailures: Counter<'reason'>
}

/**
 * Creates the metrics; `state` is read at scrape time for the snapshot gauges.
 *
 * @example
 * ```ts
 * const metrics = createBrokerMetrics(() => ({ ageSeconds: 3, stale: false }))
 * response.end(await metrics.registry.metrics())
 * ```
 */
export function createBrokerMetrics(
  state: () => { ageSeconds: number; stale: boolean },
  registry: Registry = new Registry(),
): BrokerMetrics {
  const registers = [registry]
  const signatureTally: Record<SignatureResult, number> = { valid: 0, invalid: 0, skipped: 0, unavailable: 0 }
  new Gauge({
    name: 'smqtt_broker_snapshot_age_seconds',
    help: 'Seconds since the newest snapshot applied arrived from the key server (-1 before the first).',
    registers,
    collect() {
      this.set(state().ageSeconds)
    },
  })
  new Gauge({
    name: 'smqtt_broker_snapshot_stale',
    help: '1 while the plugin enforces a snapshot older than staleAfterSeconds, or has none.',
    registers,
    collect() {
      this.set(state().stale ? 1 : 0)
    },
  })
  return {
    registry,
    refusals: new Counter({
      name: 'smqtt_broker_refusals_total',
      help: 'Refused CONNECTs, publishes, subscriptions and deliveries, by hook and reason code.',
      labelNames: ['hook', 'reason'],
      registers,
    }),
    connects: new Counter({
      name: 'smqtt_broker_connects_total',
      help: 'Accepted CONNECTs by authentication method.',
      labelNames: ['method'],
      registers,
    }),
    sessionsClosed: new Counter({
      name: 'smqtt_broker_sessions_closed_total',
      help: 'Live sessions closed by the plugin (revocation, bad signature), by reason code.',
      labelNames: ['reason'],
      registers,
    }),
    snapshotsApplied: new Counter({
      name: 'smqtt_broker_snapshots_applied_total',
      help: 'Verified snapshots accepted, by source.',
      labelNames: ['source'],
      registers,
    }),
    snapshotDeltas: new Counter({
      name: 'smqtt_broker_snapshot_deltas_total',
      help: 'Snapshot deltas pulled, by outcome (applied; not-applicable: the whole snapshot was pulled instead; refused).',
      labelNames: ['outcome'],
      registers,
    }),
    snapshotsVouched: new Counter({
      name: 'smqtt_broker_snapshots_vouched_total',
      help: 'The snapshot held vouched still current by the key server (a sync that indexed nothing), by source.',
      labelNames: ['source'],
      registers,
    }),
    snapshotErrors: new Counter({
      name: 'smqtt_broker_snapshot_errors_total',
      help: 'Snapshot pulls that failed and snapshots refused (bad signature, older), by source.',
      labelNames: ['source'],
      registers,
    }),
    onDemandPulls: new Counter({
      name: 'smqtt_broker_snapshot_pulls_on_demand_total',
      help: 'Snapshot pulls made for CONNECTs naming an unknown principal (coalesced, at most one a second by default), by result.',
      labelNames: ['result'],
      registers,
    }),
    signatures: new Counter({
      name: 'smqtt_broker_envelope_signatures_total',
      help: 'Envelope signatures by result: valid, invalid, skipped (binding or sampled mode), or unavailable (worker failed).',
      labelNames: ['result'],
      registers,
      collect() {
        for (const result of Object.keys(signatureTally) as SignatureResult[]) {
          if (signatureTally[result] > 0) this.inc({ result }, signatureTally[result])
          signatureTally[result] = 0
        }
      },
    }),
    signatureTally,
    verifyWorkerFailures: new Counter({
      name: 'smqtt_broker_verify_worker_failures_total',
      help: 'Signature verification worker threads replaced after a crash or timeout (their envelopes were refused).',
      labelNames: ['reason'],
      registers,
    }),
  }
}
