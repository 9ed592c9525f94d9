'use strict'
// Node and Python share one segment by name: Node writes a message, Python
// reads it and writes its answer, Node reads the answer through the view it
// had attached all along. Nothing is copied between them and nothing goes
// through a pipe; the segment's name is all they share.
//
//   node examples/python-peer/peer.js      (needs python3 ≥ 3.8 on PATH)

const { spawnSync } = require('node:child_process')
const path = require('node:path')
const { SharedMemory } = require('named-shm') // this repository (package self-reference)

// The layout both sides agree on (peer.py says the same).
const SIZE = 4096
const NODE_MESSAGE = 0 // u32 length, then UTF-8 bytes
const PYTHON_MESSAGE = 2048 // u32 length, then UTF-8 bytes

const python = process.env.PYTHON || (process.platform === 'win32' ? 'python' : 'python3')
const name = `named-shm-python-${process.pid}`
const shm = SharedMemory.open(name, SIZE, { create: true, exclusive: true })
try {
  const view = shm.attach()
  const message = Buffer.from(`hello from node ${process.pid}`)
  view.writeUInt32LE(message.length, NODE_MESSAGE)
  message.copy(view, NODE_MESSAGE + 4)
  console.log(`node wrote into ${shm.osName}: ${message}`)

  // Python's SharedMemory takes the name without the leading '/'.
  const peer = spawnSync(python, [path.join(__dirname, 'peer.py'), name], { stdio: 'inherit' })
  if (peer.error) throw peer.error
  if (peer.status !== 0) throw new Error(`peer.py exited with ${peer.status}`)

  const length = view.readUInt32LE(PYTHON_MESSAGE)
  console.log(`node read what python wrote: ${view.toString('utf8', PYTHON_MESSAGE + 4, PYTHON_MESSAGE + 4 + length)}`)
} finally {
  shm.close()
  SharedMemory.delete(name)
  console.log(`cleaned up: ${shm.osName} deleted`)
}
