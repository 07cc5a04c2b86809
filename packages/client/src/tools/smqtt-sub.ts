#!/usr/bin/env node
// The `smqtt-sub` executable (Node): runs the tool, exits with its code.
import { enterCallerDirectory, exitAfter } from './_common.js'
import { runSub } from './sub.js'

enterCallerDirectory()
exitAfter(runSub(process.argv.slice(2)))
