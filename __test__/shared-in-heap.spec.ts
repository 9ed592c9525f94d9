// In-heap views of large segments: the segment mapped over a shared
// WebAssembly memory (its buffer a SharedArrayBuffer, which V8 does not count
// as external memory). Node 20 makes them by itself for segments of 64 MiB
// or more; `inHeap: true` asks for one anywhere. Each never-crash promise
// runs in a child process of this Node and of every Node in NAMED_SHM_NODES
// (.ci/run fetches Node 22 and 24): detach and close, views dropped without
// detach, views posted to a worker, a worker terminated with views live,
// process.exit() with views live, a segment shrunk under a view, 100,000
// attach/detach cycles, the GCs attach causes, and address space running out.

import { existsSync } from 'node:fs'
import { join } from 'node:path'

import test, { type ExecutionContext } from 'ava'

import { PACKAGE_ROOT, jsonLines, runNode, scratch } from './helpers'

const extra = (process.env.NAMED_SHM_NODES ?? '').split(':').filter(Boolean)
const runtimes = [process.execPath, ...extra]
const fixture = join(PACKAGE_ROOT, '__test__', 'fixtures', 'shared-in-heap.js')
const MiB = 1 << 20
const LARGE = 64 * MiB

// Children choose their views as users' processes would (no Electron emulation).
const asUsers = { NAMED_SHM_FORCE_IN_HEAP: '0' }

async function scenario(t: ExecutionContext, node: string, which: string, size = LARGE, ...args: string[]): Promise<Record<string, any>[]> {
  t.true(existsSync(node), `${node} does not exist`)
  const shm = scratch(t, size, { reserve: false })
  const child = await runNode(['--expose-gc', fixture, which, shm.name, ...args], { node, env: asUsers })
  if (child.signal !== null || child.code !== 0) throw new Error(`${which}: ${child.signal ?? child.code}\n${child.stderr}`)
  const lines = jsonLines(child.stdout)
  t.log(lines)
  return lines
}

const major = (version: string) => Number(version.slice(1).split('.')[0])

for (const node of runtimes) {
  test(`a large segment's in-heap view is a SharedArrayBuffer that reads zeros once detached; Node 20 makes one by itself (${node})`, async (t) => {
    const [view, closed] = await scenario(t, node, 'kind')
    t.is(view.kind, 'SharedArrayBuffer')
    t.is(view.byteLength, LARGE)
    t.deepEqual(view.seen, [42, 43], 'an attach() view of the same segment sees the in-heap view write')
    t.is(view.lengthAfter, LARGE, 'a SharedArrayBuffer keeps its length')
    t.true(view.zeros)
    t.is(view.secondDetach, 'ERR_SHM_NOT_ATTACHED')
    t.deepEqual(view.siblingAfter, [42, 0, 43], 'writes through the detached view never reach the segment')
    t.is(view.zeroCopy, 'external')
    t.is(view.autoKind, 'SharedArrayBuffer', 'external SharedArrayBuffers on Node 22.23+/24.16+, in-heap ones on Node 20')
    t.is(view.autoByteLength, LARGE)
    if (major(view.node) === 20) t.is(view.smallKind, 'ArrayBuffer', 'small segments keep external ArrayBuffers on Node 20')
    t.is(closed.autoLengthAfterClose, LARGE)
    t.true(closed.autoZerosAfterClose, 'close() puts zero pages under every view')
  })

  test(`in-heap views of a large segment dropped without detach give back their mappings and reservations (${node})`, async (t) => {
    const [result] = await scenario(t, node, 'dropped')
    t.is(result.seen, 7)
    t.is(result.attached.segmentMaps, result.before.segmentMaps + 32, 'each view maps the segment twice: over the memory, and for waits')
    t.true(result.attached.reservedGiB >= result.before.reservedGiB + 16 * 7, 'each WebAssembly memory reserves 8 to 10 GiB')
    t.true(result.released, `${JSON.stringify(result.after)} left of ${JSON.stringify(result.before)}`)
  })

  test(`a view posted to a worker reads zeros once this thread detaches it, closes the handle or drops its buffer (${node})`, async (t) => {
    const [{ steps }] = await scenario(t, node, 'posted')
    for (const how of ['detach', 'close', 'collect']) {
      t.like(steps[how], { shared: 7, after: 0, length: LARGE, segment: 7 }, how)
    }
  })

  test(`a worker terminated with in-heap views live leaves the buffer it posted readable, as zeros (${node})`, async (t) => {
    const [result] = await scenario(t, node, 'worker')
    t.like(result, { kind: 'SharedArrayBuffer', length: LARGE, before: 5, after: 0 })
  })

  test(`process.exit() with in-heap views live, detached, posted and in a worker exits cleanly (${node})`, async (t) => {
    const [result] = await scenario(t, node, 'exit')
    t.true(result.exiting)
  })

  test(`a large in-heap view of a segment another program shrank reads zeros past the end, no SIGBUS (${node})`, async (t) => {
    const [result] = await scenario(t, node, 'shrunk')
    t.deepEqual([result.first, result.past], [3, 0])
  })

  test(`100,000 in-heap attach/detach cycles of a large segment leave fds, mappings and reservations flat (${node})`, async (t) => {
    const [result] = await scenario(t, node, 'cycles', LARGE, '100000')
    t.true(result.settled, `${JSON.stringify(result.after)} after, ${JSON.stringify(result.before)} before`)
  })

  test(`a handle's next in-heap view reuses the memory of the one it detached; the old view cannot detach the new one (${node})`, async (t) => {
    const [result] = await scenario(t, node, 'reuse')
    t.is(result.whileDetached, 0, 'a detached view reads zeros')
    t.is(result.firstAgain, 5, 'until its handle attaches again over the same memory')
    t.is(result.staleDetach, 'ERR_SHM_NOT_ATTACHED')
    t.is(result.cloneDetach, 'ERR_SHM_NOT_ATTACHED', 'only the buffer attach() gave detaches')
    t.is(result.waited, 'ok', 'a wait on the view over the reused memory is woken by another handle')
    t.is(result.stillAttached, 6, 'the live view was left attached')
    t.is(result.secondDetached, 0)
    t.true(result.perMemory >= 7 * 2 ** 30, 'a WebAssembly memory reserves 8 to 10 GiB')
    t.is(result.keptMore, 7, 'idle handles keep at most 8 memories per thread (one was kept already)')
    t.true(result.released, 'close() gives them back')
  })

  test(`in-heap attach + detach of 256 MiB causes no full GC (${node})`, async (t) => {
    const [result] = await scenario(t, node, 'gc-count', 256 * MiB)
    t.is(result.kind, 'SharedArrayBuffer')
    t.is(result.full, 0)
  })
}

test('live in-heap views until address space runs out: a coded ENOMEM, and the process carries on', async (t) => {
  const [result] = await scenario(t, process.execPath, 'exhaust')
  t.like(result.failure, { code: 'ENOMEM', errno: -12, syscall: 'mmap' })
  t.true(result.live > 1000, `${result.live} live views`)
  t.is(result.seen, 9, 'every live view is the segment')
  t.true(result.attachesAgain, 'after detaching them, attach works again')
})
