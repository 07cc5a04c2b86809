// smqtt-keyserver: the operator's command line. `init` and `start` work on files; every other
// command talks to the running server's admin API over HTTPS with the admin token, so all
// changes go through one place that audits them, re-keys groups and notifies brokers.
import { readFileSync } from 'node:fs'
import { request } from 'node:https'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { assertDeploymentFileMode } from '@smqtt/core/file-modes'
import { loadConfig } from './config.js'
import { initKeyServer, startKeyServer } from './server.js'

const HELP: Record<string, string> = {
  init: 'init [--dir DIR] [--host H] [--port P]\n  Creates master key, admin token, development PKI, config and store in DIR (default ./keyserver),\n  all or nothing (a failed init leaves nothing behind). DIR must not exist or be empty.',
  start: 'start [--config FILE]\n  Starts the key server (default config: ./keyserver/config.json).',
  enroll:
    'enroll <id> --role R [--role R2 ...] [--ttl SECONDS]\n  Prints a one-time enrollment token bound to <id> and the roles.',
  principals: 'principals\n  Lists principals with kid, roles and status.',
  policy: 'policy [--set FILE]\n  Prints the policy, or replaces it with FILE (JSON) and prints warnings.',
  grant:
    'grant (--role R | --principal ID) (--publish | --subscribe) <filter> [<filter> ...]\n  Adds an allow rule to the policy.',
  deny: 'deny (--role R | --principal ID) (--publish | --subscribe) <filter> [<filter> ...]\n  Adds a deny rule (deny wins).',
  rotate: 'rotate <group-id>\n  Schedules the next epoch of a key group now.',
  revoke: 'revoke <id>\n  Revokes a principal: revocation list, re-keying, brokers told.',
  audit: 'audit [--after ID] [--limit N]\n  Prints audit log entries.',
}

function usage(): string {
  return `usage: smqtt-keyserver <command> [options]   (every command takes --config FILE and --help)\n\n${Object.values(HELP).join('\n\n')}\n`
}

class CliError extends Error {}

interface Admin {
  call(method: string, path: string, body?: unknown): Promise<unknown>
}

function adminClient(configFile: string): Admin {
  const config = loadConfig(configFile)
  assertDeploymentFileMode(config.adminTokenFile, 'secret', { label: 'config $.adminTokenFile:' })
  const token = readFileSync(config.adminTokenFile, 'utf8').trim()
  const ca = readFileSync(config.tls.caFile, 'utf8')
  const host = config.listen.host === '0.0.0.0' || config.listen.host === '::' ? '127.0.0.1' : config.listen.host
  return {
    call: (method, path, body) =>
      new Promise((resolvePromise, reject) => {
        const payload = body === undefined ? undefined : JSON.stringify(body)
        const req = request(
          {
            host,
            port: config.listen.port,
            path,
            method,
            ca,
            timeout: 15_000,
            headers: { authorization: `Bearer ${token}`, ...(payload ? { 'content-type': 'application/json' } : {}) },
          },
          (res) => {
            const chunks: Buffer[] = []
            res.on('data', (c: Buffer) => chunks.push(c))
            res.on('end', () => {
              const text = Buffer.concat(chunks).toString('utf8')
              const parsed: unknown = text ? JSON.parse(text) : undefined
              if ((res.statusCode ?? 500) >= 400) {
                const error = (parsed as { error?: { code: string; message: string } })?.error
                reject(new CliError(error ? `${error.code}: ${error.message}` : `HTTP ${res.statusCode}`))
              } else resolvePromise(parsed)
            })
          },
        )
        req.on('timeout', () => req.destroy(new CliError('the key server did not answer within 15 s')))
        req.on('error', (err) =>
          reject(new CliError(`cannot reach the key server at ${host}:${config.listen.port}: ${err.message}`)),
        )
        req.end(payload)
      }),
  }
}

async function addRule(
  admin: Admin,
  effect: 'allow' | 'deny',
  values: Record<string, unknown>,
  filters: string[],
): Promise<void> {
  const action = values.publish ? 'publish' : values.subscribe ? 'subscribe' : undefined
  if (!action || (values.publish && values.subscribe))
    throw new CliError('give exactly one of --publish or --subscribe')
  if (filters.length === 0) throw new CliError('give at least one topic filter')
  const who = values.role
    ? { roles: values.role as string[] }
    : values.principal
      ? { principals: values.principal as string[] }
      : undefined
  if (!who) throw new CliError('give --role or --principal')
  const current = (await admin.call('GET', '/v1/admin/policy')) as { version: number; policy: { rules: unknown[] } }
  const policy = {
    ...current.policy,
    rules: [...current.policy.rules, { effect, actions: [action], topics: filters, ...who }],
  }
  const result = (await admin.call('PUT', '/v1/admin/policy', { policy, expectedVersion: current.version })) as {
    version: number
    warnings: string[]
  }
  console.log(`policy version ${result.version}`)
  for (const warning of result.warnings) console.log(`warning: ${warning}`)
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (!command || command === '--help' || command === 'help') {
    process.stdout.write(usage())
    return command ? 0 : 2
  }
  if (!HELP[command]) throw new CliError(`unknown command ${command}\n\n${usage()}`)
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      help: { type: 'boolean' },
      config: { type: 'string', default: 'keyserver/config.json' },
      dir: { type: 'string', default: 'keyserver' },
      host: { type: 'string' },
      port: { type: 'string' },
      role: { type: 'string', multiple: true },
      principal: { type: 'string', multiple: true },
      publish: { type: 'boolean' },
      subscribe: { type: 'boolean' },
      ttl: { type: 'string' },
      set: { type: 'string' },
      after: { type: 'string' },
      limit: { type: 'string' },
    },
  })
  if (values.help) {
    console.log(HELP[command])
    return 0
  }
  const configFile = resolve(values.config)
  switch (command) {
    case 'init': {
      const listen =
        values.host || values.port ? { host: values.host ?? '127.0.0.1', port: Number(values.port ?? 8443) } : undefined
      const result = await initKeyServer(resolve(values.dir), listen ? { listen } : {})
      console.log(
        `initialized ${result.configFile}\nkey server public key: ${result.keyServerPublicKey}\nadmin token written to ${resolve(values.dir, 'admin.token')} (keep it secret)`,
      )
      return 0
    }
    case 'start': {
      const server = await startKeyServer(loadConfig(configFile))
      const stop = () => {
        server.close().then(
          () => process.exit(0),
          () => process.exit(1),
        )
      }
      process.once('SIGINT', stop)
      process.once('SIGTERM', stop)
      return -1 // keep running
    }
    case 'enroll': {
      const [id] = positionals
      if (!id || !values.role?.length) throw new CliError(HELP.enroll)
      const ttlSeconds = values.ttl ? Number(values.ttl) : undefined
      const result = (await adminClient(configFile).call('POST', '/v1/admin/enrollment-tokens', {
        principalId: id,
        roles: values.role,
        ...(ttlSeconds ? { ttlSeconds } : {}),
      })) as { token: string; expiresAt: number }
      console.log(
        `${result.token}\n(one-time token for ${id}, expires ${new Date(result.expiresAt * 1000).toISOString()})`,
      )
      return 0
    }
    case 'principals': {
      const { principals } = (await adminClient(configFile).call('GET', '/v1/admin/principals')) as {
        principals: { id: string; kid: number; roles: string[]; status: string }[]
      }
      for (const p of principals)
        console.log(`${String(p.kid).padStart(5)}  ${p.status.padEnd(8)}  ${p.id}  [${p.roles.join(', ')}]`)
      if (principals.length === 0) console.log('no principals enrolled')
      return 0
    }
    case 'policy': {
      const admin = adminClient(configFile)
      if (values.set) {
        const current = (await admin.call('GET', '/v1/admin/policy')) as { version: number }
        const policy: unknown = JSON.parse(readFileSync(values.set, 'utf8'))
        const result = (await admin.call('PUT', '/v1/admin/policy', { policy, expectedVersion: current.version })) as {
          version: number
          warnings: string[]
        }
        console.log(`policy version ${result.version}`)
        for (const warning of result.warnings) console.log(`warning: ${warning}`)
      } else console.log(JSON.stringify(await admin.call('GET', '/v1/admin/policy'), null, 2))
      return 0
    }
    case 'grant':
    case 'deny':
      await addRule(adminClient(configFile), command === 'grant' ? 'allow' : 'deny', values, positionals)
      return 0
    case 'rotate': {
      const [group] = positionals
      if (!group || !/^[0-9]+$/.test(group)) throw new CliError(HELP.rotate)
      const result = (await adminClient(configFile).call('POST', `/v1/admin/groups/${group}/rotate`)) as {
        epoch: number
        activatesAt: number
      }
      console.log(
        `group ${group}: epoch ${result.epoch} activates ${new Date(result.activatesAt * 1000).toISOString()}`,
      )
      return 0
    }
    case 'revoke': {
      const [id] = positionals
      if (!id) throw new CliError(HELP.revoke)
      await adminClient(configFile).call('POST', `/v1/admin/principals/${encodeURIComponent(id)}/revoke`)
      console.log(`revoked ${id}: revocation list published, its groups re-keyed`)
      return 0
    }
    case 'audit': {
      const query = new URLSearchParams({
        ...(values.after ? { afterId: values.after } : {}),
        ...(values.limit ? { limit: values.limit } : {}),
      })
      const { entries } = (await adminClient(configFile).call('GET', `/v1/admin/audit?${query}`)) as {
        entries: {
          id: number
          at: number
          actor: string
          action: string
          subject: string
          outcome: string
          details: unknown
        }[]
      }
      for (const e of entries)
        console.log(
          `${e.id}\t${new Date(e.at * 1000).toISOString()}\t${e.outcome}\t${e.action}\t${e.subject}\t${e.actor}\t${JSON.stringify(e.details)}`,
        )
      return 0
    }
  }
  return 2
}
