import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client'

/** The key server's Prometheus metrics, in a registry of its own (several apps per process in tests). */
export class KeyServerMetrics {
  readonly registry = new Registry()
  readonly requests = new Counter({
    name: 'smqtt_keyserver_requests_total',
    help: 'HTTP requests by route and status',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
  })
  readonly refusals = new Counter({
    name: 'smqtt_keyserver_refusals_total',
    help: 'Refused requests by error code',
    labelNames: ['code'] as const,
    registers: [this.registry],
  })
  readonly changes = new Counter({
    name: 'smqtt_keyserver_changes_total',
    help: 'Key changes: epochs created, principals revoked, policy updates',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  })
  readonly connectionsRefused = new Counter({
    name: 'smqtt_keyserver_connections_refused_total',
    help: 'Connections closed before a request: over the per-address cap at accept, or TLS not done by the deadline',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  })
  readonly bundleSeconds = new Histogram({
    name: 'smqtt_keyserver_bundle_seconds',
    help: 'Time to build and sign a key bundle',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  })

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'smqtt_keyserver_' })
  }
}
