// A segment larger than one Buffer can hold cannot be attached, and trying
// never crashes (a failed external ArrayBuffer once freed its hint twice).
import { constants } from 'node:buffer'

import test from 'ava'

import { MAX_SIZE, SharedMemory } from '../index'
import { deleteAtEnd, runFixture, uniqueName } from './helpers'

test('attach beyond buffer.constants.MAX_LENGTH throws ERR_OUT_OF_RANGE and the process lives', async (t) => {
  if (constants.MAX_LENGTH + 4096 > MAX_SIZE) {
    // Node >= 22 on 64-bit: a Buffer holds any size open() accepts, so no
    // segment is too large to attach. Node 20 (2^32) runs the real check.
    t.true(constants.MAX_LENGTH >= MAX_SIZE - 4096)
    return
  }
  const name = uniqueName('too-large')
  deleteAtEnd(t, name)
  const child = await runFixture('attach-too-large.js', [name])
  t.is(child.signal, null, child.stderr)
  t.is(child.code, 0, child.stderr)
  // The facade's own check, then the binding's when Node refuses the buffer.
  t.deepEqual(JSON.parse(child.stdout), ['ERR_OUT_OF_RANGE', 'ERR_OUT_OF_RANGE', 'ERR_OUT_OF_RANGE', 'ERR_OUT_OF_RANGE', 'alive'])
  t.throws(() => SharedMemory.open(name, 0), { code: 'ENOENT' })
})
