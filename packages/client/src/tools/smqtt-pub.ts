#!/usr/bin/env node
// The `smqtt-pub` executable (Node): runs the tool, exits with its code.
import { enterCallerDirectory, exitAfter } from './_common.js'
import { runPub } from './pub.js'

enterCallerDirectory()
exitAfter(runPub(process.argv.slice(2)))
