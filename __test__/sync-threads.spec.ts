// Other threads' comings and goings leave this thread's waits alone: worker
// threads that open, attach, wait, detach, close and exit (some with views
// still attached, some by process.exit) never end the main thread's pending
// waitAsync and lockAsync.
//
// The main thread keeps its handle but not the views it waits on, as a
// program that starts waits and awaits only their promises does, and the
// collector runs meanwhile: a pending wait keeps its view (the collector
// would otherwise unmap it and end the wait with ERR_SHM_NOT_ATTACHED, at
// whatever moment the threads' churn happened to start a collection).

import { spawn } from 'node:child_process'
import { availableParallelism } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { Worker } from 'node:worker_threads'

import test from 'ava'

import { SharedMemory, SharedMutex, waitAsync } from '../index'
import { collectGarbage, PACKAGE_ROOT, scratch } from './helpers'

const CHURN_MS = 10_000
const WORKERS = 8
const MUTEX_OFFSET = 512

// One short life of a worker: attach and wait on words the main thread does
// not wait on (index 100 on), then leave in one of several ways.
const WORKER = `
  const { workerData } = require('node:worker_threads')
  const { SharedMemory, waitAsync, notify, SharedMutex } = require(workerData.root)
  const shm = SharedMemory.open(workerData.name, 0)
  const views = [shm.attach(), shm.attach(), shm.attach({ readOnly: true })]
  const words = views.map((view) => new Int32Array(view.buffer, view.byteOffset, 1024))
  // Their own waits may end by their own detach: that is theirs to see.
  for (let n = 0; n < 20; n += 1) waitAsync(words[n % 3], 100 + n, 0, 5 + n, { ref: n % 2 === 0 }).catch(() => {})
  const mutex = new SharedMutex(views[0], 1024)
  if (mutex.tryLock() === 'ok') mutex.unlock()
  notify(words[1], 200)
  const way = workerData.serial % 5
  setTimeout(() => {
    if (way === 0) shm.detach(views[1])
    if (way === 1) shm.close()
    if (way === 2) process.exit(0)
    if (way === 3) globalThis.gc?.()
    // way 4: end with everything attached and waits pending.
  }, workerData.exitAfterMs ?? 50 + (workerData.serial % 7) * 40)`

/** A request's end: its outcome, or its error's code. */
function end(request: Promise<string>): Promise<string> {
  return request.then(String, (error: { code?: string }) => error.code ?? String(error))
}

interface MainRequests {
  /** Each wait's end: its outcome, or its error's code. */
  waits: Promise<string>[]
  /** A lockAsync queued behind this thread's own hold, or undefined. */
  queued: Promise<string> | undefined
  /** The view the waits wait on, weakly: only they hold it. */
  view: WeakRef<ArrayBuffer>
}

/**
 * Starts 20 waitAsync on a fresh view of `shm` (and, with `lock`, a
 * lockAsync behind this thread's own hold, on another) and lets go of the
 * views: when this returns, only the pending requests hold them.
 */
function startRequests(shm: SharedMemory, timeoutMs: number, lock: boolean): MainRequests {
  // No closure made here may capture the view, or it would outlive this call.
  const view = shm.attach()
  const i32 = new Int32Array(view.buffer, view.byteOffset, view.length >> 2)
  const waits: Promise<string>[] = []
  for (let n = 0; n < 20; n += 1) waits.push(end(waitAsync(i32, n, 0, timeoutMs, { ref: true })))
  let queued: Promise<string> | undefined
  if (lock) {
    // A view of its own: the lock must not keep the waits' view alive.
    const mutex = new SharedMutex(shm.attach(), MUTEX_OFFSET)
    if (mutex.tryLock() !== 'ok') throw new Error('the fresh mutex was not free')
    queued = end(mutex.lockAsync(timeoutMs, { ref: true }))
  }
  return { waits, queued, view: new WeakRef(view.buffer as ArrayBuffer) }
}

function startWorker(name: string, serial: number, exitAfterMs?: number): Promise<number> {
  const worker = new Worker(WORKER, {
    eval: true,
    workerData: { root: PACKAGE_ROOT, name, serial, exitAfterMs },
  })
  return new Promise<number>((resolve, reject) => {
    worker.once('error', reject)
    worker.once('exit', resolve)
  })
}

test('20 waits on a view only they hold outlive 6 worker threads that attach and exit after 800 ms, and a collection', async (t) => {
  const shm = scratch(t, 4096)
  let requests: MainRequests | undefined = startRequests(shm, 2_500, false)
  const { waits, view } = requests
  requests = undefined
  // Way 4 of WORKER: each leaves with its views attached.
  const codes = await Promise.all(Array.from({ length: 6 }, (_, n) => startWorker(shm.name, 5 * n + 4, 800)))
  t.deepEqual(codes, [0, 0, 0, 0, 0, 0])
  await collectGarbage()
  t.deepEqual(await Promise.all(waits), Array.from({ length: 20 }, () => 'timed-out'))
  // Settled, the waits let go of the view: only they had kept it.
  await collectGarbage()
  t.is(view.deref(), undefined)
})

test(`${WORKERS} worker threads attaching, detaching and exiting for ${CHURN_MS / 1000} s never end the main thread's waits`, async (t) => {
  t.timeout(CHURN_MS * 4)
  const shm = scratch(t, 4096)
  // CPU load beside the churn, one busy process per CPU, as under stress(1).
  const burners = Array.from({ length: availableParallelism() }, () =>
    spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }),
  )
  t.teardown(() => {
    for (const burner of burners) burner.kill('SIGKILL')
  })
  const { waits, queued } = startRequests(shm, CHURN_MS + 500, true)
  const started = Date.now()
  let serial = 0
  const failures: string[] = []
  const life = async (): Promise<void> => {
    while (Date.now() - started < CHURN_MS) {
      const code = await startWorker(shm.name, serial++).catch((error: unknown) => {
        failures.push(String(error))
        return 0
      })
      if (code !== 0) failures.push(`worker exited with ${code}`)
    }
  }
  // The main thread collects now and then, as allocation would make it.
  const collector = async (): Promise<void> => {
    while (Date.now() - started < CHURN_MS) {
      await collectGarbage()
      await sleep(250)
    }
  }
  await Promise.all([collector(), ...Array.from({ length: WORKERS }, life)])
  const ends = await Promise.all(waits)
  t.log(`${serial} worker lives`)
  t.deepEqual(failures, [])
  t.deepEqual({ waits: [...new Set(ends)], queued: await queued }, { waits: ['timed-out'], queued: 'timed-out' })
  // This thread still holds the lock; any view of the segment unlocks it.
  new SharedMutex(shm.attach(), MUTEX_OFFSET).unlock()
  t.true(serial >= WORKERS)
})
