// The guides are executed: every shell command and code block of README.md and the getting-started
// path runs, as a reader would run it, against a fresh `npm start`, so the docs cannot drift from
// the product. Blocks are taken from the Markdown itself (see _docs.ts for the markers).
// Each guide runs in a file of its own (test/guides/, through _guides.ts), so they run beside the
// rest of the suite; this file checks that every fence is accounted for.
//
// Each guide runs in a sandbox folder that links to this checkout (a reader's clone) and has a
// deployment of its own; the documented ports (8443, 8883, 8884, 9464 of `npm start`, and 9443 for
// a key server of the reader's own) are replaced by free ones, so the test can run beside a
// developer's own `npm start`.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect, test } from 'vitest'
import { docBlocks } from './_docs.js'
import { GUIDES } from './_guides.js'

const root = fileURLToPath(new URL('..', import.meta.url))

test('every fence of the guides is run or skipped with a reason', () => {
  for (const guide of GUIDES) {
    const blocks = docBlocks(readFileSync(join(root, guide), 'utf8'), guide)
    expect(blocks.filter((block) => block.mode !== 'skip').length).toBeGreaterThan(1)
  }
  expect(() => docBlocks('```js\nx()\n```\n', 'x.md')).toThrow(/must be marked docs-test: file NAME, or skip/)
  expect(() => docBlocks('```ts\nx()\n```\n', 'x.md')).toThrow(/must be marked/)
  expect(() => docBlocks('<!-- docs-test: skip -->\n```sh\nx\n```\n', 'x.md')).toThrow(/must say why/)
})
