// The policy format as a JSON Schema (draft 2020-12), for editors: a policy file can name it
// in `$schema` (from node_modules/@smqtt/keyserver/policy.schema.json, or the key server's
// /policy.schema.json). It checks the shape; parsePolicy also checks what a schema cannot
// (group ids and names unique, group and plaintext filters disjoint, topic length limits).
import { readFileSync } from 'node:fs'

/** The text of policy.schema.json (the same path from src/ and dist/). */
export const POLICY_SCHEMA: string = readFileSync(new URL('../policy.schema.json', import.meta.url), 'utf8')
