// The three scenarios by name, in the order `npm run scenario` runs them.
import { runAgriculture } from './agriculture.js'
import { runFactory } from './factory.js'
import { runHospital } from './hospital.js'
import type { DefenceResult, ScenarioOptions } from './stage.js'

export type { DefenceResult, ScenarioOptions } from './stage.js'

export const SCENARIOS: Readonly<Record<string, (options?: ScenarioOptions) => Promise<DefenceResult[]>>> = {
  hospital: runHospital,
  factory: runFactory,
  agriculture: runAgriculture,
}
