// Copying access (`write`, `readInto`, `read`) at 64 B, 4 KiB and 1 MiB,
// against `Buffer.copy` of the same bytes between two private buffers.
// Throughput in GB/s; ratio = named-shm / Buffer.copy (goal at 4 KiB: >= 0.5).
//
// Where source and destination lie within their pages changes memcpy's
// speed (loads and stores 4 KiB apart alias), and a segment's bytes start
// on a page. So every variant cycles through the same 8 placements of its
// private buffers, 512 bytes apart, rather than taking wherever the
// allocator put one buffer: with one buffer each, the 4 KiB readInto ratio
// came out anywhere from 0.48 to 0.89 from run to run.

import { createRequire } from 'node:module'

import { ROOT, bytes, timePerCall, uniqueName } from '../lib/measure.mjs'

const require = createRequire(import.meta.url)

export const title = 'Small and large copies'
export const unit = 'GB/s'
export const better = 'higher'

/** 8 buffers of `size` bytes filled with `fill`, starting 0, 512, ..., 3584 bytes into one allocation. */
function placements(size, fill) {
  const backing = new ArrayBuffer(size + 4096)
  return Array.from({ length: 8 }, (_, i) => Buffer.from(backing, i * 512, size).fill(fill))
}

export async function run({ smoke }) {
  const { SharedMemory } = require(ROOT)
  const sizes = [64, 4096, 1 << 20]
  const name = uniqueName('copies')
  const shm = SharedMemory.open(name, 1 << 20, { create: true, exclusive: true })
  const rows = []
  try {
    for (const size of sizes) {
      const sources = placements(size, 7)
      const targets = placements(size, 0)
      const others = placements(size, 0)
      // Enough calls per sample that a sample copies 1 MiB or more.
      const batch = smoke ? 4 : Math.max(8, Math.round((1 << 20) / size))
      const samples = smoke ? 5 : 100
      const group = bytes(size)
      const variants = [
        ['buffer-copy', `Buffer.copy ${group} (reference)`, (i) => sources[i & 7].copy(others[i & 7]), true],
        ['write', `shm.write ${group}`, (i) => shm.write(sources[i & 7], 0)],
        ['read-into', `shm.readInto ${group}`, (i) => shm.readInto(targets[i & 7], 0)],
        ['read', `shm.read ${group} (allocates)`, () => shm.read(0, size)],
      ]
      for (const [key, label, body, reference] of variants) {
        const { median, p99, samples: count } = timePerCall(body, { batch, samples })
        // Per call in ns -> GB/s; the slow tail (p99 of time) is the low throughput.
        rows.push({ group, key: `${key}-${size}`, label, reference: Boolean(reference), median: size / median, p99: size / p99, ns: median, count })
      }
    }
  } finally {
    shm.close()
    SharedMemory.delete(name)
  }
  const goals = []
  for (const size of sizes) {
    const reference = rows.find((row) => row.key === `buffer-copy-${size}`).median
    for (const key of ['write', 'read-into']) {
      const row = rows.find((r) => r.key === `${key}-${size}`)
      const ratio = row.median / reference
      if (size === 4096) goals.push({ what: `${row.label} / Buffer.copy`, ratio, goal: '>= 0.5', ok: ratio >= 0.5 })
      if (size === 1 << 20) goals.push({ what: `${row.label} / Buffer.copy`, ratio, goal: '>= 0.9', ok: ratio >= 0.9 })
    }
  }
  return { rows, goals }
}
