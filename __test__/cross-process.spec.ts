// Promises about other processes, tested with real processes: shared bytes
// both ways, and Atomics that stay atomic across processes.

import test from 'ava'

import { forkFixture, runFixture, scratch } from './helpers'

// Plain JavaScript shared with the children.
const { fill, firstMismatch } = require('./fixtures/pattern.js') as {
  fill: (bytes: Uint8Array, seed: number) => void
  firstMismatch: (bytes: Uint8Array, seed: number) => number
}

const SIZE = 1 << 20

test('a forked child writes a pattern that the parent reads through its own attachment', async (t) => {
  const shm = scratch(t, SIZE)
  const view = shm.attach()
  t.true(view.every((byte) => byte === 0))
  const child = await forkFixture('pattern-child.js', ['write', shm.name, '17'])
  t.is(child.code, 0, child.stderr)
  t.is(child.signal, null)
  t.is(child.messages.length, 1)
  t.like(child.messages[0] as object, { done: 'write', length: SIZE })
  t.not((child.messages[0] as { pid: number }).pid, process.pid)
  t.is(firstMismatch(view, 17), -1, 'the view attached before the fork sees every byte')
  t.is(firstMismatch(shm.read(), 17), -1)
})

test('the parent writes a pattern that a forked child reads through its own attachment', async (t) => {
  const shm = scratch(t, SIZE)
  const view = shm.attach()
  fill(view, 99)
  const child = await forkFixture('pattern-child.js', ['check', shm.name, '99'])
  t.is(child.code, 0, child.stderr)
  t.is(child.signal, null)
  t.is(child.messages.length, 1)
  t.like(child.messages[0] as object, { done: 'check', length: SIZE, mismatch: -1 })

  // And the check can fail: a different seed is seen as different.
  const wrong = await forkFixture('pattern-child.js', ['check', shm.name, '98'])
  t.is(wrong.code, 0, wrong.stderr)
  t.like(wrong.messages[0] as object, { done: 'check', mismatch: 0 })
})

const PROCESSES = 4
const ITERATIONS = 100_000

async function addConcurrently(name: string, kind: 'int32' | 'bigint64') {
  const children = Array.from({ length: PROCESSES }, () =>
    runFixture('atomic-adder.js', [name, kind, String(PROCESSES), String(ITERATIONS)]),
  )
  return Promise.all(children)
}

test(`${PROCESSES} processes each doing ${ITERATIONS} Atomics.add on one Int32 total exactly ${PROCESSES * ITERATIONS}`, async (t) => {
  const shm = scratch(t, 4096)
  const view = shm.attach()
  const ints = new Int32Array(view.buffer, view.byteOffset, 2)
  const results = await addConcurrently(shm.name, 'int32')
  for (const child of results) {
    t.is(child.code, 0, child.stderr)
    t.is(child.signal, null)
  }
  t.is(Atomics.load(ints, 0), PROCESSES, 'every process passed the barrier')
  t.is(Atomics.load(ints, 1), PROCESSES * ITERATIONS)
  t.is(shm.read(4, 4).readInt32LE(0), PROCESSES * ITERATIONS)
})

test(`${PROCESSES} processes each doing ${ITERATIONS} Atomics.add on one BigInt64 total exactly ${PROCESSES * ITERATIONS}`, async (t) => {
  const shm = scratch(t, 4096)
  const view = shm.attach()
  const results = await addConcurrently(shm.name, 'bigint64')
  for (const child of results) {
    t.is(child.code, 0, child.stderr)
    t.is(child.signal, null)
  }
  t.is(Atomics.load(new Int32Array(view.buffer, 0, 1), 0), PROCESSES)
  t.is(Atomics.load(new BigInt64Array(view.buffer, 0, 2), 1), BigInt(PROCESSES * ITERATIONS))
})
