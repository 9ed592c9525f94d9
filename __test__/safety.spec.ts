// Never crash: views die with detach and close, read-only views
// cannot crash on write, and no other thread can keep our memory.

import { once } from 'node:events'
import { truncateSync } from 'node:fs'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'

import test, { type ExecutionContext } from 'ava'

import { SharedMemory } from '../index'
import { assertDetached, bufferLength, IN_HEAP, runFixture, scratch } from './helpers'

/** Every kind of view a program might hold on an attached Buffer. */
function viewsOn(view: Buffer) {
  return {
    typed: {
      buffer: view,
      subarray: view.subarray(10, 20),
      int32: new Int32Array(view.buffer, view.byteOffset, view.length >> 2),
      float64: new Float64Array(view.buffer, 8, 10),
      bigint64: new BigInt64Array(view.buffer),
      uint8: new Uint8Array(view.buffer, 100),
    },
    dataView: new DataView(view.buffer, 4, 64),
    // An external ArrayBuffer, or SharedArrayBuffer where the runtime makes one.
    arrayBuffer: view.buffer as ArrayBuffer,
  }
}

/** Asserts that none of `views` can reach the segment any more. */
function assertDead(t: ExecutionContext, views: ReturnType<typeof viewsOn>, when: string): void {
  if (IN_HEAP || (views.arrayBuffer as unknown) instanceof SharedArrayBuffer) {
    // A WebAssembly memory's buffer cannot be detached: its views read the
    // zero pages put back over the segment, and writes stay in them.
    for (const [what, typed] of Object.entries(views.typed)) assertDetached(t, typed, `${when}: ${what}`)
    assertDetached(t, views.dataView, `${when}: the DataView`)
    for (const typed of Object.values(views.typed)) {
      if (typed instanceof BigInt64Array) typed[0] = 1n
      else typed[0] = 1
    }
    return
  }
  for (const [what, typed] of Object.entries(views.typed)) {
    t.is(typed.length, 0, `${when}: ${what}.length`)
    t.is(typed.byteLength, 0, `${when}: ${what}.byteLength`)
    t.is(typed[0] as unknown, undefined, `${when}: ${what}[0]`)
    t.is(typed[1] as unknown, undefined, `${when}: ${what}[1]`)
    if (typed instanceof BigInt64Array) typed[0] = 1n
    else typed[0] = 1
    t.is(typed[0] as unknown, undefined, `${when}: a write to ${what} goes nowhere`)
  }
  t.is(views.arrayBuffer.byteLength, 0, `${when}: the ArrayBuffer`)
  // V8 refuses every DataView access on a detached buffer, byteLength included.
  const detached = { instanceOf: TypeError, message: /detached/ }
  t.throws(() => views.dataView.byteLength, detached, `${when}: DataView.byteLength`)
  t.throws(() => views.dataView.getUint8(0), detached, `${when}: DataView.getUint8`)
  t.throws(() => views.dataView.setUint8(0, 1), detached, `${when}: DataView.setUint8`)
  t.throws(() => Atomics.load(views.typed.int32, 0), { instanceOf: TypeError }, `${when}: Atomics.load`)
  t.throws(() => new Uint8Array(views.arrayBuffer), detached, `${when}: a new view on the buffer`)
  t.throws(() => Buffer.from(views.arrayBuffer), { instanceOf: TypeError }, `${when}: Buffer.from(buffer)`)
}

test('after detach, every view on the ArrayBuffer has length 0 and reads undefined', (t) => {
  const shm = scratch(t, 4096)
  const view = shm.attach()
  view.fill(0x42)
  const views = viewsOn(view)
  t.is(views.typed.subarray[0], 0x42)
  t.is(views.dataView.getUint8(0), 0x42)
  shm.detach(views.typed.subarray)
  assertDead(t, views, 'detach')
  t.true(shm.read().every((byte) => byte === 0x42), 'the segment kept its data')
})

test('after close, every view of every attachment has length 0 and reads undefined', (t) => {
  const shm = scratch(t, 4096)
  const all = [viewsOn(shm.attach()), viewsOn(shm.attach({ readOnly: true })), viewsOn(shm.attach())]
  all[0].typed.buffer.fill(7)
  shm.close()
  all.forEach((views, index) => assertDead(t, views, `close, attachment ${index}`))
})

test('copying from or into a detached view moves no bytes and never reaches the unmapped memory', (t) => {
  const shm = scratch(t, 4096)
  const other = SharedMemory.open(shm.name, 0)
  t.teardown(() => other.close())
  shm.write('segment', 0)
  const view = other.attach()
  const views = viewsOn(view)
  other.detach(view)
  if (IN_HEAP || (views.arrayBuffer as unknown) instanceof SharedArrayBuffer) {
    // The detached in-heap view is private zero pages: copies use its bytes
    // and its length, and none of it is the segment any more.
    shm.write('x'.repeat(80), 100)
    t.is(shm.write(views.typed.float64, 100), 80)
    t.true(shm.read(100, 80).every((byte) => byte === 0), 'zeros came from the private pages')
    t.is(shm.readInto(views.typed.subarray, 0), 10)
    t.is(view.toString('utf8', 10, 17), 'segment', 'the copy went into the private pages')
    t.is(shm.read(0, 7).toString(), 'segment')
    return
  }
  t.is(shm.write(views.typed.buffer, 0), 0)
  t.is(shm.write(views.typed.int32, 100), 0)
  t.is(shm.readInto(views.typed.subarray, 0), 0)
  t.is(shm.readInto(views.typed.float64, 0), 0)
  t.is(shm.write(views.dataView, 0), 0)
  t.is(shm.readInto(views.dataView, 0), 0)
  t.is(shm.read(0, 7).toString(), 'segment')
})

test('detach and close of a read-only handle kill its views too', (t) => {
  const shm = scratch(t, 4096)
  const readOnly = SharedMemory.open(shm.name, 0, { readOnly: true })
  t.teardown(() => readOnly.close())
  const first = viewsOn(readOnly.attach())
  const second = viewsOn(readOnly.attach())
  readOnly.detach(first.arrayBuffer)
  assertDead(t, first, 'read-only detach')
  readOnly.close()
  assertDead(t, second, 'read-only close')
})

test('a child that writes through read-only views exits normally and the segment is unchanged', async (t) => {
  const shm = scratch(t, 8192)
  const view = shm.attach()
  for (let i = 0; i < view.length; i += 1) view[i] = (i * 11) & 0xff
  const before = Buffer.from(view)

  const child = await runFixture('readonly-writer.js', [shm.name])
  t.is(child.code, 0, child.stderr)
  t.is(child.signal, null)
  const seen = JSON.parse(child.stdout)
  // The writes stayed private to the child (copy-on-write), as documented.
  t.deepEqual(seen.handle, { first: 0xaa, int32: -1, double: Math.PI })
  t.deepEqual(seen.attachOption, { text: 'written', last: 0x55 })
  t.deepEqual(seen.nsprFlag, { first: 0x77 })
  t.deepEqual(seen.segment, { first: before[0], last: before[8191] })

  t.true(view.equals(before), 'our attachment sees the segment unchanged')
  t.true(shm.read().equals(before), 'and so does a copying read')
})

test('an attached ArrayBuffer cannot be transferred to a worker: no other thread gets memory we unmap', async (t) => {
  const shm = scratch(t, 4096)
  const view = shm.attach()
  view.set([1, 2, 3, 4])
  const worker = new Worker(join(__dirname, 'fixtures', 'transfer-worker.js'), { execArgv: [] })
  t.teardown(() => worker.terminate())

  // Node marks external buffers untransferable. Since Node 21 (nodejs/node#47604)
  // a transfer list holding one is a DataCloneError; Node 20 ignores the entry
  // and sends a copy instead. Either way the buffer stays ours, not moved.
  const major = Number(process.versions.node.split('.')[0])
  if ((view.buffer as unknown) instanceof SharedArrayBuffer) {
    // A SharedArrayBuffer is shared with the worker, never moved, and close()
    // turns the memory both see into zero pages: still mapped, never freed
    // under the worker.
    t.throws(() => worker.postMessage({ kind: 'keep', buffer: view.buffer }, [view.buffer as never]), { name: 'DataCloneError' })
    worker.postMessage({ kind: 'keep', buffer: view.buffer })
    const [kept] = await once(worker, 'message')
    t.deepEqual(kept, { kind: 'kept', byteLength: 4096, first: [1, 2, 3, 4] })
    shm.close()
    worker.postMessage({ kind: 'peek' })
    const [peeked] = await once(worker, 'message')
    t.deepEqual(peeked, { kind: 'peeked', byteLength: 4096, first: [0, 0, 0, 0] })
    return
  }
  let thrown: unknown
  try {
    const buffer = view.buffer as ArrayBuffer
    worker.postMessage({ kind: 'keep', buffer }, [buffer])
  } catch (error) {
    thrown = error
  }
  let clonedThrown: unknown
  let cloned: ArrayBuffer | undefined
  try {
    const buffer = view.buffer as ArrayBuffer
    cloned = structuredClone(buffer, { transfer: [buffer] })
  } catch (error) {
    clonedThrown = error
  }
  t.is(view.length, 4096, 'the transfer did not detach our view')
  t.deepEqual([...view.subarray(0, 4)], [1, 2, 3, 4])

  if (major >= 21) {
    t.is((thrown as Error | undefined)?.name, 'DataCloneError')
    t.is((clonedThrown as Error | undefined)?.name, 'DataCloneError')
    shm.close()
    assertDetached(t, view)
    return
  }

  t.is(thrown, undefined, 'Node 20 sends a copy')
  t.is(clonedThrown, undefined)
  const [kept] = await once(worker, 'message')
  t.deepEqual(kept, { kind: 'kept', byteLength: bufferLength(4096), first: [1, 2, 3, 4] })
  t.is(cloned?.byteLength, bufferLength(4096))

  view.set([9, 9, 9, 9])
  t.deepEqual([...new Uint8Array(cloned!, 0, 4)], [1, 2, 3, 4], 'structuredClone made a copy')
  shm.close()
  assertDetached(t, view)
  worker.postMessage({ kind: 'peek' })
  const [peeked] = await once(worker, 'message')
  t.deepEqual(peeked, { kind: 'peeked', byteLength: bufferLength(4096), first: [1, 2, 3, 4] }, "the worker's copy is its own memory")
})

test('attach after another program shrinks the segment fails with ERR_SHM_SIZE instead of mapping past its end', (t) => {
  const shm = scratch(t, 8192)
  truncateSync(`/dev/shm${shm.osName}`, 100)
  t.throws(() => shm.attach(), { code: 'ERR_SHM_SIZE' })
  t.throws(() => shm.read(0, 1), { code: 'ERR_SHM_SIZE' })
  t.throws(() => SharedMemory.open(shm.name, 8192), { code: 'ERR_SHM_SIZE' })
  const small = SharedMemory.open(shm.name, 0)
  t.teardown(() => small.close())
  t.is(small.size, 100)
  t.is(small.attach().length, 100)
})
