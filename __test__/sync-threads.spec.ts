// Other threads' comings and goings leave this thread's waits alone: worker
// threads that open, attach, wait, detach, close and exit (some with views
// still attached, some by process.exit) never end the main thread's pending
// waitAsync and lockAsync on its own, untouched views.

import { spawn } from 'node:child_process'
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'

import test from 'ava'

import { SharedMutex, waitAsync } from '../index'
import { PACKAGE_ROOT } from './helpers'
import { words } from './sync-helpers'

const CHURN_MS = 10_000
const WORKERS = 8

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
  }, 50 + (workerData.serial % 7) * 40)`

test(`${WORKERS} worker threads attaching, detaching and exiting for ${CHURN_MS / 1000} s never end the main thread's waits`, async (t) => {
  t.timeout(CHURN_MS * 4)
  const { shm, view, i32 } = words(t)
  // CPU load beside the churn, one busy process per CPU, as under stress(1).
  const burners = Array.from({ length: availableParallelism() }, () =>
    spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }),
  )
  t.teardown(() => {
    for (const burner of burners) burner.kill('SIGKILL')
  })
  const waits = Array.from({ length: 20 }, (_, n) => waitAsync(i32, n, 0, CHURN_MS + 500, { ref: true }))
  const mutex = new SharedMutex(view, 512)
  t.is(mutex.tryLock(), 'ok')
  const queued = mutex.lockAsync(CHURN_MS + 500, { ref: true })
  const started = Date.now()
  let serial = 0
  const failures: string[] = []
  const life = async (): Promise<void> => {
    while (Date.now() - started < CHURN_MS) {
      const worker = new Worker(WORKER, {
        eval: true,
        workerData: { root: PACKAGE_ROOT, name: shm.name, serial: serial++ },
      })
      const code = await new Promise<number>((resolve) => {
        worker.once('error', (error) => failures.push(String(error)))
        worker.once('exit', resolve)
      })
      if (code !== 0) failures.push(`worker exited with ${code}`)
    }
  }
  await Promise.all(Array.from({ length: WORKERS }, life))
  const ends = await Promise.all(
    waits.map((wait) => wait.then(String, (error: { code?: string }) => error.code ?? String(error))),
  )
  t.log(`${serial} worker lives`)
  t.deepEqual(failures, [])
  t.deepEqual([...new Set(ends)], ['timed-out'])
  t.is(await queued, 'timed-out')
  mutex.unlock()
  t.true(serial >= WORKERS)
})
