// Command-line paths are the caller's. In a clone, `npm run -s cli -w @smqtt/keyserver -- start
// --config ./ks/config.json` runs the command inside the package folder, but the user typed the
// path in the folder they ran npm from, which npm passes on as INIT_CWD. Only our own npm scripts
// get that treatment: an installed bin run from a user's own npm script (where INIT_CWD is set
// too) keeps the directory that script runs in, as any other command would.
import { resolve } from 'node:path'

/**
 * Resolves a path given on the command line against the directory the user ran the command
 * from: `INIT_CWD` when one of the `@smqtt/*` packages' own npm scripts started us, else the
 * current directory. Absolute paths are returned as they are.
 *
 * @example
 * ```ts
 * // cd /home/me && npm run -s cli -w @smqtt/keyserver -- start --config ks/config.json
 * resolveCallerPath('ks/config.json') // '/home/me/ks/config.json', not '…/packages/keyserver/ks/config.json'
 * ```
 */
export function resolveCallerPath(path: string, env: NodeJS.ProcessEnv = process.env): string {
  const base = env.npm_package_name?.startsWith('@smqtt/') ? env.INIT_CWD : undefined
  return resolve(base ?? process.cwd(), path)
}
