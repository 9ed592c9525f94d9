'use strict'
// `npm start`: a primary and 3 cluster workers share one named segment.
// Each worker fills its own slice with a pattern, then checks the slices the
// others wrote, reading them straight out of shared memory. The phases (fill,
// verify, exit) are signalled with cross-process wait/notify on words of the
// segment, not through the IPC channel. The primary prints what each saw and
// how many bytes went through shared memory, then deletes the segment.
//
// Every process opens the segment the same way, open-or-create with an
// `init` that writes the header; whichever comes first creates it, and no
// one can open it before the header is complete (`shm.created` says who did).
//
// Layout of the segment (one page of reports, then one slice per worker):
//   [0, 4096)                  reports: what worker w saw in slice s;
//                              words 1000.. synchronise the phases;
//                              words 1020, 1021: magic and layout version
//   [4096 + w * SLICE, + SLICE) worker w's slice, 32-bit words

const cluster = require('node:cluster')
const { SharedMemory, notify, waitAsync } = require('named-shm') // this repository (package self-reference)

const WORKERS = 3
const SLICE = 1 << 20 // bytes per worker
const HEADER = 4096
const REPORT_WORDS = 6 // ok, bad, first bad index, first three words seen
const SIZE = HEADER + WORKERS * SLICE
const TIMEOUT_MS = 30_000

const MAGIC = 0x6e73686d // 'nshm'
const VERSION = 1
const HEADER_WORD = 1020 // magic, then version

/**
 * Opens the demo's segment, creating it if no one has: `init` writes the
 * header before the name is published, so every opener finds it complete.
 */
function openSegment(name) {
  const shm = SharedMemory.open(name, SIZE, {
    create: true,
    init(view) {
      const words = new Uint32Array(view.buffer, view.byteOffset, HEADER / 4)
      words[HEADER_WORD + 1] = VERSION
      words[HEADER_WORD] = MAGIC
    },
  })
  const words = new Uint32Array(shm.read(0, HEADER).buffer)
  if (words[HEADER_WORD] !== MAGIC || words[HEADER_WORD + 1] !== VERSION) {
    throw new Error(`segment ${shm.osName} has no demo header`)
  }
  return shm
}

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
// Synchronisation: cross-process wait/notify on words at the end of
// the report page. The primary raises PHASE and wakes the workers; each
// worker counts itself done in DONE + phase and wakes the primary. Nobody
// polls and nothing goes through the IPC channel.
const PHASES = { fill: 1, verify: 2, exit: 3 }
const PHASE = 1000 // word index: the phase the primary started
const DONE = 1001 // word DONE + phase: how many workers finished it

const sync = {
  notifications: 0,
  words: null,
  /** Both sides: the synchronisation words of an attached view. */
  use(view) {
    sync.words = new Int32Array(view.buffer, view.byteOffset, HEADER / 4)
  },
  /** Resolves once word `index` is at least `value`. */
  async reach(index, value) {
    for (;;) {
      const seen = Atomics.load(sync.words, index)
      if (seen >= value) return
      await waitAsync(sync.words, index, seen, TIMEOUT_MS)
    }
  },
  /** Primary: tells every worker to start `phase`. */
  start(phase) {
    Atomics.store(sync.words, PHASE, PHASES[phase])
    sync.notifications += 1
    notify(sync.words, PHASE)
  },
  /** Primary: resolves once every worker reported `phase` done. */
  finished(phase) {
    return sync.reach(DONE + PHASES[phase], WORKERS)
  },
  /** Worker: resolves when the primary starts `phase`. */
  startOf(phase) {
    return sync.reach(PHASE, PHASES[phase])
  },
  /** Worker: reports `phase` done. */
  done(phase) {
    Atomics.add(sync.words, DONE + PHASES[phase], 1)
    notify(sync.words, DONE + PHASES[phase])
  },
}
// ---------------------------------------------------------------------------

async function runWorker() {
  const index = Number(process.env.DEMO_WORKER)
  const shm = openSegment(process.env.DEMO_SEGMENT)
  const view = shm.attach()
  sync.use(view)

  await sync.startOf('fill')
  const mine = sliceWords(view, index)
  for (let k = 0; k < mine.length; k += 1) mine[k] = expected(index, k)
  sync.done('fill')

  await sync.startOf('verify')
  for (let slice = 0; slice < WORKERS; slice += 1) {
    if (slice !== index) check(sliceWords(view, slice), slice, reportWords(view, index, slice))
  }
  sync.done('verify')

  await sync.startOf('exit')
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
  const shm = openSegment(name)
  const syncView = shm.attach()
  sync.use(syncView)
  const workers = []
  const timer = setTimeout(() => {
    console.error(`timed out after ${TIMEOUT_MS} ms`)
    process.exitCode = 1
    for (const worker of workers) worker.process.kill()
  }, TIMEOUT_MS)
  try {
    console.log(`primary ${process.pid}: segment ${shm.osName}, ${SIZE} bytes, ${WORKERS} workers`)
    console.log(`primary ${shm.created ? 'created it and wrote its header in init' : 'found it already made'}`)
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

    sync.start('fill')
    await step(sync.finished('fill'))
    sync.start('verify')
    await step(sync.finished('verify'))

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
    sync.start('exit')
    const codes = await Promise.all(exits)
    const clean = codes.every(({ code, signal }) => code === 0 && signal === null)

    const written = WORKERS * SLICE
    const readAcross = WORKERS * (WORKERS - 1) * SLICE
    console.log('bytes moved:')
    console.log(`  through shared memory: ${mib(written)} written, ${mib(readAcross)} read by other workers (${written + readAcross} bytes), none copied`)
    console.log(`  through IPC: nothing; phases were signalled with wait/notify on words of the segment (${sync.notifications} starts, ${2 * WORKERS} done reports)`)
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
