'use strict'
// Threads of one process share a segment the way processes do: each thread
// opens it by name and attaches its own mapping of the same memory. Here
// 4 threads each add 1 to one counter 100,000 times with Atomics.add and
// leave a note in their own record; the main thread checks both.
//
//   node examples/worker-threads.js

const { Worker, isMainThread, workerData } = require('node:worker_threads')
const { SharedMemory } = require('named-shm') // this repository (package self-reference)

const THREADS = 4
const ADDS = 100_000
const RECORD = 64 // bytes of note per thread, after the counter's 64-byte line
const SIZE = RECORD * (THREADS + 1)

function runThread() {
  const { name, index } = workerData
  const shm = SharedMemory.open(name, 0) // 0: the segment's own size
  const view = shm.attach()
  const counter = new Int32Array(view.buffer, view.byteOffset, 1)
  for (let i = 0; i < ADDS; i += 1) Atomics.add(counter, 0, 1)
  view.write(`thread ${index + 1} added ${ADDS}`, RECORD * (index + 1))
  shm.close() // unmaps this thread's view only
}

function runMain() {
  const name = `named-shm-threads-${process.pid}`
  const shm = SharedMemory.open(name, SIZE, { create: true, exclusive: true })
  const view = shm.attach() // attached before the threads start: sees their writes live
  console.log(`main: segment ${shm.osName}, ${SIZE} bytes, ${THREADS} threads`)
  const threads = Array.from({ length: THREADS }, (_, index) => new Worker(__filename, { workerData: { name, index } }))
  const exits = threads.map(
    (thread) =>
      new Promise((resolve, reject) => {
        thread.once('error', reject)
        thread.once('exit', resolve)
      }),
  )
  return Promise.all(exits)
    .then((codes) => {
      for (let index = 0; index < THREADS; index += 1) {
        const start = RECORD * (index + 1)
        const note = view.toString('utf8', start, start + RECORD).replace(/\0+$/, '')
        console.log(`record ${index + 1}: ${note}`)
      }
      const total = new Int32Array(view.buffer, view.byteOffset, 1)[0]
      console.log(`counter: ${total} (expected ${THREADS * ADDS})`)
      console.log(`threads exited: ${codes.join(', ')}`)
      if (total !== THREADS * ADDS || codes.some((code) => code !== 0)) throw new Error('check failed')
    })
    .finally(() => {
      shm.close()
      SharedMemory.delete(name)
      console.log(`cleaned up: ${shm.osName} deleted`)
    })
}

if (isMainThread) {
  runMain().catch((error) => {
    console.error(error)
    process.exitCode = 1
  })
} else {
  runThread()
}
