// Resource limits surface as coded errors, in children that survive them
// and clean up (fixtures/limits.mjs).

import { readdirSync } from 'node:fs'
import { join } from 'node:path'

import test from 'ava'

import { deleteAtEnd, IN_HEAP, jsonLines, runNode, runProcess, uniqueName } from './helpers'

const FIXTURE = join(__dirname, 'fixtures', 'limits.mjs')

test('too many open segments is EMFILE, and closing them gives the descriptors back', async (t) => {
  const name = uniqueName('emfile')
  deleteAtEnd(t, name)
  deleteAtEnd(t, `${name}-2`)
  const child = await runProcess('sh', ['-c', 'ulimit -n 64 && exec "$0" "$@"', process.execPath, FIXTURE, 'emfile', name])
  t.is(child.signal, null, child.stderr)
  t.is(child.code, 0, child.stderr)
  const [result] = jsonLines<{ opened: number; failure: Record<string, unknown>; create: Record<string, unknown>; text: string }>(child.stdout)
  t.true(result.opened > 10 && result.opened < 64, `opened ${result.opened}`)
  t.like(result.failure, { code: 'EMFILE', errno: -24, syscall: 'shm_open', message: `EMFILE: too many open files, shm_open '/${name}'` })
  t.like(result.create, { code: 'EMFILE', errno: -24 })
  t.is(result.text, 'still works')
  t.false(readdirSync('/dev/shm').some((entry) => entry.startsWith(name)))
})

test('no address space left is ENOMEM from attach, read and write, and they work again with room', async (t) => {
  const name = uniqueName('enomem')
  deleteAtEnd(t, name)
  deleteAtEnd(t, `${name}-huge`)
  const child = await runNode([FIXTURE, 'address-space', name])
  t.is(child.signal, null, child.stderr)
  t.is(child.code, 0, child.stderr)
  const [result] = jsonLines<Record<string, Record<string, unknown> | number>>(child.stdout)
  const enomem = { code: 'ENOMEM', errno: -12, syscall: 'mmap' }
  t.like(result.hugeRead, { ...enomem, message: `ENOMEM: cannot allocate memory, mmap '/${name}-huge'` })
  t.like(result.attach, enomem)
  t.like(result.write, enomem)
  t.is(result.after, 7)
})

test('attaching toward vm.max_map_count is ENOMEM while the runtime still has room, and the process detaches everything and exits cleanly', async (t) => {
  const name = uniqueName('maps')
  deleteAtEnd(t, name)
  // --single-threaded: V8's background threads (concurrent GC, compiling)
  // allocate whenever they like, and at the map limit every allocation that
  // needs a new mapping fails: with them, about half the runs under load
  // died in V8 ("Zone Allocation failed", std::bad_alloc); without, none.
  const child = await runNode(['--expose-gc', '--single-threaded', FIXTURE, 'map-count', name])
  t.is(child.signal, null, child.stderr)
  t.is(child.code, 0, child.stderr)
  const [result] = jsonLines<{ limit: number; attached: number; failure: Record<string, unknown>; seen: number; maps: number; shmMaps: number; ballast: number }>(
    child.stdout,
  )
  t.like(result.failure, { code: 'ENOMEM', errno: -12, syscall: 'mmap' })
  // The library stops at its budget (all but a sixteenth of the limit, kept
  // for V8's own mappings), counting its own mappings: the fixture's views,
  // its 256 spare views and the handle's copier.
  const budget = result.limit - Math.floor(result.limit / 16)
  if (IN_HEAP) {
    // Each in-heap view holds a WebAssembly memory that reserves 8 to 10 GiB:
    // the 128 TiB of a 47-bit address space runs out first.
    t.true(result.attached > 10_000 && result.attached <= 16_384, `${result.attached} in-heap views`)
  } else {
    t.true(result.attached > budget - 2000 && result.attached <= budget, `${result.attached} of a budget of ${budget}`)
  }
  t.is(result.seen, 1, 'views of one segment share their bytes')
  if (IN_HEAP) {
    // Detach unmaps the segment at once; the WebAssembly memories under the
    // views (still referenced by the fixture) go when the collector frees them.
    t.true(result.shmMaps < 2000, `${result.shmMaps} segment mappings left after detaching`)
  } else {
    t.true(result.maps < 2000, `${result.maps} mappings left after detaching`)
  }
  t.is(result.ballast, 256)
})
