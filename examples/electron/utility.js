'use strict'
// The utility process (Electron's utilityProcess.fork, or a forked child
// under plain Node): writes one message into the segment named on its
// command line, through its own view where the runtime gives one.

const { SharedMemory } = require('named-shm')

const name = process.argv[2]
const shm = SharedMemory.open(name, 0)
const message = `hello from child ${process.pid}`
let view = null
try {
  view = shm.attach() // in-heap in Electron on Linux and macOS: zero-copy
} catch (error) {
  if (error.code !== 'ERR_SHM_EXTERNAL_BUFFERS') throw error
}
if (view) view.write(`${message}\0`)
else shm.write(`${message}\0`) // a copy, where zeroCopy is 'copy'
shm.close()
