// `npx tsx --conditions=smqtt-source packages/client/bench/replay-save.bench.ts`: what saving the
// subscriber's receive replay state costs in CPU per save (one save per delivery batch), before
// (JSON.stringify of the whole exportState) and after (ReplayStateText: cached JSON per entry,
// only the changed ones serialized again), with 1 or every sender changed since the last save.
// Each timed call also accepts one message per changed sender, timed alone too and subtracted;
// "tracking" is what the window's change tracking adds to those accepts. Storage is left out,
// but the incremental text is a V8 rope that the storage flattens when it writes it (JSON.stringify
// hands it a flat string): "+ flatten" adds that copy, which any whole-string store pays.
import { ReplayWindow } from '@smqtt/core'
import { measureTogether } from '../../core/bench/_timing.js'
import { ReplayStateText } from '../src/_replay-state.js'

const NOW = Math.floor(Date.now() / 1000)
const keep = () => true

/** A window holding `senders` windows, each with a few sequence numbers seen. */
function filled(senders: number): ReplayWindow {
  const window = new ReplayWindow({ maxSenders: Math.max(senders, 1) })
  for (let sender = 0; sender < senders; sender++)
    for (const seq of [1, 2, 4]) window.accept({ group: 1, epoch: 7, sender, seq, sentAt: NOW, now: NOW })
  return window
}

/** Accepts the next message of `dirty` senders, round robin, so different senders move each call. */
function touch(window: ReplayWindow, senders: number, dirty: number): () => void {
  let next = 0
  let seq = 10
  return () => {
    for (let i = 0; i < dirty; i++) {
      window.accept({ group: 1, epoch: 7, sender: next, seq, sentAt: NOW, now: NOW })
      if (++next === senders) {
        next = 0
        seq++
      }
    }
  }
}

const rows: Record<string, string | number>[] = []
// 32: the client's delivery batch, what one save covers on a busy stream.
for (const senders of [1, 100, 1_000, 10_000])
  for (const dirty of [...new Set([1, Math.min(32, senders), senders])]) {
    const untracked = touch(filled(senders), senders, dirty)
    const trackedWindow = filled(senders)
    trackedWindow.takeChanges() // tracking on from here; never drained: the set only reorders
    const tracked = touch(trackedWindow, senders, dirty)
    const fullWindow = filled(senders)
    const fullTouch = touch(fullWindow, senders, dirty)
    const incrementalWindow = filled(senders)
    const incrementalTouch = touch(incrementalWindow, senders, dirty)
    const text = new ReplayStateText(incrementalWindow)
    text.text(keep)
    const flattenedWindow = filled(senders)
    const flattenedTouch = touch(flattenedWindow, senders, dirty)
    const flattenedText = new ReplayStateText(flattenedWindow)
    flattenedText.text(keep)
    const us = measureTogether(
      {
        untracked,
        tracked,
        full: () => {
          fullTouch()
          return JSON.stringify(fullWindow.exportState(keep))
        },
        incremental: () => {
          incrementalTouch()
          return text.text(keep)
        },
        flattened: () => {
          flattenedTouch()
          return flattenedText.text(keep).charCodeAt(0) // charCodeAt flattens a rope
        },
      },
      senders * dirty >= 1_000_000 ? 60 : 20,
    )
    const full = us.full - us.untracked
    const incremental = us.incremental - us.tracked
    rows.push({
      senders,
      dirty,
      'accepts µs': us.untracked.toFixed(1),
      'tracking +µs': (us.tracked - us.untracked).toFixed(1),
      'full save µs': full.toFixed(1),
      'incremental save µs': incremental.toFixed(1),
      speedup: `${(full / incremental).toFixed(1)}x`,
      '+ flatten µs': (us.flattened - us.tracked).toFixed(1),
    })
  }
console.table(rows)
