// Open options: the size rules, mode (and the umask), readOnly, and
// argument errors.

import { existsSync, readFileSync, statSync } from 'node:fs'

import test from 'ava'

import { SharedMemory, SharedMutex, wait, waitAsync } from '../index'
import { bufferLength, deleteAtEnd, runFixture, scratch, uniqueName } from './helpers'

/** This process's umask, read without process.umask()'s deprecated getter. */
function currentUmask(): number {
  const line = readFileSync('/proc/self/status', 'utf8')
    .split('\n')
    .find((entry) => entry.startsWith('Umask:'))
  if (!line) throw new Error('no Umask line in /proc/self/status')
  return Number.parseInt(line.split(/\s+/)[1], 8)
}

const modeOf = (shm: SharedMemory) => statSync(`/dev/shm${shm.osName}`).mode & 0o777

test('size 0 opens an existing segment at its current size', (t) => {
  const shm = scratch(t, 12345)
  const opened = SharedMemory.open(shm.name, 0)
  t.teardown(() => opened.close())
  t.is(opened.size, 12345)
  t.is(opened.attach().length, 12345)
  t.is(opened.read().length, 12345)
})

test('a size larger than the segment fails with ERR_SHM_SIZE', (t) => {
  const shm = scratch(t, 4096)
  for (const size of [4097, 8192, 2 ** 40]) {
    const error = t.throws(() => SharedMemory.open(shm.name, size), { code: 'ERR_SHM_SIZE', instanceOf: Error })
    t.true(error?.message.includes('4096') && error.message.includes(String(size)), error?.message)
    t.true(error?.message.includes(shm.osName), error?.message)
    t.throws(() => SharedMemory.open(shm.name, size, { readOnly: true }), { code: 'ERR_SHM_SIZE' })
  }
  t.is(statSync(`/dev/shm${shm.osName}`).size, 4096, 'a failed open does not resize')
})

test('a smaller size maps only that many bytes and leaves the rest alone', (t) => {
  const shm = scratch(t, 8192)
  const whole = shm.attach()
  whole.fill(0x5a)
  const part = SharedMemory.open(shm.name, 100)
  t.teardown(() => part.close())
  t.is(part.size, 100)
  const view = part.attach()
  t.is(view.length, 100)
  t.is(view.buffer.byteLength, bufferLength(100))
  t.is(part.read().length, 100)
  t.throws(() => part.read(0, 101), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => part.read(101), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => part.write(Buffer.alloc(101)), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => part.write('x', 100), { code: 'ERR_OUT_OF_RANGE' })
  view.fill(0x01)
  t.is(part.write(Buffer.from([2]), 99), 1)
  t.true(whole.subarray(0, 99).every((byte) => byte === 0x01))
  t.is(whole[99], 2)
  t.true(whole.subarray(100).every((byte) => byte === 0x5a), 'bytes past the smaller size are untouched')
  t.is(statSync(`/dev/shm${shm.osName}`).size, 8192)
})

test('invalid sizes are ERR_OUT_OF_RANGE or ERR_INVALID_ARG_TYPE, whether creating or opening', (t) => {
  const name = uniqueName('bad-size')
  deleteAtEnd(t, name)
  for (const create of [false, true]) {
    for (const size of [Number.NaN, -1, 1.5, 2 ** 53, Number.POSITIVE_INFINITY, -0.5]) {
      const error = t.throws(() => SharedMemory.open(name, size, { create }), {
        code: 'ERR_OUT_OF_RANGE',
        instanceOf: RangeError,
      })
      t.true(error?.message.includes('"size"'), error?.message)
    }
    for (const size of ['5', null, undefined, 5n, {}, [1]]) {
      const error = t.throws(() => SharedMemory.open(name, size as never, { create }), {
        code: 'ERR_INVALID_ARG_TYPE',
        instanceOf: TypeError,
      })
      t.true(error?.message.includes('"size"'), error?.message)
    }
  }
  t.throws(() => SharedMemory.open(name, 0, { create: true }), { code: 'ERR_OUT_OF_RANGE', instanceOf: RangeError })
  t.throws(() => SharedMemory.open(name, 0, { create: true, exclusive: true }), { code: 'ERR_OUT_OF_RANGE' })
  t.false(existsSync(`/dev/shm/${name}`), 'nothing was created')
})

test('create with size 0 is ERR_OUT_OF_RANGE even when the segment exists', (t) => {
  const shm = scratch(t, 64)
  t.throws(() => SharedMemory.open(shm.name, 0, { create: true }), { code: 'ERR_OUT_OF_RANGE', instanceOf: RangeError })
})

test('exclusive without create is ERR_INVALID_ARG_VALUE', (t) => {
  const shm = scratch(t, 64)
  const error = t.throws(() => SharedMemory.open(shm.name, 0, { exclusive: true }), {
    code: 'ERR_INVALID_ARG_VALUE',
    instanceOf: TypeError,
  })
  t.true(error?.message.includes('exclusive'), error?.message)
  t.throws(() => SharedMemory.open(uniqueName('never'), 64, { exclusive: true, create: false }), {
    code: 'ERR_INVALID_ARG_VALUE',
  })
})

test('options of the wrong type are ERR_INVALID_ARG_TYPE or ERR_OUT_OF_RANGE', (t) => {
  const name = uniqueName('bad-options')
  deleteAtEnd(t, name)
  const type = { code: 'ERR_INVALID_ARG_TYPE', instanceOf: TypeError }
  for (const options of [null, 'create', 5, true]) {
    t.throws(() => SharedMemory.open(name, 64, options as never), type)
  }
  for (const key of ['create', 'exclusive', 'readOnly', 'reserve', 'global']) {
    for (const value of [1, 'yes', null]) {
      const error = t.throws(() => SharedMemory.open(name, 64, { create: true, [key]: value }), type)
      t.true(error?.message.includes(`options.${key}`), error?.message)
    }
  }
  t.throws(() => SharedMemory.open(name, 64, { create: true, mode: '600' as never }), type)
  for (const mode of [-1, 0o1000, 1.5, Number.NaN]) {
    const error = t.throws(() => SharedMemory.open(name, 64, { create: true, mode }), {
      code: 'ERR_OUT_OF_RANGE',
      instanceOf: RangeError,
    })
    t.true(error?.message.includes('options.mode'), error?.message)
  }
  t.throws(() => SharedMemory.open(name, 64).attach(), { code: 'ENOENT' })
  t.false(existsSync(`/dev/shm/${name}`), 'nothing was created')
})

test('mode sets the permission bits of a created segment, default 0o600, masked by the umask', (t) => {
  const umask = currentUmask()
  t.is(modeOf(scratch(t, 16)), 0o600 & ~umask)
  for (const mode of [0o600, 0o640, 0o644, 0o400, 0o000, 0o666]) {
    t.is(modeOf(scratch(t, 16, { mode })), mode & ~umask, `mode ${mode.toString(8)}`)
  }
})

test('the umask masks mode as it does for fs.open (each umask in a child of its own)', async (t) => {
  const cases: Array<[umask: string, mode: string, expected: string]> = [
    ['077', '666', '600'],
    ['022', '666', '644'],
    ['000', '666', '666'],
    ['027', '777', '750'],
    ['000', '600', '600'],
  ]
  for (const [umask, mode, expected] of cases) {
    const name = uniqueName('umask')
    deleteAtEnd(t, name)
    const child = await runFixture('create-with-umask.js', [name, umask, mode])
    t.is(child.code, 0, child.stderr)
    t.is(child.stdout, expected, `umask ${umask}, mode ${mode}`)
    t.is((statSync(`/dev/shm/${name}`).mode & 0o777).toString(8), expected)
  }
})

test('mode is ignored when opening an existing segment', (t) => {
  const shm = scratch(t, 16, { mode: 0o600 })
  const before = modeOf(shm)
  const opened = SharedMemory.open(shm.name, 16, { create: true, mode: 0o666 })
  t.teardown(() => opened.close())
  const plain = SharedMemory.open(shm.name, 0, { mode: 0o644 })
  t.teardown(() => plain.close())
  t.is(modeOf(shm), before)
})

test('readOnly: write throws ERR_SHM_READ_ONLY, reads work, and every attach is read-only', (t) => {
  const shm = scratch(t, 8192)
  shm.write('original')
  const readOnly = SharedMemory.open(shm.name, 0, { readOnly: true })
  t.teardown(() => readOnly.close())
  t.true(readOnly.readOnly)
  t.is(readOnly.size, 8192)

  for (const source of ['x', Buffer.alloc(1), new Uint32Array(1), '']) {
    const error = t.throws(() => readOnly.write(source as never), { code: 'ERR_SHM_READ_ONLY', instanceOf: Error })
    t.true(error?.message.includes(shm.osName), error?.message)
  }
  t.is(readOnly.read(0, 8).toString(), 'original')
  const target = Buffer.alloc(8)
  t.is(readOnly.readInto(target), 8)
  t.is(target.toString(), 'original')

  for (const view of [readOnly.attach(), readOnly.attach({ readOnly: false }), shm.attach({ readOnly: true })]) {
    t.is(view.toString('utf8', 0, 8), 'original', 'a read-only view sees the segment')
    view.write('private!', 0)
    view[4096] = 0xff
    t.is(view.toString('utf8', 0, 8), 'private!', 'a write through it stays in this view')
    t.is(shm.read(0, 8).toString(), 'original', 'the segment is unchanged')
    t.is(shm.read(4096, 1)[0], 0)
  }
})

test('a read-only view keeps seeing other writers on pages it has not written', (t) => {
  const shm = scratch(t, 8192)
  const readOnly = SharedMemory.open(shm.name, 0, { readOnly: true })
  t.teardown(() => readOnly.close())
  const view = readOnly.attach()
  t.is(view[0], 0)
  shm.write('live', 0)
  const writable = shm.attach()
  writable.write('also live', 4096)
  t.is(view.toString('utf8', 0, 4), 'live')
  t.is(view.toString('utf8', 4096, 4105), 'also live')
})

test('create with readOnly makes the segment, then holds it read-only', (t) => {
  const name = uniqueName('create-read-only')
  deleteAtEnd(t, name)
  const shm = SharedMemory.open(name, 100, { create: true, readOnly: true })
  t.teardown(() => shm.close())
  t.true(shm.readOnly)
  t.is(shm.size, 100)
  t.is(statSync(`/dev/shm/${name}`).size, 100)
  t.true(shm.read().every((byte) => byte === 0))
  t.throws(() => shm.write('x'), { code: 'ERR_SHM_READ_ONLY' })
})

test('attach options of the wrong type are ERR_INVALID_ARG_TYPE', (t) => {
  const shm = scratch(t, 64)
  for (const options of [null, 'readOnly', 1]) {
    t.throws(() => shm.attach(options as never), { code: 'ERR_INVALID_ARG_TYPE', instanceOf: TypeError })
  }
  t.throws(() => shm.attach({ readOnly: 'yes' as never }), { code: 'ERR_INVALID_ARG_TYPE' })
})

test('an unknown option key is ERR_INVALID_ARG_VALUE naming it, in every call that takes options', (t) => {
  const name = uniqueName('unknown-option')
  const unknown = (key: string) => ({ code: 'ERR_INVALID_ARG_VALUE', instanceOf: TypeError, message: new RegExp(`'options\\.${key}' is not a known option`) })
  // The typo that used to open read-write.
  t.throws(() => SharedMemory.open(name, 64, { create: true, readonly: true } as never), unknown('readonly'))
  t.throws(() => SharedMemory.delete(name, { globl: true } as never), unknown('globl'))
  t.throws(() => SharedMemory.osNameOf(name, { create: true } as never), unknown('create'))
  t.throws(() => SharedMemory.open(name, 0), { code: 'ENOENT' }, 'nothing was created')
  const shm = scratch(t, 64)
  t.throws(() => shm.attach({ readonly: true } as never), unknown('readonly'))
  const words = new Int32Array(shm.attach().buffer)
  t.throws(() => wait(words, 0, 1, 0, { spinn: false } as never), unknown('spinn'))
  t.throws(() => waitAsync(words, 0, 0, 10, { reff: true } as never), unknown('reff'))
  t.throws(() => new SharedMutex(words, 8, { spin: true, timeout: 5 } as never), unknown('timeout'))
  const mutex = new SharedMutex(words, 8)
  t.throws(() => mutex.lockAsync(10, { signl: undefined } as never), unknown('signl'))
  // Known keys with undefined values stay fine.
  t.notThrows(() => shm.attach({ readOnly: undefined }))
})
