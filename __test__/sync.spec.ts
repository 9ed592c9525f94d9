// Synchronization within one process: outcomes, argument errors, abort, detach,
// read-only views and the mutex's rules. Cross-process promises are in
// sync-processes.spec.ts.

import { setTimeout as sleep } from 'node:timers/promises'
import { Worker } from 'node:worker_threads'

import test from 'ava'

import { SharedMutex, notify, wait, waitAsync } from '../index'
import { pendingWaits } from '../binding'
import { PACKAGE_ROOT, scratch } from './helpers'
import { words } from './sync-helpers'

test('wait says not-equal at once and timed-out after the timeout, spinning or not', (t) => {
  const { i32 } = words(t)
  Atomics.store(i32, 3, 7)
  t.is(wait(i32, 3, 8), 'not-equal')
  t.is(wait(i32, 3, 7, 0), 'timed-out')
  t.is(wait(i32, 3, 7, 5), 'timed-out')
  t.is(wait(i32, 3, 7, 5, { spin: false }), 'timed-out')
  // Values compare as Int32: 0xffffffff is -1.
  Atomics.store(i32, 4, -1)
  t.is(wait(i32, 4, 0xffffffff, 1), 'timed-out')
  t.is(notify(i32, 3), 0)
  t.is(notify(i32, 3, 0), 0)
})

test('waitAsync says not-equal, timed-out, and ok when the word changes and is notified', async (t) => {
  const { i32 } = words(t)
  t.is(await waitAsync(i32, 0, 1), 'not-equal')
  t.is(await waitAsync(i32, 0, 0, 0), 'timed-out')
  t.is(await waitAsync(i32, 0, 0, 10), 'timed-out')
  const pending = waitAsync(i32, 1, 0)
  Atomics.store(i32, 1, 1)
  notify(i32, 1)
  t.is(await pending, 'ok')
})

test('bad views are coded errors', (t) => {
  const { shm, view, i32 } = words(t)
  const notAttached = { code: 'ERR_SHM_NOT_ATTACHED' }
  t.throws(() => wait(new Int32Array(8), 0, 0, 0), notAttached)
  t.throws(() => notify(new Int32Array(new SharedArrayBuffer(32)), 0), notAttached)
  t.throws(() => waitAsync(new Int32Array(8), 0, 0), notAttached)
  const wrongType = { code: 'ERR_INVALID_ARG_TYPE' }
  t.throws(() => wait(new Uint8Array(view.buffer) as unknown as Int32Array, 0, 0), wrongType)
  t.throws(() => notify(new DataView(view.buffer) as unknown as Int32Array, 0), wrongType)
  t.throws(() => wait(view as unknown as Int32Array, 0, 0), wrongType)
  t.throws(() => notify(new BigInt64Array(view.buffer) as unknown as Int32Array, 0), wrongType)
  t.throws(() => wait({} as Int32Array, 0, 0), wrongType)
  // A view that does not start at the segment's start still works, and its
  // indexes count from its own start.
  const tail = new Int32Array(view.buffer, 4000, 24)
  Atomics.store(i32, 1000, 5)
  t.is(wait(tail, 0, 4), 'not-equal')
  const detached = shm.attach()
  const detachedView = new Int32Array(detached.buffer)
  shm.detach(detached)
  t.throws(() => wait(detachedView, 0, 0, 0), notAttached)
  t.throws(() => notify(detachedView, 0), notAttached)
})

test('bad indexes, values, timeouts and options are coded errors', (t) => {
  const { i32 } = words(t)
  const range = { code: 'ERR_OUT_OF_RANGE' }
  const type = { code: 'ERR_INVALID_ARG_TYPE' }
  t.throws(() => wait(i32, 1024, 0, 0), range)
  t.throws(() => notify(i32, 1024), range)
  t.throws(() => wait(i32, -1, 0, 0), range)
  t.throws(() => wait(i32, 1.5, 0, 0), range)
  t.throws(() => wait(i32, '0' as unknown as number, 0, 0), type)
  t.throws(() => wait(i32, 0, 2 ** 32, 0), range)
  t.throws(() => wait(i32, 0, 0.5, 0), range)
  t.throws(() => wait(i32, 0, '0' as unknown as number, 0), type)
  t.throws(() => wait(i32, 0, 0, -1), range)
  t.throws(() => wait(i32, 0, 0, Number.NaN), range)
  t.throws(() => wait(i32, 0, 0, '5' as unknown as number), type)
  t.throws(() => wait(i32, 0, 0, 0, { spin: 'yes' as unknown as boolean }), type)
  t.throws(() => notify(i32, 0, -1), range)
  t.throws(() => notify(i32, 0, 1.5), range)
  t.throws(() => waitAsync(i32, 0, 0, 10, { signal: {} as AbortSignal }), type)
  t.throws(() => waitAsync(i32, 0, 0, 10, null as unknown as undefined), type)
})

test('an AbortSignal cancels a waitAsync and its waiter', async (t) => {
  const { i32 } = words(t)
  const before = pendingWaits()
  const controller = new AbortController()
  const pending = waitAsync(i32, 0, 0, Infinity, { signal: controller.signal })
  t.is(pendingWaits(), before + 1)
  controller.abort(new Error('enough'))
  const error = await t.throwsAsync(pending, { name: 'AbortError', code: 'ABORT_ERR' })
  t.is((error?.cause as Error).message, 'enough')
  await t.throwsAsync(waitAsync(i32, 0, 0, Infinity, { signal: AbortSignal.abort() }), { name: 'AbortError' })
  while (pendingWaits() > before) await sleep(1)
  t.is(pendingWaits(), before)
})

test('detaching a view ends its pending waits with ERR_SHM_NOT_ATTACHED', async (t) => {
  const shm = scratch(t, 4096)
  const view = shm.attach()
  const pending = waitAsync(new Int32Array(view.buffer), 2, 0)
  const other = shm.attach()
  const kept = waitAsync(new Int32Array(other.buffer), 2, 0, 5)
  shm.detach(view)
  await t.throwsAsync(pending, { code: 'ERR_SHM_NOT_ATTACHED' })
  t.is(await kept, 'timed-out')
})

test('timers keep firing while 100 waitAsyncs are pending', async (t) => {
  const { i32 } = words(t)
  const settled: string[] = []
  const waits = Array.from({ length: 100 }, (_, n) =>
    waitAsync(i32, n, 0).then((outcome) => {
      settled.push(outcome)
    }),
  )
  for (let tick = 0; tick < 5; tick += 1) await sleep(2)
  t.is(settled.length, 0)
  for (let n = 0; n < 100; n += 1) {
    Atomics.store(i32, n, 1)
    notify(i32, n)
  }
  await Promise.all(waits)
  t.deepEqual(new Set(settled), new Set(['ok']))
  t.is(settled.length, 100)
})

test('a read-only view waits on the segment itself, not its private copy', async (t) => {
  const { shm, i32 } = words(t)
  const readOnly = shm.attach({ readOnly: true })
  const ro32 = new Int32Array(readOnly.buffer)
  // A write through the read-only view stays private to it ...
  ro32[9] = 42
  t.is(i32[9], 0)
  // ... yet waits on it compare and sleep on the shared segment.
  t.is(wait(ro32, 9, 0, 1), 'timed-out')
  const pending = waitAsync(ro32, 9, 0)
  Atomics.store(i32, 9, 1)
  notify(i32, 9)
  t.is(await pending, 'ok')
  t.throws(() => new SharedMutex(readOnly, 0), { code: 'ERR_SHM_READ_ONLY' })
})

test('SharedMutex: lock, tryLock, unlock and their errors', async (t) => {
  const { shm, view } = words(t)
  const mutex = new SharedMutex(view, 16)
  t.is(mutex.tryLock(), 'ok')
  t.is(mutex.tryLock(), 'busy')
  t.throws(() => mutex.lock(), { code: 'ERR_SHM_DEADLOCK' })
  // lockAsync from the same thread waits for the unlock.
  const queued = mutex.lockAsync()
  await sleep(5)
  mutex.unlock()
  t.is(await queued, 'ok')
  t.is(await mutex.lockAsync(0), 'timed-out')
  mutex.unlock()
  t.throws(() => mutex.unlock(), { code: 'ERR_SHM_NOT_OWNER' })
  t.is(mutex.lock(0), 'ok')
  mutex.unlock()
  // Another mutex object over the same bytes is the same mutex.
  t.is(new SharedMutex(new DataView(view.buffer, 8), 8).tryLock(), 'ok')
  t.is(mutex.tryLock(), 'busy')
  mutex.unlock()
  t.deepEqual([...view.subarray(16, 24)], [0, 0, 0, 0, 0, 0, 0, 0])
  const detached = shm.attach()
  const gone = new SharedMutex(detached, 0)
  shm.detach(detached)
  t.throws(() => gone.tryLock(), { code: 'ERR_SHM_NOT_ATTACHED' })
})

test('SharedMutex: bad places are coded errors', (t) => {
  const { view } = words(t)
  t.throws(() => new SharedMutex(view, 4), { code: 'ERR_INVALID_ARG_VALUE' })
  t.throws(() => new SharedMutex(new DataView(view.buffer, 4), 0), { code: 'ERR_INVALID_ARG_VALUE' })
  t.throws(() => new SharedMutex(view, 4089), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => new SharedMutex(view, 4096), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => new SharedMutex(view, -8), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => new SharedMutex(Buffer.alloc(16), 0), { code: 'ERR_SHM_NOT_ATTACHED' })
  t.throws(() => new SharedMutex([] as unknown as Buffer, 0), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => new SharedMutex(view, 0, { spin: 1 as unknown as boolean }), { code: 'ERR_INVALID_ARG_TYPE' })
  const mutex = new SharedMutex(view, 0)
  t.throws(() => mutex.lock(-1), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => mutex.lockAsync(10, { signal: 'no' as unknown as AbortSignal }), { code: 'ERR_INVALID_ARG_TYPE' })
})

test('SharedMutex: an aborted lockAsync rejects and leaves the lock free', async (t) => {
  const { view } = words(t)
  const mutex = new SharedMutex(view, 0)
  t.is(mutex.tryLock(), 'ok')
  const controller = new AbortController()
  const queued = mutex.lockAsync(Infinity, { signal: controller.signal })
  controller.abort()
  await t.throwsAsync(queued, { name: 'AbortError' })
  mutex.unlock()
  t.is(mutex.tryLock(), 'ok')
  mutex.unlock()
})

test('SharedMutex: each worker thread is an owner of its own, and a dead one is recovered', async (t) => {
  const { shm, view } = words(t)
  const mutex = new SharedMutex(view, 0)
  t.is(mutex.tryLock(), 'ok')
  const script = `
    const { parentPort, workerData } = require('node:worker_threads')
    const { SharedMemory, SharedMutex } = require(workerData.root)
    const shm = SharedMemory.open(workerData.name, 0)
    const mutex = new SharedMutex(shm.attach(), 0)
    const report = { tryLock: mutex.tryLock() }
    try { mutex.unlock() } catch (error) { report.unlock = error.code }
    parentPort.postMessage(report)
    parentPort.once('message', () => {
      report.second = mutex.lock(10000)
      parentPort.postMessage(report)
      // Ends holding the lock.
    })`
  const worker = new Worker(script, { eval: true, workerData: { root: PACKAGE_ROOT, name: shm.name } })
  // Listen from the start: the worker may be gone before we would ask.
  const exited = new Promise((resolve) => worker.once('exit', resolve))
  const messages: Record<string, string>[] = []
  const next = (): Promise<Record<string, string>> =>
    new Promise((resolve) => worker.once('message', (message) => resolve({ ...message })))
  messages.push(await next())
  t.deepEqual(messages[0], { tryLock: 'busy', unlock: 'ERR_SHM_NOT_OWNER' })
  const second = next()
  worker.postMessage('go')
  await sleep(5)
  mutex.unlock()
  t.is((await second).second, 'ok')
  t.is(await exited, 0)
  t.is(mutex.lock(10_000), 'owner-died')
  mutex.unlock()
})
