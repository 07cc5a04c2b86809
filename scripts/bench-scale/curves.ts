// The curves `npm run bench:scale` runs, in this order. Add a curve: a module exporting a
// ScaleCurve (see _curve.ts; a key server per point: withKeyServer in _key-server.ts), listed here.
import type { ScaleCurve } from './_curve.js'
import { bundleBytes } from './bundle-bytes.js'
import { clientMemory } from './client-memory.js'
import { enrollment } from './enrollment.js'
import { freshnessPoll } from './freshness-poll.js'
import { forwardCheck } from './policy-forward-check.js'
import { policyParse } from './policy-parse.js'
import { snapshotApply } from './policy-snapshot-apply.js'
import { pushHome } from './push-home.js'
import { rekey } from './rekey.js'
import { revocationsList } from './revocations-list.js'
import { snapshotBytes, snapshotChange, snapshotCurrent, snapshotDelta, snapshotUnchanged } from './snapshot-curves.js'

export const curves: ScaleCurve[] = []
curves.push(policyParse)
curves.push(snapshotApply)
curves.push(forwardCheck)
curves.push(snapshotBytes, snapshotCurrent, snapshotUnchanged, snapshotChange, snapshotDelta)
curves.push(bundleBytes)
curves.push(revocationsList)
curves.push(rekey, pushHome)
curves.push(enrollment, freshnessPoll)
curves.push(clientMemory)
