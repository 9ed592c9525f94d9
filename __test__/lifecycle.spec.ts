// Lifecycle: create, exclusive, open, open-or-create, delete, reopen,
// close, dispose, properties.

import { existsSync, statSync } from 'node:fs'
import { constants } from 'node:os'

import test from 'ava'

import { SharedMemory } from '../index'
import { assertDetached, deleteAtEnd, scratch, uniqueName } from './helpers'

const shmPath = (shm: SharedMemory) => `/dev/shm${shm.osName}`

test('create makes a zero-filled segment of exactly `size` bytes', (t) => {
  for (const size of [1, 100, 4095, 4096, 4097, 1 << 20]) {
    const shm = scratch(t, size)
    t.is(shm.size, size)
    t.is(statSync(shmPath(shm)).size, size, 'the file in /dev/shm has the exact size')
    const copy = shm.read()
    t.is(copy.length, size)
    t.true(copy.every((byte) => byte === 0), `size ${size}: read() sees only zeros`)
    const view = shm.attach()
    t.is(view.length, size)
    t.true(view.every((byte) => byte === 0), `size ${size}: the view sees only zeros`)
  }
})

test('exclusive create of an existing name fails with EEXIST and leaves it intact', (t) => {
  const shm = scratch(t, 64)
  shm.write('keep me')
  const error = t.throws<NodeJS.ErrnoException>(() => SharedMemory.open(shm.name, 64, { create: true, exclusive: true }), {
    code: 'EEXIST',
    instanceOf: Error,
  })
  t.is(error?.errno, -constants.errno.EEXIST)
  t.is(error?.syscall, 'shm_open')
  t.true(error?.message.includes(shm.osName), error?.message)
  t.is(shm.read(0, 7).toString(), 'keep me')
  t.is(statSync(shmPath(shm)).size, 64)
})

test('opening a missing name fails with ENOENT, errno and syscall, and creates nothing', (t) => {
  const name = uniqueName('missing')
  const error = t.throws<NodeJS.ErrnoException>(() => SharedMemory.open(name, 0), { code: 'ENOENT', instanceOf: Error })
  t.is(error?.errno, -constants.errno.ENOENT)
  t.is(error?.syscall, 'shm_open')
  t.true(error?.message.includes(name), error?.message)
  t.throws(() => SharedMemory.open(name, 16), { code: 'ENOENT' })
  t.false(existsSync(`/dev/shm/${name}`))
})

test('open-or-create creates a missing segment, then opens the same one without zeroing it', (t) => {
  const name = uniqueName('open-or-create')
  deleteAtEnd(t, name)
  const first = SharedMemory.open(name, 256, { create: true })
  t.teardown(() => first.close())
  t.is(first.size, 256)
  t.true(first.read().every((byte) => byte === 0))
  first.write('first writer', 10)

  const second = SharedMemory.open(name, 256, { create: true })
  t.teardown(() => second.close())
  t.is(second.size, 256)
  t.is(second.read(10, 12).toString(), 'first writer', 'an existing segment keeps its data')

  const smaller = SharedMemory.open(name, 100, { create: true })
  t.teardown(() => smaller.close())
  t.is(smaller.size, 100)
  t.is(statSync(`/dev/shm/${name}`).size, 256, 'opening never resizes')

  t.throws(() => SharedMemory.open(name, 257, { create: true }), { code: 'ERR_SHM_SIZE' })
})

test('a name with or without its leading slash is the same segment', (t) => {
  const shm = scratch(t, 32)
  shm.write('slash')
  const withSlash = SharedMemory.open(`/${shm.name}`, 0)
  t.teardown(() => withSlash.close())
  t.is(withSlash.osName, shm.osName)
  t.is(withSlash.name, `/${shm.name}`, 'name is kept as given')
  t.is(withSlash.read(0, 5).toString(), 'slash')
  t.throws(() => SharedMemory.open(`/${shm.name}`, 32, { create: true, exclusive: true }), { code: 'EEXIST' })
})

test('delete while attached: handles and views keep working with their data, new opens fail with ENOENT', (t) => {
  const name = uniqueName('delete-attached')
  deleteAtEnd(t, name)
  const shm = SharedMemory.open(name, 8192, { create: true })
  t.teardown(() => shm.close())
  const other = SharedMemory.open(name, 0)
  t.teardown(() => other.close())
  const view = shm.attach()
  const otherView = other.attach()
  view.write('before delete', 0)

  SharedMemory.delete(name)
  t.false(existsSync(`/dev/shm/${name}`))
  const error = t.throws<NodeJS.ErrnoException>(() => SharedMemory.open(name, 0), { code: 'ENOENT' })
  t.is(error?.syscall, 'shm_open')

  t.is(view.toString('utf8', 0, 13), 'before delete')
  t.is(otherView.toString('utf8', 0, 13), 'before delete')
  view.write('after delete', 100)
  t.is(otherView.toString('utf8', 100, 112), 'after delete', 'still one shared segment')
  shm.write('copied in', 200)
  t.is(other.read(200, 9).toString(), 'copied in')
  const fresh = shm.attach()
  t.is(fresh.toString('utf8', 0, 13), 'before delete', 'a handle can still attach after delete')

  const again = t.throws<NodeJS.ErrnoException>(() => SharedMemory.delete(name), { code: 'ENOENT' })
  t.is(again?.errno, -constants.errno.ENOENT)
  t.is(again?.syscall, 'shm_unlink')
  t.true(again?.message.includes(name), again?.message)
})

test('reopen after delete: create makes a new, zero-filled segment apart from the old one', (t) => {
  const name = uniqueName('reopen')
  deleteAtEnd(t, name)
  const old = SharedMemory.open(name, 4096, { create: true, exclusive: true })
  t.teardown(() => old.close())
  const oldView = old.attach()
  oldView.fill(0xee)
  SharedMemory.delete(name)

  const renewed = SharedMemory.open(name, 2048, { create: true, exclusive: true })
  t.teardown(() => renewed.close())
  t.is(renewed.size, 2048)
  t.is(statSync(`/dev/shm/${name}`).size, 2048)
  t.true(renewed.read().every((byte) => byte === 0), 'the new segment is zero-filled')
  const newView = renewed.attach()
  newView.fill(0x11)
  t.true(oldView.every((byte) => byte === 0xee), 'the old segment is untouched by the new one')
  oldView.fill(0x22)
  t.true(renewed.read().every((byte) => byte === 0x11), 'and the new one by the old')
  const opened = SharedMemory.open(name, 0)
  t.teardown(() => opened.close())
  t.is(opened.size, 2048, 'opening by name finds the new segment')
})

test('close twice does nothing the second time', (t) => {
  const shm = scratch(t, 64)
  const view = shm.attach()
  view[0] = 1
  t.false(shm.closed)
  shm.close()
  t.true(shm.closed)
  assertDetached(t, view)
  t.notThrows(() => shm.close())
  t.notThrows(() => shm[Symbol.dispose]())
  t.true(shm.closed)
  t.is(shm.size, 64)
})

test('a closed handle stays closed while later handles take its place, and closing it again closes none of them', (t) => {
  const first = scratch(t, 64)
  first.close()
  const later = Array.from({ length: 8 }, () => SharedMemory.open(first.name, 0))
  t.true(first.closed)
  t.throws(() => first.attach(), { code: 'ERR_SHM_CLOSED' })
  t.throws(() => first.read(), { code: 'ERR_SHM_CLOSED' })
  first.close()
  first[Symbol.dispose]()
  later.forEach((handle, i) => {
    t.false(handle.closed)
    handle.write(String(i), i)
    t.is(handle.attach().toString('utf8', i, i + 1), String(i))
    handle.close()
    t.true(handle.closed)
  })
})

test('every method after close throws ERR_SHM_CLOSED; properties stay readable', (t) => {
  const shm = scratch(t, 64)
  const view = shm.attach()
  shm.close()
  const closed = { code: 'ERR_SHM_CLOSED', instanceOf: Error }
  t.throws(() => shm.attach(), closed)
  t.throws(() => shm.attach({ readOnly: true }), closed)
  t.throws(() => shm.detach(view), closed)
  t.throws(() => shm.detach(Buffer.alloc(8)), closed)
  t.throws(() => shm.read(), closed)
  t.throws(() => shm.read(0, 1), closed)
  t.throws(() => shm.readInto(Buffer.alloc(8)), closed)
  t.throws(() => shm.write('x'), closed)
  t.throws(() => shm.write(Buffer.alloc(64), 0), closed)
  t.true(shm.closed)
  t.is(shm.size, 64)
  t.is(shm.osName, `/${shm.name}`)
  t.false(shm.readOnly)
})

test('a read-only handle after close throws ERR_SHM_CLOSED, not ERR_SHM_READ_ONLY', (t) => {
  const shm = scratch(t, 64)
  const readOnly = SharedMemory.open(shm.name, 0, { readOnly: true })
  readOnly.close()
  t.throws(() => readOnly.write('x'), { code: 'ERR_SHM_CLOSED' })
  t.throws(() => readOnly.read(), { code: 'ERR_SHM_CLOSED' })
})

test('[Symbol.dispose]() closes the handle and detaches its views', (t) => {
  const shm = scratch(t, 64)
  const view = shm.attach()
  view[0] = 1
  shm[Symbol.dispose]()
  t.true(shm.closed)
  assertDetached(t, view)
})

test('`using` closes the handle at the end of its block, also when it throws', (t) => {
  const name = uniqueName('using')
  deleteAtEnd(t, name)
  let kept: SharedMemory | undefined
  let view: Buffer | undefined
  {
    using shm = SharedMemory.open(name, 64, { create: true })
    kept = shm
    view = shm.attach()
    view[0] = 1
    t.false(shm.closed)
  }
  t.true(kept.closed)
  assertDetached(t, view)

  const thrown = t.throws(() => {
    using shm = SharedMemory.open(name, 0)
    kept = shm
    throw new Error('inside the block')
  })
  t.is(thrown?.message, 'inside the block')
  t.true(kept.closed)
  const check = SharedMemory.open(name, 0)
  t.teardown(() => check.close())
  t.is(check.read(0, 1)[0], 1, 'the data outlives the handles')
})

test('properties: name, osName, size, readOnly, closed', (t) => {
  const shm = scratch(t, 1000)
  t.regex(shm.name, /^named-shm-/)
  t.is(shm.osName, `/${shm.name}`)
  t.is(shm.size, 1000)
  t.false(shm.readOnly)
  t.false(shm.closed)

  const readOnly = SharedMemory.open(`/${shm.name}`, 10, { readOnly: true })
  t.teardown(() => readOnly.close())
  t.is(readOnly.name, `/${shm.name}`)
  t.is(readOnly.osName, shm.osName)
  t.is(readOnly.size, 10)
  t.true(readOnly.readOnly)
  t.false(readOnly.closed)
  readOnly.close()
  t.true(readOnly.closed)
})

test('a name with an inner slash maps to a deterministic hashed osName that other programs can use', (t) => {
  const name = `/tmp/app-${uniqueName('hashed')}.shm`
  deleteAtEnd(t, name)
  const shm = SharedMemory.open(name, 64, { create: true })
  t.teardown(() => shm.close())
  t.is(shm.name, name)
  t.regex(shm.osName, /^\/tmp_app-n\.[0-9a-f]{20}$/)
  t.is(shm.osName, SharedMemory.osNameOf(name))
  t.is(SharedMemory.osNameOf(name.slice(1)), shm.osName, 'the leading slash is optional here too')
  t.true(existsSync(shmPath(shm)), 'the segment lives under its osName')
  shm.write('hashed')
  const byOsName = SharedMemory.open(shm.osName, 0)
  t.teardown(() => byOsName.close())
  t.is(byOsName.read(0, 6).toString(), 'hashed', 'its osName opens the same segment')

  // Pinned, as in the Rust unit tests: changing it would strand old segments.
  t.is(SharedMemory.osNameOf('a/b'), '/a_b.c14cddc033f64b9dea80')
  t.not(SharedMemory.osNameOf('//a'), '/a', 'a double slash is an inner slash')
  t.is(SharedMemory.osNameOf('plain'), '/plain')
  t.is(SharedMemory.osNameOf('/plain'), '/plain')
})

test('names up to 255 UTF-8 bytes are used as they are', (t) => {
  const ascii = uniqueName('long').padEnd(255, 'n')
  const base = `${uniqueName('utf8')}-`
  const twoByte = `${base}${'é'.repeat((255 - base.length) >> 1)}`.padEnd(255 - ((255 - base.length) >> 1), 'a')
  for (const name of [ascii, twoByte, `${uniqueName('emoji')}-😀`]) {
    t.true(Buffer.byteLength(name) <= 255)
    deleteAtEnd(t, name)
    const shm = SharedMemory.open(name, 16, { create: true, exclusive: true })
    t.is(shm.osName, `/${name}`)
    t.true(existsSync(shmPath(shm)))
    shm.close()
    SharedMemory.delete(name)
    t.false(existsSync(shmPath(shm)))
  }
})

test('names that break the naming rules are ERR_INVALID_ARG_VALUE everywhere a name is taken', (t) => {
  // The last two are longer than the binding reads in one go (1 KiB), one
  // with 4-byte characters across that boundary.
  const invalid = ['', '/', '.', '..', '/.', '/..', 'a\0b', 'n'.repeat(256), 'é'.repeat(128)]
  invalid.push(`${'n'.repeat(1019)}${'😀'.repeat(4)}`, 'n'.repeat(5000))
  for (const name of invalid) {
    const expectation = { code: 'ERR_INVALID_ARG_VALUE', instanceOf: TypeError }
    const error = t.throws(() => SharedMemory.open(name, 16, { create: true }), expectation)
    t.true(error?.message.includes("'name'"), error?.message)
    t.throws(() => SharedMemory.open(name, 0), expectation)
    t.throws(() => SharedMemory.delete(name), expectation)
    t.throws(() => SharedMemory.osNameOf(name), expectation)
  }
  for (const name of [42, undefined, null, {}, Symbol('x')]) {
    const expectation = { code: 'ERR_INVALID_ARG_TYPE', instanceOf: TypeError }
    t.throws(() => SharedMemory.open(name as never, 16, { create: true }), expectation)
    t.throws(() => SharedMemory.delete(name as never), expectation)
    t.throws(() => SharedMemory.osNameOf(name as never), expectation)
  }
})
