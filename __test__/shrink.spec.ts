// Another program shrinks a segment we hold: no call of ours and no access
// through a view kills the process; the library's calls say ERR_SHM_SIZE.

import test from 'ava'

import { runFixture, runNode, uniqueName } from './helpers'

test('a segment shrunk by another program: every call says ERR_SHM_SIZE, views read zeros, no SIGBUS', async (t) => {
  const result = await runFixture('shrunk.js', [uniqueName('shrunk')])
  t.is(result.signal, null, result.stderr)
  t.is(result.code, 0, result.stderr)
  const r = JSON.parse(result.stdout)
  t.log(`shrunk by ${r.shrunkBy}`)
  t.is(r.firstPage, 7)
  const size = { code: 'ERR_SHM_SIZE' }
  t.deepEqual(r.read, size)
  // The handle cannot map its 8192 bytes any more.
  t.deepEqual(r.readAgain, size)
  t.deepEqual(r.write, size)
  t.deepEqual(r.readInto, size)
  t.deepEqual(r.attach, size)
  t.is(r.rawRead, 0)
  t.is(r.rawWrite, 9)
  t.is(r.rawReadOnly, 0)
  t.deepEqual(r.wait, size)
  t.deepEqual(r.waitReadOnly, size)
  t.deepEqual(r.notify, size)
  t.deepEqual(r.mutex, size)
  t.deepEqual(r.lock, size)
  // The first page is still the segment's; a handle of the new size uses it.
  t.deepEqual(r.firstPageShared, [1, 8])
  // A view that met the shrink is cut off from wait/notify as a whole.
  t.deepEqual(r.stillWaitsOnANotifiedPage, size)
  t.is(r.otherWait, 'timed-out')
  t.deepEqual(r.pending, size)
})

test('a SIGBUS that is not a fault in our mappings still ends the process, as without the library', async (t) => {
  const script = `
    const { SharedMemory } = require(process.env.NAMED_SHM_ROOT)
    const shm = SharedMemory.open(process.argv[1], 4096, { create: true, exclusive: true })
    shm.attach()[0] = 1
    SharedMemory.delete(process.argv[1])
    process.kill(process.pid, 'SIGBUS')
    setTimeout(() => console.log('survived'), 500)
  `
  const result = await runNode(['-e', script, uniqueName('sigbus')])
  t.is(result.signal, 'SIGBUS')
  t.is(result.stdout, '')
})
