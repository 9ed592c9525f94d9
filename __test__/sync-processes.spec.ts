// Synchronization across real processes: wake-ups, ping-pong, waitAsync under a
// saturated thread pool, exit with pending waits, a SharedMutex whose owner
// is killed, exact counts under the mutex and under Atomics.

import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test from 'ava'

import { SharedMutex, notify, waitAsync } from '../index'
import { runFixture } from './helpers'
import { startFixture, words } from './sync-helpers'

/** Resolves once word `index` is at least `value` (another process raises it). */
async function until(i32: Int32Array, index: number, value: number): Promise<void> {
  for (;;) {
    const seen = Atomics.load(i32, index)
    if (seen >= value) return
    await waitAsync(i32, index, seen, 50)
  }
}

for (const spin of ['on', 'off']) {
  for (const mode of ['sync', 'async']) {
    test(`notify wakes a ${mode} wait (spin ${spin}) in another process`, async (t) => {
      const { shm, i32 } = words(t)
      const child = startFixture(t, 'sync-waiter.js', [shm.name, '0', '0', '30000', spin, mode])
      await child.line('waiting')
      await until(i32, 1, 1)
      // Wake it without changing the word, until the kernel says it woke
      // someone: the other process was asleep and our notify reached it.
      while (notify(i32, 0) === 0) await new Promise((resolve) => setTimeout(resolve, 2))
      t.is(await child.line('outcome'), 'outcome ok')
      t.is((await child.done).code, 0)
    })
  }
}

test('not-equal and timed-out in another process, sync and async', async (t) => {
  const { shm, i32 } = words(t)
  Atomics.store(i32, 4, 1)
  const notEqual = await runFixture('sync-waiter.js', [shm.name, '4', '0', '1000', 'on', 'sync'])
  t.regex(notEqual.stdout, /outcome not-equal/)
  const asyncNotEqual = await runFixture('sync-waiter.js', [shm.name, '4', '0', '1000', 'on', 'async'])
  t.regex(asyncNotEqual.stdout, /outcome not-equal/)
  const timedOut = await runFixture('sync-waiter.js', [shm.name, '8', '0', '20', 'off', 'sync'])
  t.regex(timedOut.stdout, /outcome timed-out/)
  const asyncTimedOut = await runFixture('sync-waiter.js', [shm.name, '8', '0', '20', 'on', 'async'])
  t.regex(asyncTimedOut.stdout, /outcome timed-out/)
})

test('a read-only attachment in another process is woken by our notify', async (t) => {
  const { shm, i32 } = words(t)
  const child = startFixture(t, 'sync-waiter.js', [shm.name, '12', '0', '30000', 'off', 'async', 'readonly'])
  await child.line('waiting')
  // Its waiter thread sleeps on a shared read-only mapping of the segment:
  // our notify reaches it there.
  while (notify(i32, 12) === 0) await new Promise((resolve) => setTimeout(resolve, 2))
  t.is(await child.line('outcome'), 'outcome ok')
  t.is((await child.done).code, 0)
})

test('10,000 ping-pong round trips between two processes lose no wake-up', async (t) => {
  const { shm, i32 } = words(t)
  const rounds = '10000'
  const ping = startFixture(t, 'sync-pingpong.js', [shm.name, 'ping', rounds, 'mixed'])
  const pong = startFixture(t, 'sync-pingpong.js', [shm.name, 'pong', rounds, 'mixed'])
  const [a, b] = await Promise.all([ping.done, pong.done])
  t.is(a.code, 0, a.stderr)
  t.is(b.code, 0, b.stderr)
  t.is(JSON.parse(a.stdout).timeouts, 0)
  t.deepEqual(JSON.parse(b.stdout), { role: 'pong', timeouts: 0, last: 20000 })
  t.is(Atomics.load(i32, 0), 20000)
})

test('waitAsync resolves in a process whose thread pool is saturated', async (t) => {
  const { shm, i32 } = words(t)
  const dir = mkdtempSync(join(tmpdir(), 'named-shm-fifo-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const fifo = join(dir, 'fifo')
  execFileSync('mkfifo', [fifo])
  const child = startFixture(t, 'sync-pool-saturated.js', [shm.name, '0', fifo], { UV_THREADPOOL_SIZE: '4' })
  await child.line('waiting')
  Atomics.store(i32, 0, 1)
  notify(i32, 0)
  const result = await child.done
  t.is(result.code, 0, result.stderr)
  t.deepEqual(JSON.parse(result.stdout.split('\n').find((line) => line.startsWith('{'))!), {
    outcome: 'ok',
    statWasBlocked: true,
  })
})

test('a process with a pending waitAsync exits normally', async (t) => {
  const { shm } = words(t)
  const result = await runFixture('sync-exit-pending.js', [shm.name])
  t.is(result.code, 0, result.stderr)
  t.is(result.signal, null)
  t.is(result.stdout, 'pending 1\nexit 0\n')
})

for (const how of ['lock', 'lockAsync']) {
  test(`a lock holder killed with SIGKILL is recovered with owner-died (${how})`, async (t) => {
    const { shm, view } = words(t)
    const holder = startFixture(t, 'sync-lock-holder.js', [shm.name])
    t.is(await holder.line('locked'), 'locked ok')
    const mutex = new SharedMutex(view, 0)
    t.is(mutex.tryLock(), 'busy')
    let outcome: Promise<string>
    if (how === 'lockAsync') {
      // Already waiting when the owner dies.
      outcome = mutex.lockAsync(30_000)
      holder.child.kill('SIGKILL')
      t.is((await holder.done).signal, 'SIGKILL')
    } else {
      holder.child.kill('SIGKILL')
      t.is((await holder.done).signal, 'SIGKILL')
      outcome = Promise.resolve(mutex.lock(30_000))
    }
    t.is(await outcome, 'owner-died')
    t.is(mutex.tryLock(), 'busy')
    mutex.unlock()
    t.is(mutex.tryLock(), 'ok')
    mutex.unlock()
  })
}

test('4 processes x 10,000 lock / increment / unlock give an exact count', async (t) => {
  const { shm, i32 } = words(t)
  const modes = ['sync', 'nospin', 'async', 'sync']
  const results = await Promise.all(modes.map((mode) => runFixture('sync-counter.js', [shm.name, '10000', mode])))
  for (const result of results) {
    t.is(result.code, 0, result.stderr)
    t.deepEqual(JSON.parse(result.stdout), { ok: 10000 })
  }
  t.is(i32[2], 40000)
  t.deepEqual([i32[0], i32[1]], [0, 0])
})

test('Atomics on Int32Array and BigInt64Array views are atomic across processes', async (t) => {
  const { shm, i32 } = words(t)
  const rounds = 20000
  const results = await Promise.all(
    Array.from({ length: 4 }, () => runFixture('sync-atomics.js', [shm.name, String(rounds)])),
  )
  for (const result of results) {
    t.is(result.code, 0, result.stderr)
    t.deepEqual(JSON.parse(result.stdout), { torn: 0 })
  }
  const i64 = new BigInt64Array(i32.buffer, i32.byteOffset + 64, 8)
  t.is(Atomics.load(i32, 0), 4 * rounds)
  t.is(Atomics.load(i32, 1), 4 * rounds)
  t.is(Atomics.load(i64, 0), BigInt(4 * rounds))
  t.is(Atomics.load(i64, 1), BigInt(4 * rounds * 3))
})
