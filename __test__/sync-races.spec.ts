// Synchronization under races: a notify of 0, an abort that races a wake-up
// or an unlock, and waiter threads that retire after a burst. Every wake-up
// a notify counts must reach a waiter that reports 'ok', and once a
// lockAsync has rejected this thread must not hold the lock.
//
// The tests that count wake-ups exactly run serially: a wait notified at the
// same moment as a wait on another word, on the same waiter thread, may not
// learn it was woken (Linux reports one word per futex_waitv; see
// docs/api.md, "How waiting works").

import { setImmediate as turn, setTimeout as sleep } from 'node:timers/promises'

import test from 'ava'

import { SharedMutex, notify, waitAsync } from '../index'
import { runFixture, scratch } from './helpers'
import { words } from './sync-helpers'

/** How a promise ended: its value, or the code of its error. */
function outcome<T>(promise: Promise<T>): Promise<T | string> {
  return promise.then(
    (value) => value,
    (error: { code?: string }) => error.code ?? String(error),
  )
}

test('notify with a count of 0 wakes nobody and returns 0', async (t) => {
  const { i32 } = words(t)
  const pending = waitAsync(i32, 5, 0, 300, { ref: true })
  // Asked again and again while the waiter sleeps: never a wake-up.
  const counts = new Set<number>()
  for (let n = 0; n < 150; n += 1) {
    counts.add(notify(i32, 5, 0))
    await sleep(1)
  }
  t.deepEqual([...counts], [0])
  t.is(await pending, 'timed-out')
})

test.serial('an aborted waitAsync never swallows a wake-up: it reports ok, or the live waiter gets it', async (t) => {
  const { i32 } = words(t)
  let abortedButWoken = 0
  for (let round = 0; round < 500; round += 1) {
    const dyingAbort = new AbortController()
    const liveAbort = new AbortController()
    // The aborting waiter is first in the kernel's queue, so the wake-up
    // goes to it unless its abort ends it first.
    const dying = outcome(waitAsync(i32, 2, 0, Infinity, { signal: dyingAbort.signal, ref: true }))
    const live = outcome(waitAsync(i32, 2, 0, Infinity, { signal: liveAbort.signal, ref: true }))
    if (round % 2 === 0) await turn()
    const counted = notify(i32, 2, 1)
    dyingAbort.abort()
    const dyingEnd = await dying
    // Then the live waiter is aborted too: it says 'ok' only if the wake-up
    // reached it. The word never changes, so only a wake-up makes an 'ok'.
    liveAbort.abort()
    const liveEnd = await live
    for (const end of [dyingEnd, liveEnd]) t.true(end === 'ok' || end === 'ABORT_ERR', `round ${round}: ${end}`)
    const oks = [dyingEnd, liveEnd].filter((end) => end === 'ok').length
    if (counted !== oks) {
      t.fail(`round ${round}: notify counted ${counted} wake-ups, ${oks} waiters reported ok`)
      return
    }
    if (dyingEnd === 'ok') abortedButWoken += 1
  }
  t.log(`${abortedButWoken} of 500 aborted waiters had been woken first and reported ok`)
  t.pass()
})

test.serial('every wake-up a notify counts is one wait that says ok, however many waits share the word', async (t) => {
  const { view, i32 } = words(t)
  // Lock traffic on the same waiter thread, waking at the same moment.
  const mutex = new SharedMutex(view, 64)
  for (let round = 0; round < 300; round += 1) {
    const stop = new AbortController()
    const waits = Array.from({ length: 3 }, () => outcome(waitAsync(i32, 7, 0, Infinity, { signal: stop.signal, ref: true })))
    t.is(mutex.tryLock(), 'ok')
    const locked = mutex.lockAsync(Infinity, { ref: true })
    if (round % 2 === 0) await turn()
    mutex.unlock()
    // All of them, without changing the word.
    const counted = notify(i32, 7)
    t.is(await locked, 'ok')
    mutex.unlock()
    stop.abort()
    const oks = (await Promise.all(waits)).filter((end) => end === 'ok').length
    if (counted !== oks) {
      t.fail(`round ${round}: notify counted ${counted} wake-ups, ${oks} waits said ok`)
      return
    }
  }
  t.pass()
})

test('once an aborted lockAsync has rejected, this thread does not hold the lock', async (t) => {
  const { view } = words(t)
  const mutex = new SharedMutex(view, 64)
  const ends = { ok: 0, aborted: 0 }
  for (let round = 0; round < 3000; round += 1) {
    t.is(mutex.tryLock(), 'ok')
    const controller = new AbortController()
    const queued = outcome(mutex.lockAsync(Infinity, { signal: controller.signal }))
    // Give the waiter thread a moment to sleep on the lock, sometimes.
    if (round % 3 === 1) await turn()
    // The holder's unlock races the abort.
    mutex.unlock()
    controller.abort()
    const end = await queued
    if (end === 'ok') {
      ends.ok += 1
      // Told 'ok': held by this thread, until it unlocks.
      t.throws(() => mutex.lock(0), { code: 'ERR_SHM_DEADLOCK' })
      mutex.unlock()
    } else {
      t.is(end, 'ABORT_ERR')
      ends.aborted += 1
      // Rejected: not held by this thread, so free for it at once.
      t.throws(() => mutex.unlock(), { code: 'ERR_SHM_NOT_OWNER' })
      t.is(mutex.lock(0), 'ok')
      mutex.unlock()
    }
  }
  t.log(`${ends.ok} took the lock before the abort, ${ends.aborted} were aborted`)
  t.is(ends.ok + ends.aborted, 3000)
})

test('an aborted lockAsync that loses to a timeout or a detach still leaves the lock free', async (t) => {
  const { shm, view } = words(t)
  const mutex = new SharedMutex(view, 8)
  t.is(mutex.tryLock(), 'ok')
  const controller = new AbortController()
  t.is(await mutex.lockAsync(1, { signal: controller.signal }), 'timed-out')
  controller.abort()
  const other = shm.attach()
  const detached = new SharedMutex(other, 8)
  const pending = outcome(detached.lockAsync(Infinity, { signal: controller.signal }))
  t.is(await pending, 'ABORT_ERR')
  const second = new AbortController()
  const gone = outcome(detached.lockAsync(Infinity, { signal: second.signal }))
  shm.detach(other)
  second.abort()
  t.true(['ERR_SHM_NOT_ATTACHED', 'ABORT_ERR'].includes(await gone as string))
  mutex.unlock()
  t.is(mutex.tryLock(), 'ok')
  mutex.unlock()
})

test('waiter threads retire after a burst and come back on demand', async (t) => {
  const shm = scratch(t, 4096)
  const idleMs = 1000
  const result = await runFixture('sync-retire.js', [shm.name, '2000', String(idleMs)])
  t.is(result.code, 0, result.stderr)
  const report = JSON.parse(result.stdout) as Record<string, unknown>
  t.log(report)
  t.is(report.before, 0)
  t.true((report.during as number) >= 1)
  t.deepEqual(report.outcomes, ['ok'])
  // Settled but idle: still there, so what follows is their retirement.
  t.true((report.idle as number) >= 1)
  t.true((report.goneAfterMs as number) >= 0, 'threads still there long after the idle time')
  t.is(report.again, 1)
  t.is(report.againOutcome, 'ok')
  t.true((report.goneAgainAfterMs as number) >= 0)
  if (process.platform === 'linux') t.true((report.osDuring as number) >= 1)
})
