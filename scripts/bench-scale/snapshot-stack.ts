// The stack the snapshot curves measure (issue 14, cliff 2): the key server over HTTPS (SQLite)
// with `size` principals, the broker as `npm start` assembles it (scheduled pulls an hour apart,
// so only the push can keep it current), and the key server's push. Fleet principals go
// straight into the store, disabled (no bundles to push), weighing in the snapshot all the same.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseBrokerConfig, type RunningBroker, startBroker } from '@smqtt/broker-plugin'
import { exportIdentity } from '@smqtt/core'
import { KEYSERVER_ROLE, type MqttPush, PUSH_PRINCIPAL_ID, startMqttPush } from '@smqtt/keyserver'
import { brokerConfigFor } from '@smqtt/test-kit/broker'
import { addFleet, type Harness, SMART_HOME_POLICY } from '@smqtt/test-kit/keyserver'
import { withKeyServer } from './_key-server.js'

export interface SnapshotStack {
  readonly h: Harness
  readonly broker: RunningBroker
  readonly push: MqttPush
}

export function withSnapshotStack<T>(size: number, measure: (stack: SnapshotStack) => Promise<T>): Promise<T> {
  // Now and then a TLS socket of the stack is reset during teardown with no 'error' listener
  // (not found yet; never seen in the tests): a bench run should not die of it.
  const onReset = (err: Error & { code?: string }) => {
    if (err.code !== 'ECONNRESET') throw err
  }
  process.on('uncaughtException', onReset)
  const dir = mkdtempSync(join(tmpdir(), 'smqtt-bench-snapshot-'))
  return withKeyServer({ policy: SMART_HOME_POLICY, followWallClock: true }, async (h) => {
    await addFleet(h, size)
    const brokerPrincipal = await h.enroll('broker-1', ['broker'])
    writeFileSync(join(dir, 'broker-identity.json'), JSON.stringify(exportIdentity(brokerPrincipal.identity)), {
      mode: 0o600,
    })
    await h.keyServer.servicePrincipal(PUSH_PRINCIPAL_ID, [KEYSERVER_ROLE])
    const broker = await startBroker(
      parseBrokerConfig(
        brokerConfigFor(h, {
          listeners: { mqtts: { host: '127.0.0.1', port: 0 } },
          keyServer: { identityFile: 'broker-identity.json', pullIntervalSeconds: 3_600 },
          metrics: false,
          logLevel: 'warn',
        }),
        dir,
      ),
      { logDestination: { write: () => {} } },
    )
    let push: MqttPush | undefined
    try {
      push = await startMqttPush(h.keyServer, {
        brokerUrl: broker.urls.mqtts as string,
        mqttOptions: { ca: h.caPem },
        coalesceMs: 20,
      })
      await push.flush()
      return await measure({ h, broker, push })
    } finally {
      await push?.close()
      await broker.close()
    }
  }).finally(() => {
    rmSync(dir, { recursive: true, force: true })
    setTimeout(() => process.off('uncaughtException', onReset), 1_000).unref()
  })
}
