// The rules every strict reader of untrusted JSON in SMQTT applies to objects: signed documents
// (StrictJsonReader), policies (acl.ts), config files (config-text.ts) and saved replay state
// (replay-window.ts). Each reader throws its own error code with its own wording; what counts as
// an acceptable object is decided here, once.

/** What is wrong with an object: each reader words it in its own error. */
export type ObjectProblem =
  | { readonly kind: 'not-an-object' | 'not-plain' }
  | { readonly kind: 'unknown-field' | 'missing-field'; readonly key: string }

/**
 * What keeps `value` from being a plain JSON object whose keys are exactly `required` plus any
 * of `optional`, or undefined when it is one. Plain: made by `JSON.parse` (prototype
 * `Object.prototype` or null), so no class instance, array or getter-carrying object passes for data.
 */
export function objectProblem(
  value: unknown,
  required: readonly string[],
  optional: readonly string[] = [],
): ObjectProblem | undefined {
  const shape = shapeOf(value)
  if (shape !== 'plain') return { kind: shape }
  for (const key of Object.keys(value as object))
    if (!required.includes(key) && !optional.includes(key)) return { kind: 'unknown-field', key }
  for (const key of required) if (!Object.hasOwn(value as object, key)) return { kind: 'missing-field', key }
  return undefined
}

/** True for a plain JSON object (see {@link objectProblem}), whatever its keys. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return shapeOf(value) === 'plain'
}

function shapeOf(value: unknown): 'plain' | 'not-plain' | 'not-an-object' {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not-an-object'
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null ? 'plain' : 'not-plain'
}
