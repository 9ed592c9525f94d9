// Copying access: read, readInto, write, their defaults and bounds.

import { truncateSync } from 'node:fs'

import test from 'ava'

import { SharedMemory } from '../index'
import { scratch } from './helpers'

const range = { code: 'ERR_OUT_OF_RANGE', instanceOf: RangeError }
const type = { code: 'ERR_INVALID_ARG_TYPE', instanceOf: TypeError }

/** Fills `bytes` with a pattern that shows any shift or overlap damage. */
function pattern(bytes: Uint8Array): void {
  for (let i = 0; i < bytes.length; i += 1) bytes[i] = (i * 13 + (i >>> 8) * 7) & 0xff
}

test('read() copies the whole segment; read(offset) to its end; read(offset, length) exactly', (t) => {
  const shm = scratch(t, 300)
  const view = shm.attach()
  pattern(view)
  const whole = shm.read()
  t.is(whole.length, 300)
  t.true(whole.equals(view))
  t.not(whole.buffer, view.buffer)
  whole[0] ^= 0xff
  t.not(view[0], whole[0], 'read() returns a copy')

  t.true(shm.read(100).equals(view.subarray(100)))
  t.true(shm.read(7, 20).equals(view.subarray(7, 27)))
  t.is(shm.read(300).length, 0)
  t.is(shm.read(300, 0).length, 0)
  t.is(shm.read(0, 0).length, 0)
  t.true(shm.read(299, 1).equals(view.subarray(299)))
})

test('read() out of bounds or with bad arguments throws', (t) => {
  const shm = scratch(t, 300)
  for (const [offset, length] of [[301, undefined], [0, 301], [1, 300], [300, 1], [-1, undefined], [0, -1], [0.5, 1], [0, 1.5], [Number.NaN, 1], [2 ** 53, 0]]) {
    t.throws(() => shm.read(offset, length), range, `read(${offset}, ${length})`)
  }
  t.throws(() => shm.read('0' as never), type)
  t.throws(() => shm.read(0, '1' as never), type)
  t.throws(() => shm.read(null as never), type)
})

test('readInto copies as many bytes as fit or remain, and returns the count', (t) => {
  const shm = scratch(t, 100)
  const view = shm.attach()
  pattern(view)

  const big = Buffer.alloc(150, 0xcc)
  t.is(shm.readInto(big), 100)
  t.true(big.subarray(0, 100).equals(view))
  t.true(big.subarray(100).every((byte) => byte === 0xcc), 'bytes past the copy are untouched')

  const small = Buffer.alloc(10)
  t.is(shm.readInto(small, 50), 10)
  t.true(small.equals(view.subarray(50, 60)))

  const tail = Buffer.alloc(10, 0xcc)
  t.is(shm.readInto(tail, 95), 5)
  t.true(tail.subarray(0, 5).equals(view.subarray(95)))
  t.true(tail.subarray(5).every((byte) => byte === 0xcc))

  t.is(shm.readInto(Buffer.alloc(10), 100), 0)
  t.is(shm.readInto(new Uint8Array(0)), 0)

  const words = new Uint16Array(8)
  t.is(shm.readInto(words, 2), 16, 'the count is in bytes')
  t.true(Buffer.from(words.buffer).equals(view.subarray(2, 18)))

  const backing = new ArrayBuffer(32)
  new Uint8Array(backing).fill(0xcc)
  const window = new DataView(backing, 8, 8)
  t.is(shm.readInto(window, 0), 8)
  const all = new Uint8Array(backing)
  t.true(all.subarray(0, 8).every((byte) => byte === 0xcc))
  t.true(Buffer.from(all.subarray(8, 16)).equals(view.subarray(0, 8)), 'only the DataView window is written')
  t.true(all.subarray(16).every((byte) => byte === 0xcc))

  // A range read again, at the same offset with another length, and moved
  // on: each copy is of what the segment holds now, and of that range only.
  const frame = Buffer.alloc(4)
  t.is(shm.readInto(frame, 10), 4)
  shm.write(Buffer.from([1, 2, 3, 4, 5]), 10)
  t.is(shm.readInto(frame, 10), 4)
  t.deepEqual([...frame], [1, 2, 3, 4])
  const longer = Buffer.alloc(5)
  t.is(shm.readInto(longer, 10), 5)
  t.deepEqual([...longer], [1, 2, 3, 4, 5])
  const moved = Buffer.alloc(5)
  t.is(shm.readInto(moved, 11), 5)
  t.deepEqual([...moved], [2, 3, 4, 5, view[15]])
})

test('readInto out of bounds or with bad arguments throws', (t) => {
  const shm = scratch(t, 100)
  for (const offset of [101, -1, 1.5, Number.NaN]) {
    t.throws(() => shm.readInto(Buffer.alloc(4), offset), range, `offset ${offset}`)
  }
  t.throws(() => shm.readInto(Buffer.alloc(4), '1' as never), type)
  for (const target of [new ArrayBuffer(4), [0, 0], 'text', null, undefined, 4]) {
    const error = t.throws(() => shm.readInto(target as never), type)
    t.true(error?.message.includes('"target"'), error?.message)
  }
})

test('write copies bytes at an offset and returns the count', (t) => {
  const shm = scratch(t, 64)
  const view = shm.attach()
  t.is(shm.write(Buffer.from([1, 2, 3])), 3)
  t.deepEqual([...view.subarray(0, 4)], [1, 2, 3, 0])
  t.is(shm.write(Buffer.from([9, 8]), 10), 2)
  t.deepEqual([...view.subarray(9, 13)], [0, 9, 8, 0])
  t.is(shm.write(Buffer.alloc(4, 7), 60), 4, 'a write that ends exactly at the end fits')
  t.deepEqual([...view.subarray(60)], [7, 7, 7, 7])
  t.is(shm.write(Buffer.alloc(0), 64), 0)
  t.is(shm.write('', 64), 0)
  t.is(shm.write(Buffer.alloc(64, 0xab)), 64)
  t.true(view.every((byte) => byte === 0xab))
})

test('write takes strings as UTF-8', (t) => {
  const shm = scratch(t, 64)
  const text = 'héllo, wörld € 😀'
  const bytes = Buffer.byteLength(text, 'utf8')
  t.true(bytes > text.length)
  t.is(shm.write(text, 5), bytes)
  t.is(shm.read(5, bytes).toString('utf8'), text)
  t.true(shm.read(5, bytes).equals(Buffer.from(text, 'utf8')))
  t.throws(() => shm.write('€'.repeat(22)), range, '66 bytes do not fit in 64')
  t.is(shm.write('€'.repeat(21), 1), 63)
})

test('write takes TypedArrays and DataViews by their bytes, honouring byteOffset', (t) => {
  const shm = scratch(t, 64)
  const view = shm.attach()
  const words = new Uint32Array([0x04030201, 0x08070605])
  t.is(shm.write(words), 8)
  t.true(view.subarray(0, 8).equals(Buffer.from(words.buffer)))

  const doubles = new Float64Array([Math.PI])
  t.is(shm.write(doubles, 8), 8)
  t.is(new DataView(view.buffer).getFloat64(8, true), Math.PI)

  const backing = new Uint8Array([10, 11, 12, 13, 14, 15, 16, 17])
  t.is(shm.write(new DataView(backing.buffer, 2, 3), 20), 3)
  t.deepEqual([...view.subarray(19, 24)], [0, 12, 13, 14, 0])
  t.is(shm.write(backing.subarray(5), 30), 3)
  t.deepEqual([...view.subarray(30, 34)], [15, 16, 17, 0])
  t.is(shm.write(new BigInt64Array([-1n]), 40), 8)
  t.true(view.subarray(40, 48).every((byte) => byte === 0xff))
})

test('write out of bounds throws and writes nothing', (t) => {
  const shm = scratch(t, 64)
  const view = shm.attach()
  view.fill(0x33)
  t.throws(() => shm.write(Buffer.alloc(65)), range)
  t.throws(() => shm.write(Buffer.alloc(2), 63), range)
  t.throws(() => shm.write('x', 65), range)
  t.throws(() => shm.write(Buffer.alloc(0), 65), range)
  t.throws(() => shm.write('x', -1), range)
  t.throws(() => shm.write('x', 1.5), range)
  t.true(view.every((byte) => byte === 0x33), 'the segment is unchanged')
  t.throws(() => shm.write('x', '1' as never), type)
  for (const source of [42, null, undefined, [1, 2], new ArrayBuffer(4), { length: 1 }]) {
    const error = t.throws(() => shm.write(source as never), type)
    t.true(error?.message.includes('"source"'), error?.message)
  }
  t.true(view.every((byte) => byte === 0x33))
})

test('copies and views are the same memory: write shows in views, view writes show in read', (t) => {
  const shm = scratch(t, 4096)
  const first = shm.attach()
  const second = shm.attach()
  shm.write('through write', 100)
  t.is(first.toString('utf8', 100, 113), 'through write')
  t.is(second.toString('utf8', 100, 113), 'through write')
  second.write('through a view', 200)
  t.is(shm.read(200, 14).toString(), 'through a view')
  t.is(first.toString('utf8', 200, 214), 'through a view')
})

// The source or target may be a view of the very segment being copied: the
// result must be as if the bytes were copied out first (memmove), even though
// the view and the copier are different mappings of the same pages.
const overlaps: Array<[size: number, length: number, from: number, to: number]> = [
  [4096, 100, 0, 50],
  [4096, 100, 50, 0],
  [1 << 20, 65536, 0, 1],
  [1 << 20, 65536, 1, 0],
  [1 << 20, 500000, 0, 4096],
  [1 << 20, 500000, 4096, 0],
  [1 << 20, 300000, 0, 7],
  [1 << 20, 1 << 19, 0, 1 << 19],
]

test('write from an overlapping view of the same segment behaves like memmove', (t) => {
  for (const [size, length, from, to] of overlaps) {
    const shm = scratch(t, size)
    const view = shm.attach()
    pattern(view)
    const expected = Buffer.from(view.subarray(from, from + length))
    t.is(shm.write(view.subarray(from, from + length), to), length)
    t.true(view.subarray(to, to + length).equals(expected), `${length} bytes ${from} -> ${to}`)
  }
})

test('write from an overlapping view through another handle of the same segment behaves like memmove', (t) => {
  for (const [size, length, from, to] of overlaps) {
    const shm = scratch(t, size)
    const other = SharedMemory.open(shm.name, 0)
    t.teardown(() => other.close())
    const view = other.attach()
    pattern(view)
    const expected = Buffer.from(view.subarray(from, from + length))
    t.is(shm.write(view.subarray(from, from + length), to), length)
    t.true(view.subarray(to, to + length).equals(expected), `${length} bytes ${from} -> ${to}`)
  }
})

test('readInto an overlapping view of the same segment behaves like memmove', (t) => {
  for (const [size, length, from, to] of overlaps) {
    const shm = scratch(t, size)
    const view = shm.attach()
    pattern(view)
    const expected = Buffer.from(view.subarray(from, from + length))
    t.is(shm.readInto(view.subarray(to, to + length), from), length)
    t.true(view.subarray(to, to + length).equals(expected), `${length} bytes ${from} -> ${to}`)
  }
})

test('once a handle copies through a view of its own, copies from and into views of the segment still behave like memmove', (t) => {
  for (const [size, length, from, to] of overlaps) {
    const shm = scratch(t, size)
    // Two copies with private buffers: from now on the handle copies small
    // segments through a view of its own, without crossing into the addon.
    t.is(shm.write(Buffer.from([1]), 0), 1)
    t.is(shm.read(0, 1)[0], 1)
    const view = shm.attach()
    pattern(view)
    const written = Buffer.from(view.subarray(from, from + length))
    t.is(shm.write(view.subarray(from, from + length), to), length)
    t.true(view.subarray(to, to + length).equals(written), `write ${length} bytes ${from} -> ${to}`)
    pattern(view)
    const read = Buffer.from(view.subarray(from, from + length))
    t.is(shm.readInto(view.subarray(to, to + length), from), length)
    t.true(view.subarray(to, to + length).equals(read), `readInto ${length} bytes ${from} -> ${to}`)
    // Private buffers take the short way and see the same bytes.
    const copy = Buffer.alloc(length)
    t.is(shm.readInto(copy, to), length)
    t.true(copy.equals(read))
    t.true(shm.read(to, length).equals(read))
  }
})

test('a copy through the copy view that meets a segment shrunk by another program says ERR_SHM_SIZE, as the addon does', (t) => {
  for (const call of ['read', 'readInto', 'write'] as const) {
    const shm = scratch(t, 8192)
    shm.write(Buffer.alloc(8192, 7), 0)
    t.is(shm.read(0, 1)[0], 7) // the second copy: the copy view exists now
    truncateSync(`/dev/shm${shm.osName}`, 4096)
    const size = { code: 'ERR_SHM_SIZE' }
    if (call === 'read') t.throws(() => shm.read(4096, 8), size, call)
    if (call === 'readInto') t.throws(() => shm.readInto(Buffer.alloc(16), 4090), size, call)
    if (call === 'write') t.throws(() => shm.write(Buffer.from('hi'), 5000), size, call)
  }
})
