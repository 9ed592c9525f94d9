import test from 'ava'

import { SharedMemory } from '../index'

test('a created segment is zero-filled and shared between two handles', (t) => {
  const name = `named-shm-smoke-${process.pid}`
  const writer = SharedMemory.open(name, 64, { create: true, exclusive: true })
  t.teardown(() => {
    writer.close()
    try {
      SharedMemory.delete(name)
    } catch {}
  })
  t.deepEqual([...writer.read()], new Array(64).fill(0))
  const reader = SharedMemory.open(name, 0)
  writer.write('abc', 10)
  t.is(reader.read(10, 3).toString(), 'abc')
  reader.close()
})
