// smqtt-keyserver: the operator's command line. `init` and `start` work on files; every other
// command talks to the running server's admin API over HTTPS with the admin token, so all
// changes go through one place that audits them, re-keys groups and notifies brokers.
import { readFileSync } from 'node:fs'
import { request } from 'node:https'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { PolicyEvaluator, parsePolicy, policyProblems } from '@smqtt/core'
import { resolveCallerPath } from '@smqtt/core/caller-path'
import { assertDeploymentFileMode } from '@smqtt/core/file-modes'
import { loadKeyServerConfig } from './config.js'
import { initKeyServer, renewDeploymentCertificate, startKeyServer, upgradeDeploymentPki } from './server.js'
import {
  type ActionExplanation,
  explainPrincipal,
  type PrincipalExplanation,
  policyWarnings,
} from './service/policy-review.js'

const HELP: Record<string, string> = {
  init: 'init [--dir DIR] [--host H] [--port P] [--server-name NAME ...]\n  Creates master key, admin token, development PKI, config and store in DIR (default ./keyserver),\n  all or nothing (a failed init leaves nothing behind). DIR must not exist or be empty.\n  --server-name: a DNS name or IP address of the key server or a broker, besides localhost and\n  loopback; the CA can certify these names only (name constraints), for its whole life.',
  pki:
    "pki renew [--cert FILE --key FILE] [--force]\n  Re-issues a server certificate from the deployment CA when under a third of its life is left\n  (or with --force): the key server's own (tls.certFile), or the given pair, e.g. a broker's.\n  Restart the server that uses it. `start` renews the key server's own by itself.\n" +
    'pki upgrade\n  Moves a deployment made before intermediates to a root and an issuing intermediate CA: the root\n  (path length 0) is re-certified under the same key, so ca.pem changes and every client and broker\n  must get the new one. Stop the key server first; then `pki renew --force` each broker certificate.',
  start: 'start [--config FILE]\n  Starts the key server (default config: ./keyserver/config.json).',
  enroll:
    'enroll <id> --role R [--role R2 ...] [--ttl SECONDS]\n  Prints a one-time enrollment token bound to <id> and the roles.',
  principals: 'principals\n  Lists principals with kid, roles and status.',
  policy:
    'policy [--set FILE]\n  Prints the policy, or replaces it with FILE (JSON) and prints warnings.\n' +
    'policy validate FILE\n  Checks FILE offline: each error with its path (exit 1), or "valid" and the warnings that need no\n  enrolled principals (exit 0). The format: docs/policy.md, policy.schema.json.\n' +
    'policy explain <id> [--file FILE --role R ...]\n  What <id> may publish and subscribe and which rule says so, the key groups it reads and writes,\n  its plaintext topics and warnings. With --file: offline, against FILE, for a principal with the roles given.',
  group:
    'group add <id> --filter F [--name NAME] [--rotate SECONDS] [--grace SECONDS]\n  Adds key group <id> (a number): the topics F matches share its keys (one filter per group).\n  --rotate: a new epoch every SECONDS; --grace: how long a replaced epoch stays readable.\n' +
    'group remove <id>\n  Removes key group <id>: its keys are retired at once and no longer handed out; its topics belong to\n  no group, so the broker refuses publishes there until another group or a plaintext filter covers them.',
  groups: 'groups\n  Lists the key groups: id, name, filter, rotation.',
  grant:
    'grant (--role R | --principal ID) (--publish | --subscribe) <filter> [<filter> ...]\n  Adds an allow rule to the policy.',
  deny: 'deny (--role R | --principal ID) (--publish | --subscribe) <filter> [<filter> ...]\n  Adds a deny rule (deny wins).',
  rotate: 'rotate <group-id>\n  Schedules the next epoch of a key group now.',
  revoke: 'revoke <id>\n  Revokes a principal: revocation list, re-keying, brokers told.',
  audit: 'audit [--after ID] [--limit N]\n  Prints audit log entries.',
}

function usage(): string {
  return `usage: smqtt-keyserver <command> [options]   (every command takes --config FILE and --help;\n  relative paths are the caller's: under npm run -w, the folder npm was run from)\n\n${Object.values(HELP).join('\n\n')}\n`
}

class CliError extends Error {}

interface Admin {
  call(method: string, path: string, body?: unknown): Promise<unknown>
}

function adminClient(configFile: string): Admin {
  const config = loadKeyServerConfig(configFile)
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

type PolicyDocument = {
  rules: unknown[]
  groups: { id: number; name: string; filter: string; rotateEverySeconds?: number; graceSeconds?: number }[]
}

/** Reads a JSON file named on the command line (relative to the caller's directory). */
function readJson(file: string): unknown {
  const path = resolveCallerPath(file)
  try {
    return JSON.parse(readFileSync(path, 'utf8'))
  } catch (err) {
    throw new CliError(`${path}: ${(err as Error).message}`)
  }
}

async function putPolicy(admin: Admin, policy: unknown, expectedVersion: number): Promise<void> {
  const result = (await admin.call('PUT', '/v1/admin/policy', { policy, expectedVersion })) as {
    version: number
    warnings: string[]
  }
  console.log(`policy version ${result.version}`)
  for (const warning of result.warnings) console.log(`warning: ${warning}`)
}

/** `policy validate FILE`: offline, so it works before the key server exists. */
function validatePolicyFile(file: string | undefined): number {
  if (!file) throw new CliError(HELP.policy)
  const document = readJson(file)
  const problems = policyProblems(document)
  for (const problem of problems) console.log(`error: ${problem}`)
  if (problems.length > 0) return 1
  console.log('valid')
  for (const warning of policyWarnings(parsePolicy(document))) console.log(`warning: ${warning}`)
  return 0
}

const seconds = (value: string | undefined, flag: string): number | undefined => {
  if (value === undefined) return undefined
  if (!/^[0-9]+$/.test(value)) throw new CliError(`${flag} takes a whole number of seconds`)
  return Number(value)
}

/** `group add` and `group remove`: read the policy, change its groups, write it back (optimistically). */
async function changeGroups(admin: Admin, positionals: string[], values: Record<string, unknown>): Promise<number> {
  const [sub, idText] = positionals
  if ((sub !== 'add' && sub !== 'remove') || !idText || !/^[0-9]+$/.test(idText)) throw new CliError(HELP.group)
  const id = Number(idText)
  const current = (await admin.call('GET', '/v1/admin/policy')) as { version: number; policy: PolicyDocument }
  const groups = current.policy.groups
  if (sub === 'remove') {
    if (!groups.some((g) => g.id === id)) throw new CliError(`no key group ${id} in the policy`)
    await putPolicy(admin, { ...current.policy, groups: groups.filter((g) => g.id !== id) }, current.version)
    console.log(`removed key group ${id}: its keys are retired; its topics belong to no group now`)
    return 0
  }
  const filters = (values.filter as string[] | undefined) ?? []
  if (filters.length !== 1)
    throw new CliError('give exactly one --filter: a key group has one filter (add one group per filter)')
  if (groups.some((g) => g.id === id)) throw new CliError(`key group ${id} exists; remove it first or pick another id`)
  const rotate = seconds(values.rotate as string | undefined, '--rotate')
  const grace = seconds(values.grace as string | undefined, '--grace')
  const group = {
    id,
    name: (values.name as string | undefined) ?? `group-${id}`,
    filter: filters[0],
    ...(rotate !== undefined ? { rotateEverySeconds: rotate } : {}),
    ...(grace !== undefined ? { graceSeconds: grace } : {}),
  }
  await putPolicy(admin, { ...current.policy, groups: [...groups, group] }, current.version)
  console.log(`added key group ${id} ${JSON.stringify(group.name)} (${group.filter}): its first epoch is active`)
  return 0
}

function printExplanation(e: PrincipalExplanation): void {
  const status = (e as { status?: string }).status
  console.log(
    `principal ${e.principal.id}${status ? ` (${status})` : ''}, roles: ${e.principal.roles.join(', ') || '(none)'}`,
  )
  const action = (name: string, a: ActionExplanation) => {
    console.log(`${name}:`)
    if (a.deniedOutright) console.log('  nothing: a deny rule could not be applied to this principal, so it denies all')
    for (const allow of a.allow) {
      console.log(`  allow ${allow.filter}   rules[${allow.rule}] (${allow.via})`)
      for (const cut of allow.cutBy)
        console.log(
          `    except ${cut.filter ?? `${cut.pattern} (substitution refused)`}   rules[${cut.rule}] deny (${cut.via})`,
        )
    }
    if (a.allow.length === 0 && !a.deniedOutright) console.log('  nothing')
  }
  action('publish', e.publish)
  action('subscribe', e.subscribe)
  console.log('key groups:')
  for (const g of e.groups) {
    const roles = [
      g.reads ? `reads via ${g.readsVia.join(', ')}` : '',
      g.writes ? `writes via ${g.writesVia.join(', ')}` : '',
    ]
    console.log(`  ${g.id} ${g.name} (${g.filter}): ${roles.filter(Boolean).join('; ')}`)
    if (g.publishRights)
      console.log(
        `    signs for: ${g.publishRights.allow.join(', ')}${g.publishRights.deny.length ? ` except ${g.publishRights.deny.join(', ')}` : ''}`,
      )
  }
  if (e.groups.length === 0) console.log('  none: it gets no keys')
  console.log('plaintext:')
  for (const p of e.plaintext)
    console.log(
      `  ${p.filter}: ${[p.publish ? 'publish' : '', p.subscribe ? 'subscribe' : ''].filter(Boolean).join(', ')}`,
    )
  if (e.plaintext.length === 0) console.log('  none')
  for (const warning of e.warnings) console.log(`warning: ${warning}`)
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
      filter: { type: 'string', multiple: true },
      name: { type: 'string' },
      rotate: { type: 'string' },
      grace: { type: 'string' },
      file: { type: 'string' },
      'server-name': { type: 'string', multiple: true },
      cert: { type: 'string' },
      key: { type: 'string' },
      force: { type: 'boolean' },
    },
  })
  if (values.help) {
    console.log(HELP[command])
    return 0
  }
  // Paths are the caller's: under `npm run -w`, relative to where npm was run (INIT_CWD).
  const configFile = resolveCallerPath(values.config)
  switch (command) {
    case 'init': {
      const listen =
        values.host || values.port ? { host: values.host ?? '127.0.0.1', port: Number(values.port ?? 8443) } : undefined
      const dir = resolveCallerPath(values.dir)
      const serverNames = values['server-name'] ?? []
      const result = await initKeyServer(dir, { ...(listen ? { listen } : {}), serverNames })
      console.log(
        `initialized ${result.configFile}\nkey server public key: ${result.keyServerPublicKey}\nadmin token written to ${join(dir, 'admin.token')} (keep it secret)`,
      )
      return 0
    }
    case 'start': {
      const server = await startKeyServer(loadKeyServerConfig(configFile))
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
      // The token alone on stdout, so `TOKEN=$(smqtt-keyserver enroll …)` captures just it.
      console.log(result.token)
      console.error(`(one-time token for ${id}, expires ${new Date(result.expiresAt * 1000).toISOString()})`)
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
      const [sub, id] = positionals
      if (sub === 'validate') return validatePolicyFile(id)
      if (sub === 'explain') {
        if (!id) throw new CliError(HELP.policy)
        printExplanation(
          values.file
            ? explainPrincipal(new PolicyEvaluator(parsePolicy(readJson(values.file))), {
                id,
                roles: values.role ?? [],
              })
            : ((await adminClient(configFile).call(
                'GET',
                `/v1/admin/principals/${encodeURIComponent(id)}/explain`,
              )) as PrincipalExplanation),
        )
        return 0
      }
      if (sub !== undefined) throw new CliError(`unknown policy command ${sub}\n\n${HELP.policy}`)
      const admin = adminClient(configFile)
      if (values.set) {
        const policy = readJson(values.set)
        const current = (await admin.call('GET', '/v1/admin/policy')) as { version: number }
        await putPolicy(admin, policy, current.version)
      } else console.log(JSON.stringify(await admin.call('GET', '/v1/admin/policy'), null, 2))
      return 0
    }
    case 'group':
      return changeGroups(adminClient(configFile), positionals, values)
    case 'groups': {
      const { policy } = (await adminClient(configFile).call('GET', '/v1/admin/policy')) as { policy: PolicyDocument }
      for (const g of policy.groups)
        console.log(
          `${String(g.id).padStart(5)}  ${g.name}  ${g.filter}  ${g.rotateEverySeconds ? `rotates every ${g.rotateEverySeconds} s` : 'no scheduled rotation'}${g.graceSeconds !== undefined ? `, grace ${g.graceSeconds} s` : ''}`,
        )
      if (policy.groups.length === 0) console.log('no key groups: add one with `group add`')
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
    case 'pki': {
      if (positionals[0] === 'upgrade' && positionals.length === 1) {
        const { rootRecertified } = await upgradeDeploymentPki(loadKeyServerConfig(configFile))
        console.log(
          rootRecertified
            ? 'root re-certified (same key) and intermediate CA made: give every client and broker the new ca.pem'
            : 'two levels already: nothing pinned changed',
        )
        return 0
      }
      if (positionals[0] !== 'renew' || positionals.length > 1) throw new CliError(HELP.pki)
      const result = await renewDeploymentCertificate(loadKeyServerConfig(configFile), {
        ...(values.cert ? { certFile: resolveCallerPath(values.cert) } : {}),
        ...(values.key ? { keyFile: resolveCallerPath(values.key) } : {}),
        ...(values.force ? { force: true } : {}),
      })
      const until = result.notAfter.toISOString()
      console.log(
        result.renewed
          ? `renewed (${result.reason}): valid until ${until}; restart the server that uses it`
          : result.reason === 'other-issuer'
            ? `not renewed: not issued by the deployment CA (valid until ${until}); renew it where it came from`
            : `not renewed: valid until ${until}, not due yet (--force renews now)`,
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
