// The house: who may say what, as the operator writes it into the key server. One policy, read
// by the key server (who gets which keys) and by the broker plugin (who may publish, subscribe
// and receive). `%c` is the client id, which the broker binds to the authenticated principal.

/** Everything in this example lives under one home. */
export const HOME = 'home/1'

export const topics = {
  temperature: (thermostat: string) => `${HOME}/thermostat/${thermostat}/temperature`,
  lockCommand: (lock: string) => `${HOME}/lock/${lock}/cmd`,
  lockState: (lock: string) => `${HOME}/lock/${lock}/state`,
} as const

export const SMART_HOME_POLICY = {
  version: 1,
  rules: [
    // A thermostat publishes its own readings, nothing else.
    { effect: 'allow', actions: ['publish'], topics: ['home/+/thermostat/%c/#'], roles: ['thermostat'] },
    // A lock takes commands on its own topic and reports its own state.
    { effect: 'allow', actions: ['subscribe'], topics: ['home/+/lock/%c/cmd'], roles: ['lock'] },
    { effect: 'allow', actions: ['publish'], topics: ['home/+/lock/%c/state'], roles: ['lock'] },
    // The homeowner's app reads temperatures and lock states, and commands the locks.
    { effect: 'allow', actions: ['subscribe'], topics: ['home/+/thermostat/#', 'home/+/lock/+/state'], roles: ['app'] },
    { effect: 'allow', actions: ['publish'], topics: ['home/+/lock/+/cmd'], roles: ['app'] },
  ],
  // Key groups: the topics that share keys. Readers get the key; only writers' signatures count.
  groups: [
    { id: 1, name: 'thermostats', filter: 'home/+/thermostat/#', rotateEverySeconds: 3600, graceSeconds: 120 },
    { id: 2, name: 'lock-commands', filter: 'home/+/lock/+/cmd' },
    { id: 3, name: 'lock-states', filter: 'home/+/lock/+/state' },
  ],
  plaintext: [],
} as const

/** The principals of the story: id and roles, each enrolled with its own one-time token. */
export const PRINCIPALS = {
  thermostat: { id: 'thermostat-hall', roles: ['thermostat'] },
  frontDoor: { id: 'front-door', roles: ['lock'] },
  backDoor: { id: 'back-door', roles: ['lock'] },
  app: { id: 'homeowner-app', roles: ['app'] },
  // An old tablet with the app on it: it will be stolen and revoked.
  tablet: { id: 'old-tablet', roles: ['app'] },
} as const
