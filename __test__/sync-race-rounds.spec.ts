// 100,000 rounds of abort, notify, unlock and timeout against each other,
// with the invariant checked after every round:
// - a lockAsync told 'ok' holds the lock (this thread can unlock it once);
//   one that rejected or timed out does not (unlock says ERR_SHM_NOT_OWNER);
// - the wake-ups every notify reports add up to the waits that report 'ok'
//   (the word never changes here, so only a wake-up can make an 'ok').
// A worker thread locks and unlocks the same mutex all along and bumps a
// plain (non-atomic) counter under it, as this thread does whenever told
// 'ok': the final count proves the lock never had two holders.
//
// One notify per round wakes at most one waiter: Linux reports only one of
// several wake-ups that reach one waiter thread before it runs (see
// docs/api.md, "How waiting works").

import { setImmediate as turn } from 'node:timers/promises'
import { Worker } from 'node:worker_threads'

import test from 'ava'

import { SharedMutex, notify, waitAsync } from '../index'
import { PACKAGE_ROOT } from './helpers'
import { words } from './sync-helpers'

const ROUNDS = 100_000

/** How a promise ended: its value, or the code of its error. */
function outcome<T>(promise: Promise<T>): Promise<T | string> {
  return promise.then(
    (value) => value,
    (error: { code?: string }) => error.code ?? String(error),
  )
}

/** A small seeded generator (xorshift32), so that a failing round can be replayed. */
function generator(seed: number): (n: number) => number {
  let state = seed >>> 0 || 1
  return (n) => {
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    return (state >>> 0) % n
  }
}

const CONTENDER = `
  const { workerData, parentPort } = require('node:worker_threads')
  const { SharedMemory, SharedMutex } = require(workerData.root)
  const shm = SharedMemory.open(workerData.name, 0)
  const view = shm.attach()
  const mutex = new SharedMutex(view, 64)
  const counter = new Int32Array(view.buffer, view.byteOffset + 128, 2)
  const pause = new Int32Array(new SharedArrayBuffer(4))
  let rounds = 0
  while (Atomics.load(counter, 1) === 0) {
    if (mutex.lock(10000) !== 'ok') throw new Error('worker: lock did not say ok')
    const value = counter[0]
    if (rounds % 7 === 0) Atomics.wait(pause, 0, 0, 0.05)
    counter[0] = value + 1
    mutex.unlock()
    rounds += 1
    if (rounds % 3 === 0) Atomics.wait(pause, 0, 0, 0.1)
  }
  shm.close()
  parentPort.postMessage(rounds)`

test(`${ROUNDS} rounds of abort, notify, unlock and timeout keep the lock and the wake-up counts exact`, async (t) => {
  t.timeout(10 * 60 * 1000)
  const { shm, view, i32 } = words(t)
  const mutex = new SharedMutex(view, 64)
  const counter = new Int32Array(view.buffer, view.byteOffset + 128, 2)
  const worker = new Worker(CONTENDER, { eval: true, workerData: { root: PACKAGE_ROOT, name: shm.name } })
  const workerRounds = new Promise<number>((resolve, reject) => {
    worker.once('message', resolve)
    worker.once('error', reject)
  })
  const seed = Date.now() >>> 0
  t.log(`seed ${seed}`)
  const random = generator(seed)
  const lockTimeouts = [Infinity, Infinity, 0.05, 0.3, 2]
  const waitTimeouts = [Infinity, 0.05, 0.3]
  const tally = { lockOk: 0, lockAborted: 0, lockTimedOut: 0, waitOk: 0, waitAborted: 0, waitTimedOut: 0, woken: 0 }
  for (let round = 0; round < ROUNDS; round += 1) {
    const lockAbort = new AbortController()
    const waitAbort = new AbortController()
    const cleanup = new AbortController()
    // Held by this thread, by the worker, or by nobody.
    const heldHere = random(2) === 0 && mutex.tryLock() === 'ok'
    const lock = outcome(mutex.lockAsync(lockTimeouts[random(lockTimeouts.length)], { signal: lockAbort.signal }))
    const waits = [
      outcome(waitAsync(i32, 0, 0, waitTimeouts[random(waitTimeouts.length)], { signal: cleanup.signal })),
      outcome(waitAsync(i32, 0, 0, Infinity, { signal: AbortSignal.any([waitAbort.signal, cleanup.signal]) })),
    ]
    // The racing steps, in a random order, with event-loop turns between
    // some of them so that the waiter threads are caught at every stage.
    let countedThisRound = 0
    const steps = [
      () => (heldHere ? mutex.unlock() : undefined),
      () => (random(3) === 0 ? lockAbort.abort() : undefined),
      () => random(2) === 0 && waitAbort.abort(),
      () => (countedThisRound += notify(i32, 0, random(2))),
    ]
    while (steps.length > 0) {
      const [step] = steps.splice(random(steps.length), 1)
      step()
      if (random(4) === 0) await turn()
    }
    const lockEnd = await lock
    if (lockEnd === 'ok') {
      tally.lockOk += 1
      counter[0] += 1
      mutex.unlock()
    } else {
      if (lockEnd === 'ABORT_ERR') tally.lockAborted += 1
      else if (lockEnd === 'timed-out') tally.lockTimedOut += 1
      else t.fail(`round ${round}: lockAsync ended with ${String(lockEnd)}`)
      let code = 'unlocked'
      try {
        mutex.unlock()
      } catch (error) {
        code = (error as { code: string }).code
      }
      if (code !== 'ERR_SHM_NOT_OWNER') {
        t.fail(`round ${round}: lockAsync said ${String(lockEnd)} but this thread held the lock`)
        break
      }
    }
    cleanup.abort()
    const ends = await Promise.all(waits)
    let oksThisRound = 0
    for (const end of ends) {
      if (end === 'ok') oksThisRound += 1
      else if (end === 'ABORT_ERR') tally.waitAborted += 1
      else if (end === 'timed-out') tally.waitTimedOut += 1
      else t.fail(`round ${round}: waitAsync ended with ${String(end)}`)
    }
    tally.waitOk += oksThisRound
    tally.woken += countedThisRound
    if (oksThisRound !== countedThisRound) {
      t.fail(`round ${round}: notify counted ${countedThisRound} wake-ups, ${oksThisRound} waits said ok`)
      break
    }
  }
  Atomics.store(counter, 1, 1)
  const contended = await workerRounds
  t.log({ ...tally, workerRounds: contended })
  t.is(counter[0], tally.lockOk + contended)
  // Every kind of end happened, so every race was run.
  for (const [kind, count] of Object.entries(tally)) t.true(count > 0, `no round ended ${kind}`)
})
