// Attach and detach: zero-copy views, what detach accepts and refuses.

import test from 'ava'

import { SharedMemory } from '../index'
import { assertDetached, bufferLength, IN_HEAP, scratch } from './helpers'

const notAttached = { code: 'ERR_SHM_NOT_ATTACHED', instanceOf: Error }

test('attach returns a Buffer of `size` bytes that is the segment, zero-copy', (t) => {
  const shm = scratch(t, 10000)
  const view = shm.attach()
  t.true(Buffer.isBuffer(view))
  t.is(view.length, 10000)
  t.is(view.byteOffset, 0)
  t.is(view.buffer.byteLength, bufferLength(10000))
  // An external SharedArrayBuffer where the runtime makes one (no GC per attach).
  t.true(view.buffer instanceof ArrayBuffer || view.buffer instanceof SharedArrayBuffer)
  view.write('zero-copy', 50)
  t.is(shm.read(50, 9).toString(), 'zero-copy')
})

test('typed arrays and DataView work over an attached view', (t) => {
  const shm = scratch(t, 4096)
  const view = shm.attach()
  const ints = new Int32Array(view.buffer, view.byteOffset, view.length >> 2)
  const doubles = new Float64Array(view.buffer, view.byteOffset, view.length >> 3)
  const bigs = new BigInt64Array(view.buffer, view.byteOffset, view.length >> 3)
  const data = new DataView(view.buffer, view.byteOffset, view.length)
  t.is(ints.length, 1024)
  ints[0] = -2
  t.is(view.readInt32LE(0), -2)
  doubles[1] = 0.1
  t.is(data.getFloat64(8, true), 0.1)
  bigs[2] = -(2n ** 62n)
  t.is(view.readBigInt64LE(16), -(2n ** 62n))
  data.setUint16(24, 0xbeef, true)
  t.is(shm.read(24, 2).readUInt16LE(0), 0xbeef)
  t.is(Atomics.add(ints, 10, 5), 0)
  t.is(Atomics.compareExchange(ints, 10, 5, 9), 5)
  t.is(Atomics.load(ints, 10), 9)
  t.is(Atomics.add(bigs, 6, 3n), 0n)
  t.is(Atomics.load(bigs, 6), 3n)
  t.is(view.readBigInt64LE(48), 3n)
})

test('each attach maps again: several views coexist on distinct ArrayBuffers of the same memory', (t) => {
  const shm = scratch(t, 4096)
  const first = shm.attach()
  const second = shm.attach()
  t.not(first.buffer, second.buffer)
  first[0] = 1
  t.is(second[0], 1)
  second[4095] = 2
  t.is(first[4095], 2)
  shm.detach(first)
  assertDetached(t, first)
  t.is(second.length, 4096, 'detaching one view leaves the others')
  t.is(second[0], 1)
  second[1] = 3
  t.is(shm.read(0, 2)[1], 3)
})

test('detach accepts the Buffer, any TypedArray or DataView on its ArrayBuffer, or the ArrayBuffer', (t) => {
  const shm = scratch(t, 4096)
  const cases: Array<[string, (view: Buffer) => ArrayBufferView | ArrayBuffer]> = [
    ['the Buffer', (view) => view],
    ['a subarray', (view) => view.subarray(100, 200)],
    ['an Int32Array on .buffer', (view) => new Int32Array(view.buffer)],
    ['a Float64Array window', (view) => new Float64Array(view.buffer, 8, 4)],
    ['a DataView', (view) => new DataView(view.buffer, 16)],
    ['the ArrayBuffer', (view) => view.buffer as ArrayBuffer],
  ]
  shm.write(Buffer.alloc(4096, 9))
  for (const [what, pick] of cases) {
    const view = shm.attach()
    const sibling = new Uint8Array(view.buffer)
    view.fill(0x5a)
    t.notThrows(() => shm.detach(pick(view)), what)
    assertDetached(t, view, what)
    assertDetached(t, sibling, what)
    assertDetached(t, view.buffer, what)
  }
  t.is(shm.read(0, 1)[0], 0x5a, 'the segment keeps the bytes written through the views')
})

test('detach of a buffer not from this handle, or already detached, is ERR_SHM_NOT_ATTACHED', (t) => {
  const shm = scratch(t, 4096)
  const mine = shm.attach()
  mine[0] = 42

  t.throws(() => shm.detach(Buffer.alloc(4096)), notAttached)
  t.throws(() => shm.detach(Buffer.from('pooled')), notAttached)
  t.throws(() => shm.detach(new Uint8Array(16)), notAttached)
  t.throws(() => shm.detach(new ArrayBuffer(16)), notAttached)
  t.throws(() => shm.detach(new Int32Array(new SharedArrayBuffer(16))), notAttached)

  const other = SharedMemory.open(shm.name, 0)
  t.teardown(() => other.close())
  const theirs = other.attach()
  t.throws(() => shm.detach(theirs), notAttached, 'a view of the same segment from another handle')
  t.is(theirs.length, 4096, 'and it stays attached')
  t.is(theirs[0], 42)

  const copy = shm.read()
  t.throws(() => shm.detach(copy), notAttached, 'a copy from read()')

  shm.detach(mine)
  t.throws(() => shm.detach(mine), notAttached, 'already detached')
  t.throws(() => shm.detach(new Int32Array(16)), notAttached)
  t.is(shm.attach()[0], 42, 'the handle keeps working')
})

test('detach of something that is no view at all is ERR_INVALID_ARG_TYPE', (t) => {
  const shm = scratch(t, 64)
  for (const value of [42, 'view', null, undefined, {}, [1, 2]]) {
    t.throws(() => shm.detach(value as never), { code: 'ERR_INVALID_ARG_TYPE', instanceOf: TypeError })
  }
})

test('close detaches every view the handle still has, and only those', (t) => {
  const shm = scratch(t, 4096)
  const other = SharedMemory.open(shm.name, 0)
  t.teardown(() => other.close())
  const views = [shm.attach(), shm.attach({ readOnly: true }), shm.attach()]
  const theirs = other.attach()
  views[0][0] = 7
  shm.close()
  for (const view of views) assertDetached(t, view)
  t.is(theirs.length, 4096)
  t.is(theirs[0], 7)
})
