import test from 'ava'

import { runNode, scratch } from './helpers'

test('a segment created here is read and written by another process', async (t) => {
  const shm = scratch(t, 64)
  shm.write('ping', 0)
  const script = `const { SharedMemory } = require(process.env.NAMED_SHM_ROOT)
const shm = SharedMemory.open(${JSON.stringify(shm.name)}, 0)
process.stdout.write(shm.read(0, 4).toString())
shm.write('pong', 4)
shm.close()`
  const child = await runNode(['-e', script])
  t.is(child.code, 0, child.stderr)
  t.is(child.stdout, 'ping')
  t.is(shm.read(4, 4).toString(), 'pong')
})
