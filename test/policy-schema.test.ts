// policy.schema.json (for editors) and parsePolicy (what the key server enforces) must agree:
// every policy the repository ships or documents passes both, and broken policies fail both.
// What a JSON Schema cannot say (uniqueness across objects, filters that share topics, byte and
// level limits) is listed separately: the schema lets it through, the parser refuses it.
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parsePolicy, policyProblems } from '@smqtt/core'
import { SMART_HOME_POLICY as KEYSERVER_TEST_POLICY } from '@smqtt/test-kit/keyserver'
import { Ajv2020 } from 'ajv/dist/2020.js'
import { describe, expect, test } from 'vitest'
import { AGRICULTURE_POLICY } from '../examples/scenarios/src/agriculture.js'
import { FACTORY_POLICY } from '../examples/scenarios/src/factory.js'
import { HOSPITAL_POLICY } from '../examples/scenarios/src/hospital.js'
import { SMART_HOME_POLICY } from '../examples/smart-home/src/policy.js'

const read = (path: string) => readFileSync(fileURLToPath(new URL(`../${path}`, import.meta.url)), 'utf8')
const schema = JSON.parse(read('packages/keyserver/policy.schema.json')) as object
const validate = new Ajv2020({ strict: true, allErrors: true }).compile(schema)

/** `npm start`'s starter policy, as written in scripts/start.ts (the script runs on import). */
function starterPolicy(): unknown {
  const literal = /const DEV_POLICY = (\{[\s\S]*?\n\})\n/.exec(read('scripts/start.ts'))?.[1]
  if (!literal) throw new Error('DEV_POLICY not found in scripts/start.ts')
  return new Function(`return ${literal}`)()
}

/** The JSON examples of docs/policy.md that are whole policies. */
function documentedPolicies(): unknown[] {
  return [...read('docs/policy.md').matchAll(/```json\n([\s\S]*?)```/g)]
    .map((m) => JSON.parse(m[1] as string) as Record<string, unknown>)
    .filter((doc) => doc.version !== undefined)
}

const shipped: Record<string, unknown> = {
  'examples/smart-home': SMART_HOME_POLICY,
  'examples/scenarios agriculture': AGRICULTURE_POLICY,
  'examples/scenarios factory': FACTORY_POLICY,
  'examples/scenarios hospital': HOSPITAL_POLICY,
  '@smqtt/test-kit/keyserver SMART_HOME_POLICY': KEYSERVER_TEST_POLICY,
  'scripts/start.ts DEV_POLICY': starterPolicy(),
  ...Object.fromEntries(documentedPolicies().map((p, i) => [`docs/policy.md example ${i + 1}`, p])),
}

const base = { version: 1, rules: [], groups: [], plaintext: [] }
const rule = { effect: 'allow', actions: ['publish'], topics: ['a/b'] }
const group = { id: 1, name: 'g', filter: 'a/#' }

const invalid: Record<string, unknown> = {
  'not an object': [],
  'version 2': { ...base, version: 2 },
  'missing plaintext': { version: 1, rules: [], groups: [] },
  'unknown root field': { ...base, group: [] },
  'effect permit': { ...base, rules: [{ ...rule, effect: 'permit' }] },
  'empty actions': { ...base, rules: [{ ...rule, actions: [] }] },
  'action read': { ...base, rules: [{ ...rule, actions: ['read'] }] },
  'empty topics': { ...base, rules: [{ ...rule, topics: [] }] },
  'empty roles': { ...base, rules: [{ ...rule, roles: [] }] },
  'empty principal id': { ...base, rules: [{ ...rule, principals: [''] }] },
  'unknown rule field': { ...base, rules: [{ ...rule, role: ['app'] }] },
  'unknown substitution %C': { ...base, rules: [{ ...rule, topics: ['devices/%C'] }] },
  "'#' not last": { ...base, rules: [{ ...rule, topics: ['a/#/b'] }] },
  "'+' inside a level": { ...base, rules: [{ ...rule, topics: ['a/b+'] }] },
  'empty filter': { ...base, rules: [{ ...rule, topics: [''] }] },
  'U+0000 in a filter': { ...base, rules: [{ ...rule, topics: ['a/\u0000'] }] },
  'group id negative': { ...base, groups: [{ ...group, id: -1 }] },
  'group id too large': { ...base, groups: [{ ...group, id: 2 ** 32 }] },
  'group id not an integer': { ...base, groups: [{ ...group, id: 1.5 }] },
  'group without name': { ...base, groups: [{ id: 1, filter: 'a/#' }] },
  'substitution in a group filter': { ...base, groups: [{ ...group, filter: 'a/%c/#' }] },
  'rotateEverySeconds 0': { ...base, groups: [{ ...group, rotateEverySeconds: 0 }] },
  'graceSeconds negative': { ...base, groups: [{ ...group, graceSeconds: -1 }] },
  'unknown group field': { ...base, groups: [{ ...group, rotate: 60 }] },
  'plaintext not a filter': { ...base, plaintext: ['a/#/b'] },
  'substitution in plaintext': { ...base, plaintext: ['status/%c'] },
}

/** Valid in shape, refused by the key server for reasons a JSON Schema cannot express. */
const parserOnly: Record<string, unknown> = {
  'duplicate group ids': { ...base, groups: [group, { ...group, name: 'h', filter: 'b/#' }] },
  'duplicate group names': { ...base, groups: [group, { ...group, id: 2, filter: 'b/#' }] },
  'groups sharing topics': { ...base, groups: [group, { id: 2, name: 'h', filter: 'a/b/+' }] },
  'plaintext sharing topics with a group': { ...base, groups: [group], plaintext: ['+/b'] },
  'more than 128 levels': { ...base, rules: [{ ...rule, topics: [Array(129).fill('x').join('/')] }] },
}

describe('policy.schema.json agrees with parsePolicy', () => {
  test.each(Object.entries(shipped))('%s: valid for both', (_name, policy) => {
    expect(validate(policy), JSON.stringify(validate.errors)).toBe(true)
    expect(() => parsePolicy(policy)).not.toThrow()
  })

  test('the repository ships and documents policies to check', () => {
    expect(Object.keys(shipped).filter((k) => k.startsWith('docs/')).length).toBeGreaterThan(0)
  })

  test.each(Object.entries(invalid))('%s: refused by both', (_name, policy) => {
    expect(validate(policy)).toBe(false)
    expect(() => parsePolicy(policy)).toThrow(expect.objectContaining({ code: 'ERR_POLICY_INVALID' }))
    expect(policyProblems(policy).length).toBeGreaterThan(0)
  })

  test.each(Object.entries(parserOnly))('%s: beyond the schema, refused by the parser', (_name, policy) => {
    expect(validate(policy)).toBe(true)
    expect(() => parsePolicy(policy)).toThrow(expect.objectContaining({ code: 'ERR_POLICY_INVALID' }))
  })

  test('policyProblems lists every broken entry, parsePolicy throws the first', () => {
    const policy = { ...base, rules: [{ ...rule, effect: 'x' }, rule, { ...rule, topics: ['%z'] }], plaintext: ['#/a'] }
    expect(policyProblems(policy)).toEqual([
      "rules[0].effect: must be 'allow' or 'deny'",
      'rules[2].topics[0]: unknown substitution at index 0; only %c and %u exist',
      "plaintext[0]: topic filter has '#' before the last level at index 0",
    ])
    expect(() => parsePolicy(policy)).toThrow("rules[0].effect: must be 'allow' or 'deny'")
  })
})
