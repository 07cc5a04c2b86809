// The snapshot curves of issue 14, cliff 2 (one import for curves.ts).
export { snapshotBytes } from './snapshot-bytes.js'
export { snapshotChange } from './snapshot-change.js'
export { snapshotCurrent } from './snapshot-current.js'
export { snapshotDelta } from './snapshot-delta.js'
export { snapshotUnchanged } from './snapshot-unchanged.js'
