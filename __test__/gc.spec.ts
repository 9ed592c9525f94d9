// No file descriptor or mapping leaks, whether views are
// detached by hand or handles and views are left to the garbage collector.
//
// The counts are per process, so every test here is serial. Each first runs
// its workload once so that V8 and the addon reach a steady state, and takes
// its baseline once the process is quiet (tsx writes its compile cache in the
// background while a spec file loads). The measured run must then bring every
// count back exactly: the segment fds and mappings at once, the totals once
// the garbage collector has run.

import { isDeepStrictEqual } from 'node:util'

import test, { type ExecutionContext } from 'ava'

import { SharedMemory } from '../index'
import {
  collectGarbage,
  deleteAtEnd,
  fdCount,
  IN_HEAP,
  mapsCount,
  reservedGiB,
  scratch,
  shmFdCount,
  shmMapsCount,
  uniqueName,
} from './helpers'

interface Counts {
  fds: number
  maps: number
  shmFds: number
  shmMaps: number
}

/**
 * In-heap, every view also holds a WebAssembly memory, whose address space
 * V8 frees when it collects it; V8's own heap pages come and go with the
 * collector too, so `maps` counts those reservations (in GiB) instead.
 */
function counts(): Counts {
  return { fds: fdCount(), maps: IN_HEAP ? reservedGiB() : mapsCount(), shmFds: shmFdCount(), shmMaps: shmMapsCount() }
}

/** Segment mappings a view adds: in-heap, its overlay and the alias that waits use. */
const MAPS_PER_VIEW = IN_HEAP ? 2 : 1

const pause = () => new Promise((resolve) => setTimeout(resolve, 20))

/** Counts after garbage collection, once two samples in a row agree. */
async function quietCounts(): Promise<Counts> {
  let previous = counts()
  for (let round = 0; round < 50; round += 1) {
    await collectGarbage()
    await pause()
    const current = counts()
    if (isDeepStrictEqual(current, previous)) return current
    previous = current
  }
  return previous
}

/**
 * Outside in-heap mode `maps` is the process's total, which V8's own heap
 * pages move by a few as the collector and the compiler work; a mapping
 * leaked per cycle would move it by thousands. Everything else is exact.
 */
const MAPS_DRIFT = IN_HEAP ? 0 : 8

function settled(current: Counts, expected: Counts): boolean {
  return (
    current.fds === expected.fds &&
    current.shmFds === expected.shmFds &&
    current.shmMaps === expected.shmMaps &&
    Math.abs(current.maps - expected.maps) <= MAPS_DRIFT
  )
}

/**
 * Counts after garbage collection, given background work up to a second to
 * bring them back to `expected`. A leak never comes back, so it still fails.
 */
async function countsBackTo(expected: Counts): Promise<Counts> {
  let current = counts()
  for (let round = 0; round < 50 && !settled(current, expected); round += 1) {
    await collectGarbage()
    await pause()
    current = counts()
  }
  return current
}

/** Asserts that `current` is back to `expected` (see `settled`). */
function assertBackTo(t: ExecutionContext, current: Counts, expected: Counts): void {
  const { maps: currentMaps, ...currentExact } = current
  const { maps: expectedMaps, ...expectedExact } = expected
  t.deepEqual(currentExact, expectedExact)
  t.true(Math.abs(currentMaps - expectedMaps) <= MAPS_DRIFT, `maps ${expectedMaps} -> ${currentMaps}`)
}

/** The counts that a handle's resources show in, right after a synchronous workload. */
const segmentCounts = ({ shmFds, shmMaps }: Counts) => ({ shmFds, shmMaps })

/** attach/detach `cycles` times, detaching through every kind of view. */
function attachDetach(shm: SharedMemory, cycles: number): void {
  for (let i = 0; i < cycles; i += 1) {
    const view = shm.attach(i % 5 === 4 ? { readOnly: true } : undefined)
    view[i % view.length] = i & 0xff
    switch (i % 4) {
      case 0:
        shm.detach(view)
        break
      case 1:
        shm.detach(new Int32Array(view.buffer))
        break
      case 2:
        shm.detach(new DataView(view.buffer, 8))
        break
      default:
        shm.detach(view.buffer as ArrayBuffer)
    }
  }
}

test.serial('10,000 attach/detach cycles leave fdCount() and mapsCount() where they started', async (t) => {
  const shm = scratch(t, 1 << 16)
  attachDetach(shm, 10_000)
  const before = await quietCounts()
  t.is(before.shmFds, 1)
  t.is(before.shmMaps, 0)

  attachDetach(shm, 10_000)
  t.deepEqual(segmentCounts(counts()), segmentCounts(before), 'detach releases each mapping at once')
  assertBackTo(t, await countsBackTo(before), before)
  t.is(shm.read(0, 1)[0], 0, 'the handle still works')
})

test.serial('1,000 open/attach/close cycles leave fdCount() and mapsCount() where they started', async (t) => {
  const shm = scratch(t, 1 << 16)
  const cycle = (times: number) => {
    for (let i = 0; i < times; i += 1) {
      const handle = SharedMemory.open(shm.name, 0)
      handle.attach()[0] = 1
      handle.read(0, 1)
      handle.close()
    }
  }
  cycle(1000)
  const before = await quietCounts()
  cycle(1000)
  t.deepEqual(segmentCounts(counts()), segmentCounts(before), 'close releases the descriptor and every mapping at once')
  assertBackTo(t, await countsBackTo(before), before)
})

/**
 * Opens `handles` handles with views of several kinds and a copier mapping,
 * then drops them all. A function of its own, so no reference survives it.
 */
function openAndDrop(name: string, handles: number): void {
  for (let i = 0; i < handles; i += 1) {
    const shm = SharedMemory.open(name, 0)
    const view = shm.attach()
    view[0] = i
    const ints = new Int32Array(view.buffer)
    Atomics.add(ints, 1, 1)
    shm.attach({ readOnly: true }).subarray(1)
    new DataView(shm.attach().buffer).setUint8(2, 1)
    shm.read(0, 4)
  }
}

test.serial('handles and views dropped without close are released by the garbage collector', async (t) => {
  const name = uniqueName('gc')
  deleteAtEnd(t, name)
  SharedMemory.open(name, 1 << 16, { create: true }).close()
  openAndDrop(name, 50)
  const before = await quietCounts()

  openAndDrop(name, 50)
  const during = counts()
  t.is(during.shmFds, before.shmFds + 50, 'each dropped handle still holds its descriptor until collected')
  // A read-only view maps twice: its copy-on-write pages and the shared
  // read-only alias that wait/notify use (docs/api.md, Synchronization);
  // in-heap every view does.
  t.is(during.shmMaps, before.shmMaps + 50 * (3 * MAPS_PER_VIEW + (IN_HEAP ? 0 : 1) + 1), 'and its three views (one read-only: two mappings) and copier')
  assertBackTo(t, await countsBackTo(before), before)
})

test.serial('a view outliving its dropped handle keeps working, and is released once dropped too', async (t) => {
  const name = uniqueName('gc-view')
  deleteAtEnd(t, name)
  const writer = SharedMemory.open(name, 1 << 16, { create: true })
  t.teardown(() => writer.close())
  writer.write('still here', 0)
  writer.read(0, 10) // a second copy: the writer's copy view exists before counting
  const before = await quietCounts()

  const holder: { view?: Buffer } = {}
  ;(function dropHandle() {
    holder.view = SharedMemory.open(name, 0).attach()
  })()
  await collectGarbage()
  t.is(holder.view?.length, 1 << 16, 'the handle was collected, its view was not')
  t.is(holder.view?.toString('utf8', 0, 10), 'still here')
  writer.write('and live', 20)
  t.is(holder.view?.toString('utf8', 20, 28), 'and live', 'it is still the shared segment')
  t.is(counts().shmFds, before.shmFds, "the collected handle's descriptor is closed")
  t.is(counts().shmMaps, before.shmMaps + MAPS_PER_VIEW, 'the view keeps its mapping')

  holder.view = undefined
  assertBackTo(t, await countsBackTo(before), before)
})

test.serial('views dropped while their handle stays open are released by the garbage collector', async (t) => {
  const shm = scratch(t, 1 << 16)
  const drop = (times: number) => {
    for (let i = 0; i < times; i += 1) new Int32Array(shm.attach().buffer)[0] = i
  }
  drop(20)
  const before = await quietCounts()
  drop(20)
  t.is(counts().shmMaps, before.shmMaps + 20 * MAPS_PER_VIEW)
  assertBackTo(t, await countsBackTo(before), before)
  t.is(new Int32Array(shm.attach().buffer)[0], 19, 'the handle still attaches')
})

test.serial('a closed handle, once collected, leaves the handle that took its place open', async (t) => {
  const shm = scratch(t, 1 << 16)
  const holder: { later?: SharedMemory } = {}
  ;(function closeAndDrop() {
    const dropped = SharedMemory.open(shm.name, 0)
    dropped.attach()
    dropped.close()
    holder.later = SharedMemory.open(shm.name, 0)
  })()
  await collectGarbage()
  await pause()
  await collectGarbage()
  const later = holder.later!
  t.false(later.closed)
  later.write('still open', 0)
  t.is(later.attach().toString('utf8', 0, 10), 'still open')
  later.close()
})
