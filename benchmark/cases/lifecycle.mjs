// The whole 4 KiB lifecycle per cycle: create a segment by name, map it,
// write 4 KiB, unmap, close, delete. named-shm against the same steps in
// C, Python's multiprocessing.shared_memory and shm-typed-array.
// Microseconds per cycle; ratio = time / C (goal: <= 2, and below Python
// and shm-typed-array).

import { createRequire } from 'node:module'

import { BENCH, ROOT, compileC, runJson, timePerCall, uniqueName } from '../lib/measure.mjs'
import { shmTypedArray } from '../lib/peers.mjs'

const require = createRequire(import.meta.url)
const SIZE = 4096

export const title = '4 KiB lifecycle (create, attach, write, detach, close, delete)'
export const unit = 'µs'
export const better = 'lower'

export async function run({ smoke }) {
  const batch = smoke ? 2 : 100
  const samples = smoke ? 3 : 60
  // The same warm-up for every variant, long enough for V8 to optimize the
  // JavaScript ones (a few thousand cycles), so that the medians compare
  // steady states rather than start-up.
  const warmup = smoke ? 1 : 30
  const source = Buffer.alloc(SIZE, 7)
  const micro = ({ median, p99 }) => ({ median: median / 1000, p99: p99 / 1000 })
  const variants = [
    ['c', 'C (shm_open, ftruncate, mmap, munmap, close, shm_unlink)', true, async () => {
      const name = `/${uniqueName('life-c')}`
      return micro(await runJson(compileC('lifecycle'), [name, String(SIZE), String(batch), String(samples), String(warmup)]))
    }],
    ['named-shm', 'named-shm (open, attach, write, detach, close, delete)', false, () => {
      const { SharedMemory } = require(ROOT)
      const name = uniqueName('life')
      return micro(
        timePerCall(
          () => {
            const shm = SharedMemory.open(name, SIZE, { create: true, exclusive: true })
            const view = shm.attach()
            source.copy(view)
            shm.detach(view)
            shm.close()
            SharedMemory.delete(name)
          },
          { batch, samples, warmup },
        ),
      )
    }],
    ['python', 'Python multiprocessing.shared_memory', false, async () => {
      const name = uniqueName('life-py')
      return micro(await runJson('python3', [`${BENCH}/python/lifecycle.py`, name, String(SIZE), String(batch), String(samples)]))
    }],
    ['shm-typed-array', 'shm-typed-array (createPosix, detach + destroy)', false, () => {
      const shm = shmTypedArray({ install: !smoke })
      const name = `/${uniqueName('life-sta')}`
      return micro(
        timePerCall(
          () => {
            const view = shm.create(SIZE, 'Buffer', name)
            source.copy(view)
            shm.detach(name, true)
          },
          { batch, samples, warmup },
        ),
      )
    }],
  ]
  const rows = []
  for (const [key, label, reference, measure] of variants) {
    try {
      rows.push({ group: '4 KiB', key, label, reference, ...(await measure()) })
    } catch (error) {
      rows.push({ group: '4 KiB', key, label, reference, error: error.message })
    }
  }
  const value = (key) => rows.find((row) => row.key === key && !row.error)?.median
  const goals = []
  const ours = value('named-shm')
  if (ours !== undefined && value('c') !== undefined) {
    goals.push({ what: 'named-shm / C', ratio: ours / value('c'), goal: '<= 2', ok: ours / value('c') <= 2 })
  }
  for (const peer of ['python', 'shm-typed-array']) {
    if (ours !== undefined && value(peer) !== undefined) {
      goals.push({ what: `named-shm / ${peer}`, ratio: ours / value(peer), goal: '< 1', ok: ours < value(peer) })
    }
  }
  return { rows, goals }
}
