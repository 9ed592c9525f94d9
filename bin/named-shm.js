#!/usr/bin/env node
// The `named-shm` command (npx named-shm --help); its code is src/cli/.
'use strict'

// `named-shm cat x | head` closes our stdout early: that is the reader's choice, not an error.
process.stdout.on('error', (error) => {
  if (error.code === 'EPIPE') process.exit(0)
  throw error
})

require('../lib/cli/main.js')
  .main(process.argv.slice(2))
  .then((status) => {
    process.exitCode = status
  })
