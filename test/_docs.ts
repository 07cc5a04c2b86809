// Turns a Markdown guide into one bash script that does what a reader would do: every ```sh block
// runs in order in one shell (functions and variables carry over, as in a terminal), every ```ts
// block is saved under the name the guide gives it, and the guide's own commands run it. Nothing
// is copied out of the docs: change a guide and the test runs the new text.
//
// An HTML comment right before a fence says how a block runs (a reader does not see it):
//   <!-- docs-test: skip (why) -->            not run; the reason is required
//   <!-- docs-test: file NAME -->             a block saved as NAME (```ts, ```json, …)
//   <!-- docs-test: background /REGEX/ -->    a ```sh block left running, as in a second terminal;
//                                             the next block starts once its output matches REGEX,
//                                             and it must end by itself, with status 0, by the end
//   <!-- docs-test: service /REGEX/ -->       like background, but it runs until the guide ends
// A ```sh block without a marker runs; any other fence needs one, so no block is silently ignored.

/** One fenced block of a guide, and how it runs. */
export interface DocBlock {
  readonly line: number
  readonly language: string
  readonly code: string
  readonly mode: 'run' | 'skip' | 'file' | 'background' | 'service'
  /** The file name (`file`), the reason (`skip`) or the readiness pattern (`background`, `service`). */
  readonly argument?: string
}

const FENCE = /^```(\S*)\s*$/
const MARKER = /^<!-- docs-test: (skip|file|background|service)\b\s*(.*?)\s*-->$/

/** The fenced blocks of `markdown`, in order, with their markers. Throws on an unknown fence. */
export function docBlocks(markdown: string, name: string): DocBlock[] {
  const lines = markdown.split('\n')
  const blocks: DocBlock[] = []
  let marker: { mode: DocBlock['mode']; argument: string } | undefined
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i] as string
    const markerMatch = MARKER.exec(text.trim())
    if (markerMatch) {
      marker = { mode: markerMatch[1] as DocBlock['mode'], argument: markerMatch[2] ?? '' }
      continue
    }
    const fence = FENCE.exec(text)
    if (!fence) {
      if (text.trim() !== '') marker = undefined
      continue
    }
    const start = i
    const body: string[] = []
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i] as string); i++) body.push(lines[i] as string)
    const language = fence[1] ?? ''
    const where = `${name}:${start + 1}`
    const mode = marker?.mode ?? 'run'
    if (mode === 'skip' && !marker?.argument) throw new Error(`${where}: a skipped block must say why`)
    if (language !== 'sh' && mode !== 'file' && mode !== 'skip')
      throw new Error(`${where}: a \`\`\`${language} block must be marked docs-test: file NAME, or skip (why)`)
    if ((mode === 'background' || mode === 'service') && !/^\/.+\/$/.test(marker?.argument ?? ''))
      throw new Error(`${where}: ${mode} needs a /readiness pattern/`)
    blocks.push({
      line: start + 1,
      language,
      code: body.join('\n'),
      mode,
      ...(marker?.argument ? { argument: marker.argument } : {}),
    })
    marker = undefined
  }
  return blocks
}

const quote = (text: string) => `'${text.replaceAll("'", `'\\''`)}'`

/**
 * One bash script that runs `blocks` as a reader would, in the current directory. Each block
 * announces itself (`::block NAME:LINE::`), so a failure names the block that failed.
 */
export function docScript(blocks: readonly DocBlock[], name: string, readyTimeoutSeconds = 90): string {
  const script = [
    'set -euo pipefail',
    // Job control: each block left running gets a process group of its own, so stopping it stops
    // what it started too (`npm run` leaves its child running when it is killed alone).
    'set -m',
    'mkdir -p .docs-test',
    // Process ids of the blocks left running, space-separated.
    "services=''",
    "backgrounds=''",
    'trap \'for p in $services $backgrounds; do kill -TERM -- "-$p" 2>/dev/null || true; done\' EXIT',
    "trap 'exit 143' TERM INT", // so that the EXIT trap runs when the test stops the guide
    // Waits until the log of a block left running matches its pattern (or it died).
    'ready() {',
    `  local log=$1 pattern=$2 pid=$3 deadline=$((SECONDS + ${readyTimeoutSeconds}))`,
    '  until grep -Eq -- "$pattern" "$log"; do',
    '    if ! kill -0 "$pid" 2>/dev/null; then echo "exited before it was ready:"; cat "$log"; return 1; fi',
    `    if ((SECONDS > deadline)); then echo "not ready within ${readyTimeoutSeconds} s:"; cat "$log"; return 1; fi`,
    '    sleep 0.2',
    '  done',
    '}',
  ]
  for (const block of blocks) {
    const where = `${name}:${block.line}`
    if (block.mode === 'skip') continue
    script.push(`echo ${quote(`::block ${where}::`)}`)
    if (block.mode === 'file') {
      script.push(`cat > ${quote(block.argument ?? '')} <<'DOCS_TEST_EOF'`, block.code, 'DOCS_TEST_EOF')
    } else if (block.mode === 'run') {
      script.push(block.code)
    } else {
      const log = `.docs-test/${block.line}.log`
      const pattern = (block.argument ?? '').slice(1, -1)
      script.push(
        `{\n${block.code}\n} > ${log} 2>&1 &`,
        block.mode === 'service' ? 'services="$services $!"' : 'backgrounds="$backgrounds $!"',
        `ready ${log} ${quote(pattern)} $!`,
      )
    }
  }
  script.push(
    `echo ${quote(`::waiting for the blocks left running in ${name}::`)}`,
    'status=0',
    'for p in $backgrounds; do wait "$p" || status=$?; done',
    "backgrounds=''",
    'for log in .docs-test/*.log; do [ -e "$log" ] && { echo "::output of $log::"; cat "$log"; }; done',
    'if ((status != 0)); then echo "::a block left running failed (exit $status)::"; exit "$status"; fi',
    `echo ${quote(`::${name} done::`)}`,
  )
  return `${script.join('\n')}\n`
}
