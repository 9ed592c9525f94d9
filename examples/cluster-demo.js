'use strict'
// `npm start`: a primary and 3 cluster workers share one named segment.
// Each worker fills its own slice with a pattern, then checks the slices the
// others wrote, reading them straight out of shared memory. The primary prints
// what each saw and how many bytes went through shared memory versus the IPC
// channel, then deletes the segment.
//
// Layout of the segment (one page of reports, then one slice per worker):
//   [0, 4096)                  reports: what worker w saw in slice s
//   [4096 + w * SLICE, + SLICE) worker w's slice, 32-bit words

const cluster = require('node:cluster')
const { SharedMemory } = require('named-shm') // this repository (package self-reference)

const WORKERS = 3
const SLICE = 1 << 20 // bytes per worker
const HEADER = 4096
const REPORT_WORDS = 6 // ok, bad, first bad index, first three words seen
const SIZE = HEADER + WORKERS * SLICE
const TIMEOUT_MS = 30_000

/** Worker w's pattern: word k is 0xA?000000 + k, e.g. a2000000 a2000001 … */
const expected = (worker, k) => ((0xa1 + worker) * 0x1000000 + k) >>> 0

function sliceWords(view, slice) {
  return new Uint32Array(view.buffer, view.byteOffset + HEADER + slice * SLICE, SLICE / 4)
}

function reportWords(view, worker, slice) {
  const offset = view.byteOffset + ((worker * WORKERS + slice) * REPORT_WORDS) * 4
  return new Uint32Array(view.buffer, offset, REPORT_WORDS)
}

/** Checks slice `slice` against its owner's pattern into `report`. */
function check(words, slice, report) {
  let ok = 0
  let firstBad = 0xffffffff
  for (let k = 0; k < words.length; k += 1) {
    if (words[k] === expected(slice, k)) ok += 1
    else if (firstBad === 0xffffffff) firstBad = k
  }
  report.set([ok, words.length - ok, firstBad, words[0], words[1], words[2]])
  return ok === words.length
}

// ---------------------------------------------------------------------------
// Synchronisation: small IPC messages through cluster's channel. This is the
// one part that cross-process wait/notify (SPEC §5) replaces; nothing else
// in the demo knows how phases are signalled.
const sync = {
  ipcMessages: 0,
  ipcBytes: 0,
  count(message) {
    // process.send's default serialization: JSON plus a newline.
    sync.ipcMessages += 1
    sync.ipcBytes += Buffer.byteLength(JSON.stringify(message)) + 1
  },
  /** Primary: tells every worker to start `phase`. */
  start(workers, phase) {
    for (const worker of workers) {
      const message = { go: phase }
      sync.count(message)
      worker.send(message)
    }
  },
  /** Primary: resolves once every worker reported `phase` done. */
  finished(workers, phase) {
    return Promise.all(
      workers.map(
        (worker) =>
          new Promise((resolve) => {
            worker.on('message', function onMessage(message) {
              if (message && message.done === phase) {
                sync.count(message)
                worker.off('message', onMessage)
                resolve()
              }
            })
          }),
      ),
    )
  },
  /** Worker: resolves when the primary starts `phase`. */
  startOf(phase) {
    return new Promise((resolve) => {
      process.on('message', function onMessage(message) {
        if (message && message.go === phase) {
          process.off('message', onMessage)
          resolve()
        }
      })
    })
  },
  /** Worker: reports `phase` done. */
  done(phase) {
    process.send({ done: phase })
  },
}
// ---------------------------------------------------------------------------

async function runWorker() {
  const index = Number(process.env.DEMO_WORKER)
  const started = sync.startOf('fill')
  const shm = SharedMemory.open(process.env.DEMO_SEGMENT, 0) // 0: the segment's own size
  const view = shm.attach()

  await started
  const mine = sliceWords(view, index)
  for (let k = 0; k < mine.length; k += 1) mine[k] = expected(index, k)
  const verifying = sync.startOf('verify')
  sync.done('fill')

  await verifying
  for (let slice = 0; slice < WORKERS; slice += 1) {
    if (slice !== index) check(sliceWords(view, slice), slice, reportWords(view, index, slice))
  }
  const exiting = sync.startOf('exit')
  sync.done('verify')

  await exiting
  shm.close() // detaches `view`
  process.disconnect() // nothing left to do: the worker exits with code 0
}

const hex = (word) => word.toString(16).padStart(8, '0')
const mib = (bytes) => `${(bytes / (1 << 20)).toFixed(1)} MiB`

function describe(report) {
  const [ok, bad, firstBad, w0, w1, w2] = report
  const verdict = bad === 0 ? 'all as expected' : `${bad} wrong, first at word ${firstBad}`
  return `${hex(w0)} ${hex(w1)} ${hex(w2)} … ${ok}/${ok + bad} words ${verdict}`
}

function exited(worker) {
  return new Promise((resolve) => worker.once('exit', (code, signal) => resolve({ code, signal })))
}

async function runPrimary() {
  const name = `named-shm-demo-${process.pid}`
  const shm = SharedMemory.open(name, SIZE, { create: true, exclusive: true })
  const workers = []
  const timer = setTimeout(() => {
    console.error(`timed out after ${TIMEOUT_MS} ms`)
    process.exitCode = 1
    for (const worker of workers) worker.process.kill()
  }, TIMEOUT_MS)
  try {
    console.log(`primary ${process.pid}: segment ${shm.osName}, ${SIZE} bytes, ${WORKERS} workers`)
    for (let index = 0; index < WORKERS; index += 1) {
      workers.push(cluster.fork({ DEMO_SEGMENT: name, DEMO_WORKER: String(index) }))
    }
    const exits = workers.map(exited)
    let running = true
    const early = Promise.race(exits).then(({ code, signal }) => {
      if (running) throw new Error(`a worker exited early (${signal ?? code})`)
    })
    early.catch(() => {}) // reported through step()
    const step = (promise) => Promise.race([promise, early.then(() => promise)])

    sync.start(workers, 'fill')
    await step(sync.finished(workers, 'fill'))
    sync.start(workers, 'verify')
    await step(sync.finished(workers, 'verify'))

    const view = shm.attach()
    let good = true
    for (let index = 0; index < WORKERS; index += 1) {
      const first = sliceWords(view, index).subarray(0, 3)
      console.log(`worker ${index + 1} (pid ${workers[index].process.pid}) filled slice ${index + 1}: ${[...first].map(hex).join(' ')} …`)
    }
    for (let index = 0; index < WORKERS; index += 1) {
      for (let slice = 0; slice < WORKERS; slice += 1) {
        if (slice === index) continue
        const report = reportWords(view, index, slice)
        good = good && report[1] === 0 && report[0] === SLICE / 4
        console.log(`worker ${index + 1} saw slice ${slice + 1}: ${describe(report)}`)
      }
    }
    for (let slice = 0; slice < WORKERS; slice += 1) {
      const report = new Uint32Array(REPORT_WORDS)
      good = check(sliceWords(view, slice), slice, report) && good
      console.log(`primary saw slice ${slice + 1}: ${describe(report)}`)
    }
    shm.detach(view)

    running = false
    sync.start(workers, 'exit')
    const codes = await Promise.all(exits)
    const clean = codes.every(({ code, signal }) => code === 0 && signal === null)

    const written = WORKERS * SLICE
    const readAcross = WORKERS * (WORKERS - 1) * SLICE
    console.log('bytes moved:')
    console.log(`  through shared memory: ${mib(written)} written, ${mib(readAcross)} read by other workers (${written + readAcross} bytes), none copied`)
    console.log(`  through IPC: ${sync.ipcMessages} messages, ${sync.ipcBytes} bytes (synchronisation only)`)
    console.log(`workers exited: ${codes.map(({ code, signal }) => signal ?? code).join(', ')}`)
    if (!good || !clean) throw new Error('verification failed')
  } finally {
    clearTimeout(timer)
    shm.close()
    SharedMemory.delete(name)
  }
  console.log(`cleaned up: ${shm.osName} deleted`)
}

const main = cluster.isPrimary ? runPrimary : runWorker
main().catch((error) => {
  console.error(cluster.isPrimary ? 'primary:' : `worker ${Number(process.env.DEMO_WORKER) + 1}:`, error)
  if (!cluster.isPrimary) process.exit(1)
  process.exitCode = 1
  for (const id in cluster.workers) cluster.workers[id].process.kill()
})
