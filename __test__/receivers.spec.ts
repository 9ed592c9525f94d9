// Methods called on the wrong object and `new SharedMemory()` throw coded
// TypeErrors, as Node's own classes do.

import test from 'ava'

import { ViewRequest, segmentCalls } from '../binding'
import { SharedMemory, SharedMutex } from '../index'
import { scratch } from './helpers'

const methods: Array<[string, (target: unknown) => unknown]> = [
  ['attach', (target) => SharedMemory.prototype.attach.call(target)],
  ['detach', (target) => SharedMemory.prototype.detach.call(target, Buffer.alloc(1))],
  ['read', (target) => SharedMemory.prototype.read.call(target)],
  ['readInto', (target) => SharedMemory.prototype.readInto.call(target, Buffer.alloc(1))],
  ['write', (target) => SharedMemory.prototype.write.call(target, 'x')],
  ['close', (target) => SharedMemory.prototype.close.call(target)],
  ['dispose', (target) => SharedMemory.prototype[Symbol.dispose].call(target)],
  ['closed', (target) => Object.getOwnPropertyDescriptor(SharedMemory.prototype, 'closed')!.get!.call(target)],
]

for (const [method, call] of methods) {
  test(`${method} on something that is not a SharedMemory throws ERR_INVALID_THIS`, (t) => {
    for (const target of [{}, null, undefined, 42, Object.create(SharedMemory.prototype)]) {
      const error = t.throws(() => call(target), { code: 'ERR_INVALID_THIS', instanceOf: TypeError })
      t.is(error?.message, 'Value of "this" must be of type SharedMemory')
    }
  })
}

test('the methods still work on a real handle after those calls', (t) => {
  const shm = scratch(t, 16)
  t.is(shm.write('ok'), 2)
  t.is(shm.read(0, 2).toString(), 'ok')
})

test('the binding called with something that is not a handle: ERR_INVALID_ARG_TYPE; with a number that is no open handle: closed', (t) => {
  const calls = segmentCalls()
  const shm = scratch(t, 16)
  // nativeOf is internal: left out of the published typings.
  const own = (SharedMemory as unknown as { nativeOf(shm: SharedMemory): number }).nativeOf(shm)
  for (const handle of [{}, null, undefined, 'x', 0, -1, 1.5, Number.NaN, 2 ** 53]) {
    t.throws(() => calls.closed(handle as number), { code: 'ERR_INVALID_ARG_TYPE', message: /handle/ })
    t.throws(() => calls.attach(handle as number, false, ViewRequest.Auto), { code: 'ERR_INVALID_ARG_TYPE' })
    t.throws(() => calls.close(handle as number), { code: 'ERR_INVALID_ARG_TYPE' })
  }
  // Later generations of this handle's slot (which it holds open), and the
  // last slot of all (which no process opens 16 Mi handles to reach).
  for (const handle of [own + 2 ** 24, own + 2 ** 30, 2 ** 53 - 1]) {
    t.true(calls.closed(handle))
    t.throws(() => calls.attach(handle, false, ViewRequest.Auto), { code: 'ERR_SHM_CLOSED' })
    t.throws(() => calls.read(handle, 0, 1), { code: 'ERR_SHM_CLOSED' })
    t.notThrows(() => calls.close(handle))
  }
  t.false(shm.closed)
  t.is(shm.write('ok'), 2)
})

test('the binding: a view request must be a ViewRequest; the copy view is an ArrayBuffer, never shared, detached by close()', (t) => {
  const calls = segmentCalls()
  const shm = scratch(t, 4096)
  const handle = (SharedMemory as unknown as { nativeOf(shm: SharedMemory): number }).nativeOf(shm)
  for (const request of [3, -1, 0.5, 'auto', true, undefined]) {
    t.throws(() => calls.attach(handle, false, request as ViewRequest), { code: 'ERR_INVALID_ARG_TYPE', message: /request/ })
  }
  if (SharedMemory.zeroCopy !== 'external') {
    // In-heap views reserve gigabytes: copies cross into the addon instead.
    t.throws(() => calls.attach(handle, false, ViewRequest.Copies), { code: 'ERR_SHM_EXTERNAL_BUFFERS' })
    return
  }
  const copies = calls.attach(handle, false, ViewRequest.Copies)
  t.is(Object.prototype.toString.call(copies), '[object ArrayBuffer]', 'V8 copies into a SharedArrayBuffer element by element')
  t.is((copies as ArrayBuffer).byteLength, 4096)
  shm.write('seen', 0)
  t.is(Buffer.from(copies as ArrayBuffer, 0, 4).toString(), 'seen')
  shm.close()
  t.is((copies as ArrayBuffer).byteLength, 0)
})

test('new SharedMemory() throws ERR_ILLEGAL_CONSTRUCTOR', (t) => {
  const Constructor = SharedMemory as unknown as new (...args: unknown[]) => SharedMemory
  t.throws(() => new Constructor(), { code: 'ERR_ILLEGAL_CONSTRUCTOR', instanceOf: TypeError })
  t.throws(() => new Constructor(Symbol('construct'), 'x', {}), { code: 'ERR_ILLEGAL_CONSTRUCTOR' })
})

const mutexMethods: Array<[string, (target: unknown) => unknown]> = [
  ['lock', (target) => SharedMutex.prototype.lock.call(target)],
  ['lockAsync', (target) => SharedMutex.prototype.lockAsync.call(target)],
  ['tryLock', (target) => SharedMutex.prototype.tryLock.call(target)],
  ['unlock', (target) => SharedMutex.prototype.unlock.call(target)],
]

for (const [method, call] of mutexMethods) {
  test(`SharedMutex ${method} on something that is not a SharedMutex throws ERR_INVALID_THIS`, (t) => {
    for (const target of [{}, null, undefined, 42, Object.create(SharedMutex.prototype)]) {
      const error = t.throws(() => call(target), { code: 'ERR_INVALID_THIS', instanceOf: TypeError })
      t.is(error?.message, 'Value of "this" must be of type SharedMutex')
    }
  })
}

test('name, osName, size and readOnly cannot be assigned or redefined', (t) => {
  const shm = scratch(t, 16)
  const before = { name: shm.name, osName: shm.osName, size: shm.size, readOnly: shm.readOnly }
  for (const key of Object.keys(before)) {
    // A strict-mode assignment throws; Reflect.set says it failed.
    t.false(Reflect.set(shm, key, 4096), key)
    t.throws(() => Object.defineProperty(shm, key, { value: 1 }), { instanceOf: TypeError }, key)
  }
  t.deepEqual({ name: shm.name, osName: shm.osName, size: shm.size, readOnly: shm.readOnly }, before)
  t.throws(() => shm.read(0, 17), { code: 'ERR_OUT_OF_RANGE' })
})
