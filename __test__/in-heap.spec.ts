// In-heap views: the segment mapped over a WebAssembly memory, for runtimes
// that refuse external buffers (Electron). attach({ inHeap: true }) asks for
// one anywhere; NAMED_SHM_FORCE_IN_HEAP=1 makes every attach() one.

import { spawn } from 'node:child_process'
import { join } from 'node:path'

import test, { type ExecutionContext } from 'ava'

import { notify, SharedMemory, waitAsync } from '../index'
import {
  assertDetached,
  collectGarbage,
  deleteAtEnd,
  IN_HEAP,
  jsonLines,
  PACKAGE_ROOT,
  reservedGiB,
  runNode,
  scratch,
  shmMapsCount,
  uniqueName,
} from './helpers'

const PEER = join(__dirname, 'fixtures', 'in-heap-peer.js')

/**
 * What `SharedMemory.zeroCopy` says, what attach() does, and what a copy
 * through `write` and `read` gives, in a child of `runtime` (this Node
 * unless given) with `env` and `flags`.
 */
async function modeIn(env: NodeJS.ProcessEnv, flags: string[] = [], runtime?: string) {
  const script = `
    const { SharedMemory } = require(process.env.NAMED_SHM_ROOT)
    const name = 'named-shm-mode-' + process.pid
    const shm = SharedMemory.open(name, 100, { create: true, exclusive: true })
    const outcome = (options) => { try { return shm.attach(options).buffer.byteLength } catch (error) { return error.code } }
    shm.write(Buffer.from('copied'), 90)
    const copies = shm.read(90, 6).toString()
    console.log(JSON.stringify({ zeroCopy: SharedMemory.zeroCopy, attach: outcome(), inHeap: outcome({ inHeap: true }), copies }))
    shm.close()
    SharedMemory.delete(name)`
  const child = await runNode([...flags, '-e', script], { env, node: runtime })
  return { code: child.code, stderr: child.stderr, result: jsonLines(child.stdout)[0] }
}

test('zeroCopy says what attach() gives: external, in-heap when forced, copy without WebAssembly', async (t) => {
  t.is(SharedMemory.zeroCopy, IN_HEAP ? 'in-heap' : 'external')
  const plain = await modeIn({ NAMED_SHM_FORCE_IN_HEAP: '' })
  t.deepEqual(plain.result, { zeroCopy: 'external', attach: 100, inHeap: 65536, copies: 'copied' }, plain.stderr)
  const forced = await modeIn({ NAMED_SHM_FORCE_IN_HEAP: '1' })
  t.deepEqual(forced.result, { zeroCopy: 'in-heap', attach: 65536, inHeap: 65536, copies: 'copied' }, forced.stderr)
  // --jitless turns WebAssembly off: an Electron app run that way has no zero-copy view.
  const jitless = await modeIn({ NAMED_SHM_FORCE_IN_HEAP: '1' }, ['--jitless'])
  t.deepEqual(
    jitless.result,
    { zeroCopy: 'copy', attach: 'ERR_SHM_EXTERNAL_BUFFERS', inHeap: 'ERR_SHM_IN_HEAP_UNSUPPORTED', copies: 'copied' },
    jitless.stderr,
  )
})

// Bun (NAMED_SHM_BUN, which .ci/run fetches from npm): JavaScriptCore's
// WebAssembly memories are not whole 64 KiB pages of their own, so no
// segment can be mapped over one. Where external buffers are refused there is
// then no zero-copy view at all, and zeroCopy must say so.
const bun = process.env.NAMED_SHM_BUN
if (bun) {
  test('under Bun zeroCopy says what attach() gives: external, and copy when external buffers are refused', async (t) => {
    const plain = await modeIn({ NAMED_SHM_FORCE_IN_HEAP: '' }, [], bun)
    t.deepEqual(plain.result, { zeroCopy: 'external', attach: 100, inHeap: 'ERR_SHM_IN_HEAP_UNSUPPORTED', copies: 'copied' }, plain.stderr)
    const forced = await modeIn({ NAMED_SHM_FORCE_IN_HEAP: '1' }, [], bun)
    t.deepEqual(
      forced.result,
      { zeroCopy: 'copy', attach: 'ERR_SHM_EXTERNAL_BUFFERS', inHeap: 'ERR_SHM_IN_HEAP_UNSUPPORTED', copies: 'copied' },
      forced.stderr,
    )
  })
}

test('an in-heap view is the segment both ways, whole 64 KiB pages, and reads zeros once detached', (t) => {
  const shm = scratch(t, 5000)
  const view = shm.attach({ inHeap: true })
  t.true(Buffer.isBuffer(view))
  t.is(view.length, 5000)
  t.is(view.byteOffset, 0)
  t.is(view.buffer.byteLength, 65536, 'a WebAssembly memory is whole 64 KiB pages')
  const other = SharedMemory.open(shm.name, 0)
  t.teardown(() => other.close())
  const theirs = other.attach()
  view.write('in-heap', 10)
  t.is(theirs.toString('utf8', 10, 17), 'in-heap')
  theirs.write('external', 4990)
  t.is(view.toString('utf8', 4990, 4998), 'external')
  t.is(shm.read(10, 7).toString(), 'in-heap')

  shm.detach(view)
  assertDetached(t, view, 'the in-heap view', true)
  view.write('private', 10)
  t.is(theirs.toString('utf8', 10, 17), 'in-heap', 'writes after detach stay out of the segment')
  t.throws(() => shm.detach(view), { code: 'ERR_SHM_NOT_ATTACHED' })
  t.throws(() => shm.attach({ inHeap: 1 as never }), { code: 'ERR_INVALID_ARG_TYPE' })
})

test('wait, notify and SharedMutex work on in-heap views; words past the segment are refused', async (t) => {
  const shm = scratch(t, 4096)
  const words = new Int32Array(shm.attach({ inHeap: true }).buffer)
  const other = new Int32Array(shm.attach({ inHeap: true }).buffer, 0, 1024)
  const pending = waitAsync(words, 3, 0, 10_000)
  Atomics.store(other, 3, 1)
  notify(other, 3)
  t.is(await pending, 'ok')
  t.throws(() => notify(words, 1024), { code: 'ERR_SHM_NOT_ATTACHED' }, 'the buffer runs on past the segment')
})

test('detach while a waitAsync is pending on an in-heap view ends the wait, as for an external view', async (t) => {
  const shm = scratch(t, 4096)
  for (const inHeap of [true, false]) {
    const view = shm.attach({ inHeap })
    const pending = waitAsync(new Int32Array(view.buffer, 0, 1024), 0, 0, 10_000)
    shm.detach(view)
    await t.throwsAsync(pending, { code: 'ERR_SHM_NOT_ATTACHED' }, `inHeap: ${inHeap}`)
  }
})

test('a segment past 4 GiB has no in-heap view: ERR_OUT_OF_RANGE', (t) => {
  const shm = scratch(t, 2 ** 32 + 1, { reserve: false })
  t.throws(() => shm.attach({ inHeap: true }), { code: 'ERR_OUT_OF_RANGE' })
  t.is(shm.read(2 ** 32, 1)[0], 0, 'the handle still works')
})

test.serial('a handle and in-heap views dropped without close are released by the garbage collector', async (t) => {
  const name = uniqueName('in-heap-gc')
  deleteAtEnd(t, name)
  SharedMemory.open(name, 4096, { create: true }).close()
  await collectGarbage()
  const before = { shmMaps: shmMapsCount(), reserved: reservedGiB() }
  ;(function dropAll() {
    for (let i = 0; i < 20; i += 1) {
      const shm = SharedMemory.open(name, 0)
      shm.attach({ inHeap: true })[0] = i
      new Int32Array(shm.attach({ inHeap: true, readOnly: true }).buffer)
    }
  })()
  t.is(shmMapsCount(), before.shmMaps + 20 * 4, 'each view maps twice: over the memory, and an alias for waits')
  t.true(reservedGiB() >= before.reserved + 40 * 7, 'each WebAssembly memory reserves 8 to 10 GiB')
  let after = { shmMaps: -1, reserved: -1 }
  for (let round = 0; round < 50; round += 1) {
    await collectGarbage()
    after = { shmMaps: shmMapsCount(), reserved: reservedGiB() }
    if (after.shmMaps === before.shmMaps && after.reserved === before.reserved) break
  }
  t.deepEqual(after, before)
})

/** Runs the peer with `force` while this process attaches with `inHeap`; returns what the peer saw. */
async function exchange(t: ExecutionContext, inHeap: boolean, force: string) {
  const shm = scratch(t, 8192)
  const view = shm.attach({ inHeap })
  const words = new Int32Array(view.buffer, 0, 2048)
  view.write('parent', 64)
  const child = spawn(process.execPath, [PEER, shm.name], {
    env: { ...process.env, NAMED_SHM_ROOT: PACKAGE_ROOT, NAMED_SHM_FORCE_IN_HEAP: force },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => (stdout += chunk))
  child.stderr.on('data', (chunk) => (stderr += chunk))
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve))
  t.is(await waitAsync(words, 1, 0, 10_000), 'ok', stderr)
  const written = view.toString('utf8', 128, 133)
  Atomics.store(words, 2, 7)
  notify(words, 2)
  t.is(await exited, 0, stderr)
  const peer = jsonLines<{ woken: string }>(stdout)[0]
  // The peer waits before it signals; 'not-equal' if our store beat its waiter thread to the kernel.
  t.true(['ok', 'not-equal'].includes(peer?.woken), `peer's wait: ${peer?.woken}`)
  return { written, peer }
}

test('an external view here and an in-heap view in another process share the segment both ways', async (t) => {
  const { written, peer } = await exchange(t, false, '1')
  t.is(written, 'child')
  t.like(peer, { zeroCopy: 'in-heap', bufferLength: 65536, seen: 'parent', last: 7 })
})

test('an in-heap view here and an external view in another process share the segment both ways', async (t) => {
  const { written, peer } = await exchange(t, true, '')
  t.is(written, 'child')
  t.like(peer, { zeroCopy: 'external', bufferLength: 8192, seen: 'parent', last: 7 })
})
