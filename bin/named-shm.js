#!/usr/bin/env node
// The `named-shm` command (npx named-shm --help); its code is src/cli/.
'use strict'

// `named-shm cat x | head` closes our stdout early: that is the reader's choice, not an error.
process.stdout.on('error', (error) => {
  if (error.code === 'EPIPE') process.exit(0)
  throw error
})

let cli
try {
  cli = require('../lib/cli/main.js')
} catch (error) {
  // No prebuilt addon for this platform, or a broken install: one line, not a stack.
  const message = String(error && error.message).split('\n')[0]
  process.stderr.write(`named-shm: cannot load the library: ${message} [${(error && error.code) || 'ERR_UNEXPECTED'}]\n`)
  process.exit(1)
}

cli.main(process.argv.slice(2)).then((status) => {
  process.exitCode = status
})
