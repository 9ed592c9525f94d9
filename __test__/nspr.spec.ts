// NSPR-shaped functions: same behaviour as the class, NSPR's shape.

import { existsSync, readFileSync, statSync } from 'node:fs'

import test from 'ava'

import {
  SHM_CREATE,
  SHM_EXCL,
  SHM_READONLY,
  SharedMemory,
  attachSharedMemory,
  closeSharedMemory,
  deleteSharedMemory,
  detachSharedMemory,
  openSharedMemory,
} from '../index'
import { assertDetached, deleteAtEnd, scratch, uniqueName } from './helpers'

const umask = () => Number.parseInt(/^Umask:\s+(\d+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))![1], 8)

test('the constants have NSPR values', (t) => {
  t.is(SHM_CREATE, 0x1)
  t.is(SHM_EXCL, 0x2)
  t.is(SHM_READONLY, 0x1)
})

test('open, attach, detach, close, delete: the PR_*SharedMemory sequence', (t) => {
  const name = uniqueName('nspr')
  deleteAtEnd(t, name)
  const shm = openSharedMemory(name, 4096, SHM_CREATE | SHM_EXCL, 0o600)
  t.teardown(() => shm.close())
  t.true(shm instanceof SharedMemory)
  t.is(shm.size, 4096)
  t.is(statSync(`/dev/shm/${name}`).size, 4096)
  const view = attachSharedMemory(shm)
  t.true(Buffer.isBuffer(view))
  t.is(view.length, 4096)
  t.true(view.every((byte) => byte === 0))
  view.write('nspr', 0)

  const reader = openSharedMemory(name, 0)
  t.teardown(() => reader.close())
  t.is(reader.size, 4096)
  const seen = attachSharedMemory(reader, SHM_READONLY)
  t.is(seen.toString('utf8', 0, 4), 'nspr')

  detachSharedMemory(shm, view)
  assertDetached(t, view)
  t.throws(() => detachSharedMemory(shm, view), { code: 'ERR_SHM_NOT_ATTACHED' })
  closeSharedMemory(shm)
  t.true(shm.closed)
  t.notThrows(() => closeSharedMemory(shm), 'closing twice does nothing')
  t.throws(() => attachSharedMemory(shm), { code: 'ERR_SHM_CLOSED' })

  deleteSharedMemory(name)
  t.false(existsSync(`/dev/shm/${name}`))
  t.is(seen.toString('utf8', 0, 4), 'nspr', 'an open handle keeps its data after delete')
  t.throws(() => openSharedMemory(name, 0), { code: 'ENOENT' })
  const again = t.throws<NodeJS.ErrnoException>(() => deleteSharedMemory(name), { code: 'ENOENT' })
  t.is(again?.syscall, 'shm_unlink')
})

test('openSharedMemory flags: 0 opens, SHM_CREATE opens or creates, SHM_EXCL refuses an existing one', (t) => {
  const name = uniqueName('nspr-flags')
  deleteAtEnd(t, name)
  t.throws(() => openSharedMemory(name, 64), { code: 'ENOENT' })
  t.throws(() => openSharedMemory(name, 64, 0), { code: 'ENOENT' })
  const created = openSharedMemory(name, 64, SHM_CREATE)
  t.teardown(() => created.close())
  created.write('kept')
  const reopened = openSharedMemory(name, 64, SHM_CREATE)
  t.teardown(() => reopened.close())
  t.is(reopened.read(0, 4).toString(), 'kept')
  const error = t.throws<NodeJS.ErrnoException>(() => openSharedMemory(name, 64, SHM_CREATE | SHM_EXCL), {
    code: 'EEXIST',
  })
  t.is(error?.syscall, 'shm_open')
  t.throws(() => openSharedMemory(name, 65), { code: 'ERR_SHM_SIZE' })
  t.throws(() => openSharedMemory(name, 0, SHM_EXCL), { code: 'ERR_INVALID_ARG_VALUE', instanceOf: TypeError })
  t.throws(() => openSharedMemory(name, 0, SHM_CREATE), { code: 'ERR_OUT_OF_RANGE', instanceOf: RangeError })
})

test('openSharedMemory mode defaults to 0o600 and is masked by the umask', (t) => {
  const mask = umask()
  for (const mode of [undefined, 0o640, 0o444]) {
    const name = uniqueName('nspr-mode')
    deleteAtEnd(t, name)
    const shm = openSharedMemory(name, 16, SHM_CREATE | SHM_EXCL, mode)
    t.teardown(() => shm.close())
    t.is(statSync(`/dev/shm/${name}`).mode & 0o777, (mode ?? 0o600) & ~mask)
  }
  const name = uniqueName('nspr-mode')
  t.throws(() => openSharedMemory(name, 16, SHM_CREATE, 0o1000), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => openSharedMemory(name, 16, SHM_CREATE, '600' as never), { code: 'ERR_INVALID_ARG_TYPE' })
})

test('attachSharedMemory with SHM_READONLY gives a view whose writes never reach the segment', (t) => {
  const shm = scratch(t, 64)
  shm.write('segment')
  const view = attachSharedMemory(shm, SHM_READONLY)
  t.is(view.toString('utf8', 0, 7), 'segment')
  view.write('private')
  t.is(view.toString('utf8', 0, 7), 'private')
  t.is(shm.read(0, 7).toString(), 'segment')
  detachSharedMemory(shm, view)
  assertDetached(t, view)
})

test('unknown flag bits are ERR_INVALID_ARG_VALUE; flags that are no integer are rejected too', (t) => {
  const name = uniqueName('nspr-bad-flags')
  const shm = scratch(t, 64)
  const value = { code: 'ERR_INVALID_ARG_VALUE', instanceOf: TypeError }
  for (const flags of [0x4, 0x8, 0x10, 0x80000000, SHM_CREATE | 0x100]) {
    const error = t.throws(() => openSharedMemory(name, 64, flags), value, `open flags ${flags}`)
    t.true(error?.message.includes("'flags'"), error?.message)
  }
  for (const flags of [0x2, 0x4, 0x3, 0x80000000]) {
    t.throws(() => attachSharedMemory(shm, flags), value, `attach flags ${flags}`)
  }
  for (const flags of [-1, 1.5, 2 ** 32, Number.NaN]) {
    t.throws(() => openSharedMemory(name, 64, flags), { code: 'ERR_OUT_OF_RANGE', instanceOf: RangeError })
    t.throws(() => attachSharedMemory(shm, flags), { code: 'ERR_OUT_OF_RANGE', instanceOf: RangeError })
  }
  t.throws(() => openSharedMemory(name, 64, '1' as never), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => attachSharedMemory(shm, true as never), { code: 'ERR_INVALID_ARG_TYPE' })
  t.false(existsSync(`/dev/shm/${name}`), 'nothing was created')
})

test('the handle argument must be a SharedMemory: ERR_INVALID_ARG_TYPE', (t) => {
  const shm = scratch(t, 64)
  const view = shm.attach()
  const type = { code: 'ERR_INVALID_ARG_TYPE', instanceOf: TypeError }
  for (const handle of [null, undefined, {}, 'name', view]) {
    t.throws(() => attachSharedMemory(handle as never), type)
    t.throws(() => detachSharedMemory(handle as never, view), type)
    t.throws(() => closeSharedMemory(handle as never), type)
  }
  t.is(view.length, 64, 'nothing was detached')
  t.throws(() => detachSharedMemory(shm, Buffer.alloc(64)), { code: 'ERR_SHM_NOT_ATTACHED' })
  t.throws(() => deleteSharedMemory(''), { code: 'ERR_INVALID_ARG_VALUE' })
  t.throws(() => openSharedMemory('..', 64, SHM_CREATE), { code: 'ERR_INVALID_ARG_VALUE' })
})
