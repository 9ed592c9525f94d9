// Attach + detach of a small and a large segment, with the garbage
// collections it causes. V8 accounts an external ArrayBuffer (and a private
// WebAssembly memory) at its full length and starts marking when external
// memory grows by more than 64 MiB, so attach time and full GCs are measured
// per size, each variant in a fresh process: attach() as it comes (on Node
// 20 a large segment gets an in-heap view over a shared WebAssembly memory),
// and attach({ inHeap: true }), what Electron gets. Microseconds per cycle; ratio = time / the small size's
// (goal: large <= 2x small, and 0 full GCs).
//
//   node benchmark/cases/attach.mjs --child <variant> <size> <batch> <samples>

import { execFileSync } from 'node:child_process'
import { constants, PerformanceObserver } from 'node:perf_hooks'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

import { ROOT, bytes, compileC, runJson, runNode, timePerCall, uniqueName } from '../lib/measure.mjs'
import { shmTypedArray } from '../lib/peers.mjs'

const require = createRequire(import.meta.url)
const self = fileURLToPath(import.meta.url)

export const title = 'Attach + detach, small vs large segment'
export const unit = 'µs'
export const better = 'lower'

/** One variant in this (fresh) process: timings and GC counts. */
async function child(variant, size, batch, samples) {
  const gcs = { major: 0, all: 0 }
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      gcs.all += 1
      if ((entry.detail?.kind ?? entry.kind) === constants.NODE_PERFORMANCE_GC_MAJOR) gcs.major += 1
    }
  })
  observer.observe({ entryTypes: ['gc'] })
  let cycle
  let cleanup = () => {}
  if (variant === 'named-shm' || variant === 'named-shm-in-heap') {
    const { SharedMemory } = require(ROOT)
    const name = uniqueName('attach')
    const shm = SharedMemory.open(name, size, { create: true, exclusive: true, reserve: false })
    const options = variant === 'named-shm-in-heap' ? { inHeap: true } : undefined
    cycle = () => shm.detach(shm.attach(options))
    cleanup = () => {
      shm.close()
      SharedMemory.delete(name)
    }
  } else if (variant === 'shm-typed-array') {
    const sta = shmTypedArray({ install: false })
    const name = `/${uniqueName('attach-sta')}`
    sta.create(size, 'Buffer', name)
    cycle = () => {
      sta.getPosix(name, 'Buffer')
      sta.detach(name, false)
    }
    cleanup = () => sta.destroy(name)
  } else {
    cycle = () => {} // the loop alone: the GCs that are not attach's
  }
  const cycles = batch * samples
  let timing
  try {
    timing = timePerCall(cycle, { batch, samples, warmup: 1 })
  } finally {
    cleanup()
  }
  await new Promise((resolve) => setTimeout(resolve, 50)) // GC entries arrive asynchronously
  observer.disconnect()
  return { median: timing.median / 1000, p99: timing.p99 / 1000, cycles: cycles + batch, gcs }
}

/** Other Node binaries to measure named-shm under (NAMED_SHM_NODES, colon-separated, as the tests use). */
function otherNodes() {
  return (process.env.NAMED_SHM_NODES ?? '').split(':').filter(Boolean)
}

/** `v24.21.0` of a Node binary. */
function versionOf(node) {
  return execFileSync(node, ['--version'], { encoding: 'utf8' }).trim()
}

export async function run({ smoke }) {
  const small = 4096
  const large = smoke ? 1 << 20 : 1 << 30
  const plan = (size) => (smoke ? [5, 4] : size > 1 << 20 ? [10, 100] : [100, 100])
  const rows = []
  const measure = async (group, key, label, reference, body) => {
    try {
      rows.push({ group, key, label, reference, ...(await body()) })
    } catch (error) {
      rows.push({ group, key, label, reference, error: error.message })
    }
  }
  if (!smoke) {
    // Installed here, measured in the child processes below.
    try {
      shmTypedArray({ install: true })
    } catch {}
  }
  for (const size of [small, large]) {
    const [batch, samples] = plan(size)
    const args = (variant) => ['--child', variant, String(size), String(batch), String(samples)]
    await measure('named-shm', `named-shm-${size}`, `named-shm ${bytes(size)}, node ${process.version}`, size === small, () => runNode(self, args('named-shm')))
    // What Electron gets (and attach({ inHeap: true })): the segment mapped over a WebAssembly memory.
    await measure('named-shm in-heap', `named-shm-in-heap-${size}`, `named-shm in-heap ${bytes(size)}, node ${process.version}`, size === small, () =>
      runNode(self, args('named-shm-in-heap')),
    )
    await measure('shm-typed-array', `sta-${size}`, `shm-typed-array ${bytes(size)}`, size === small, () => runNode(self, args('shm-typed-array')))
    await measure('C', `c-${size}`, `C mmap + munmap ${bytes(size)}`, size === small, async () => {
      const { SharedMemory } = require(ROOT)
      const name = uniqueName('attach-c')
      SharedMemory.open(name, size, { create: true, exclusive: true, reserve: false }).close()
      try {
        const { median, p99 } = await runJson(compileC('attach'), [`/${name}`, String(size), String(batch), String(samples)])
        return { median: median / 1000, p99: p99 / 1000, cycles: batch * samples }
      } finally {
        SharedMemory.delete(name)
      }
    })
  }
  // Views are SharedArrayBuffers (no GC per attach) where Node makes external
  // ones: measure named-shm under every other Node given too.
  for (const node of otherNodes()) {
    const version = versionOf(node)
    for (const size of [small, large]) {
      const [batch, samples] = plan(size)
      const args = ['--child', 'named-shm', String(size), String(batch), String(samples)]
      await measure(`named-shm ${version}`, `named-shm-${version}-${size}`, `named-shm ${bytes(size)}, node ${version}`, size === small, () =>
        runJson(node, [self, ...args]),
      )
    }
  }
  const [batch, samples] = plan(large)
  await measure('loop', 'loop', 'the timing loop alone (GCs without attach)', true, () =>
    runNode(self, ['--child', 'none', String(large), String(batch), String(samples)]),
  )
  for (const row of rows) if (row.gcs) row.label += ` [${row.gcs.major} full GCs / ${row.cycles} cycles]`
  const find = (key) => rows.find((row) => row.key === key && !row.error)
  const goals = []
  for (const version of [process.version, ...otherNodes().map(versionOf)]) {
    const tag = version === process.version ? '' : `${version}-`
    const [ours, oursSmall] = [find(`named-shm-${tag}${large}`), find(`named-shm-${tag}${small}`)]
    if (ours && oursSmall) {
      goals.push({ what: `node ${version}: named-shm attach ${bytes(large)} / ${bytes(small)}`, ratio: ours.median / oursSmall.median, goal: '<= 2', ok: ours.median <= 2 * oursSmall.median })
      goals.push({ what: `node ${version}: full GCs in ${ours.cycles} attaches of ${bytes(large)}`, ratio: ours.gcs.major, goal: '0', ok: ours.gcs.major === 0 })
    }
  }
  return { rows, goals, notes: otherNodes().length === 0 ? ['Set NAMED_SHM_NODES to measure other Node versions too (npm run bench does, where .ci/run fetched them).'] : [] }
}

const [flag, variant, size, batch, samples] = process.argv.slice(2)
if (flag === '--child') {
  console.log(JSON.stringify(await child(variant, Number(size), Number(batch), Number(samples))))
}
