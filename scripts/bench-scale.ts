// `npm run bench:scale`: the fleet-scale curves of issue 14, each printed with its ratio to the
// smallest point (see scripts/bench-scale/_curve.ts). `--quick` uses the CI-sized points;
// `--only NAME[,NAME]` runs some curves; `--sizes N[,N]` measures only those points. Each curve
// lives in scripts/bench-scale/<name>.ts.
import { parseArgs } from 'node:util'
import { curveTable, type ScaleCurve, type ScalePoint } from './bench-scale/_curve.js'
import { curves } from './bench-scale/curves.js'

const { values } = parseArgs({
  options: { quick: { type: 'boolean' }, only: { type: 'string' }, sizes: { type: 'string' } },
})
const sizes = values.sizes?.split(',').map(Number)
const only = values.only?.split(',')
const selected: ScaleCurve[] = curves.filter((curve) => !only || only.includes(curve.name))
if (selected.length === 0)
  throw new Error(`no curve named ${values.only}; have: ${curves.map((c) => c.name).join(', ')}`)

console.log(`# SMQTT fleet-scale curves (${values.quick ? 'quick' : 'full'} run, Node ${process.version})\n`)
for (const curve of selected) {
  const points: ScalePoint[] = []
  for (const size of sizes ?? (values.quick ? curve.axis.quickSizes : curve.axis.sizes))
    points.push({ size, ...(await curve.measure(size)) })
  console.log(`${curveTable(curve, points)}\n`)
}
