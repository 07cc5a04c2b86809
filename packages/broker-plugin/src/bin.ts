#!/usr/bin/env node
// The `smqtt-broker` executable: runs the CLI, prints errors without a stack trace.
import { main } from './cli.js'

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code // a negative code means: a server is running
  },
  (err: unknown) => {
    console.error(`smqtt-broker: ${err instanceof Error ? err.message : String(err)}`)
    process.exitCode = 1
  },
)
