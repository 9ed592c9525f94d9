// The JavaScript layer loaded twice in one thread (a cleared require cache,
// a test runner's fresh module registry): each copy's async waits settle.

import { join } from 'node:path'

import test from 'ava'

import * as first from '../index'
import { PACKAGE_ROOT, scratch } from './helpers'

/** A second, independent copy of the package's JavaScript (and binding loader). */
function loadAgain(): typeof first {
  for (const key of Object.keys(require.cache)) {
    if (key.startsWith(PACKAGE_ROOT) && !key.includes('node_modules') && !key.includes('__test__')) delete require.cache[key]
  }
  return require(join(PACKAGE_ROOT, 'index.js')) as typeof first
}

test('waitAsync and lockAsync of the first copy settle after a second copy starts its own', async (t) => {
  const shm = scratch(t, 4096)
  const words = new Int32Array(shm.attach().buffer)
  const firstWait = first.waitAsync(words, 0, 0, 10_000, { ref: true })
  const holder = new first.SharedMutex(words, 8)
  t.is(holder.tryLock(), 'ok')
  const firstLock = new first.SharedMutex(words, 16)
  t.is(firstLock.tryLock(), 'ok')
  firstLock.unlock()

  const second = loadAgain()
  t.not(second.waitAsync, first.waitAsync, 'a real second copy')
  // The second copy registers its receiver with its first async call.
  const secondWait = second.waitAsync(words, 1, 0, 10_000, { ref: true })
  const secondMutex = new second.SharedMutex(words, 24)
  const queued = new first.SharedMutex(words, 8).lockAsync(10_000, { ref: true })

  Atomics.store(words, 0, 1)
  first.notify(words, 0)
  Atomics.store(words, 1, 1)
  second.notify(words, 1)
  t.is(await firstWait, 'ok')
  t.is(await secondWait, 'ok')
  holder.unlock()
  t.is(await queued, 'ok', 'the first copy hears its lock was taken')
  // This thread holds it now, as lockAsync promised.
  t.throws(() => holder.lock(), { code: 'ERR_SHM_DEADLOCK' })
  holder.unlock()
  t.is(await secondMutex.lockAsync(1000, { ref: true }), 'ok')
  secondMutex.unlock()
})
