// The policy shapes the scenarios share. Each returns rules of the policy document exactly as the
// key server takes them (see the smart-home example's `src/policy.ts` for a whole document), so a
// scenario's policy reads as who reports to whom and who commands what. `%c` is the client id,
// which the broker binds to the authenticated principal.

/** Devices of `role` publish under `prefix`, each only under its own id; `readers` read them all. */
export const reports = (prefix: string, role: string, readers: string) =>
  [
    { effect: 'allow', actions: ['publish'], topics: [`${prefix}/%c/#`], roles: [role] },
    { effect: 'allow', actions: ['subscribe'], topics: [`${prefix}/#`], roles: [readers] },
  ] as const

/** `commanders` publish commands to the devices of `role` under `prefix`; each device reads only its own. */
export const commands = (prefix: string, commanders: string, role: string) =>
  [
    { effect: 'allow', actions: ['publish'], topics: [`${prefix}/+/cmd`], roles: [commanders] },
    { effect: 'allow', actions: ['subscribe'], topics: [`${prefix}/%c/cmd`], roles: [role] },
  ] as const
