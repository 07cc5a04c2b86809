// What every scale curve shares (issue 14): a curve measures one quantity at growing fleet sizes
// and prints it with its ratio to the smallest point, and that ratio divided by the size ratio,
// so a cliff shows as a number that keeps climbing instead of a flat ~1.

/** What a curve measured at one size. */
export interface Measurement {
  readonly value: number
  /** Anything else worth a column (e.g. bytes beside milliseconds). */
  readonly note?: string
}

/** One measured point: the fleet size (principals, groups, writers, revocations, ...) and what was measured there. */
export interface ScalePoint extends Measurement {
  readonly size: number
}

/** The sizes a curve is measured at, and what they count. */
export interface ScaleAxis {
  /** What the size counts: the table's first column. */
  readonly label: string
  /** Sizes for the full run (100 → 100,000 or further) and for `--quick` (CI-sized). */
  readonly sizes: readonly number[]
  readonly quickSizes: readonly number[]
}

export interface ScaleCurve {
  /** Short and unique: what `--only NAME` selects. */
  readonly name: string
  /** What is measured, and in which unit, for the table's title. */
  readonly title: string
  readonly unit: string
  readonly axis: ScaleAxis
  /** Measures one point; may take seconds at the largest sizes. */
  measure(size: number): Promise<Measurement>
}

/** The snapshot curves' axis: one, so that their tables compare row by row. */
export const SNAPSHOT_PRINCIPALS: ScaleAxis = {
  label: 'principals',
  sizes: [100, 1_000, 10_000, 100_000],
  quickSizes: [100, 2_000],
}

/** The axis of the curves of an active fleet (scripts/bench-scale/_active-fleet.ts). */
export const ACTIVE_PRINCIPALS: ScaleAxis = {
  label: 'active principals',
  sizes: [100, 1_000, 10_000, 100_000],
  quickSizes: [100, 3_000],
}

/** `work`'s result and the milliseconds it took. */
export async function timed<T>(work: () => Promise<T> | T): Promise<{ result: T; ms: number }> {
  const started = performance.now()
  const result = await work()
  return { result, ms: performance.now() - started }
}

/** Bytes as KiB for a note: one decimal below 10 KiB. */
export const kib = (bytes: number) => `${(bytes / 1024).toFixed(bytes < 10_240 ? 1 : 0)} KiB`

/** The middle value (the upper one of an even count); NaN for none. */
export const median = (values: readonly number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN

const format = (value: number) =>
  value >= 100
    ? value.toFixed(0)
    : value >= 10
      ? value.toFixed(1)
      : value >= 1
        ? value.toFixed(2)
        : value.toPrecision(2)

/**
 * The curve as a Markdown table: size, value, ratio to the smallest point, and that ratio per
 * size ratio (1.0 = linear, below 1 = better than linear, climbing = worse than linear).
 */
export function curveTable(curve: ScaleCurve, points: readonly ScalePoint[]): string {
  const [first] = points
  const lines = [
    `### ${curve.title}`,
    '',
    `| ${curve.axis.label} | ${curve.unit} | × smallest | ÷ size ratio | note |`,
    '| ---: | ---: | ---: | ---: | --- |',
  ]
  for (const point of points) {
    const ratio = first && first.value > 0 ? point.value / first.value : Number.NaN
    const perSize = first ? ratio / (point.size / first.size) : Number.NaN
    lines.push(
      `| ${point.size.toLocaleString('en')} | ${format(point.value)} | ${format(ratio)} | ${format(perSize)} | ${point.note ?? ''} |`,
    )
  }
  return lines.join('\n')
}
