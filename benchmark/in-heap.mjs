// What a view costs in each mode, side by side: attach + touch + detach with
// an external view (Node), an in-heap view (what Electron gets), and the
// copying alternatives Electron had before (read() into a new Buffer,
// readInto() a Buffer kept across calls), for several segment sizes.
//
//   node --expose-gc benchmark/in-heap.mjs [cycles]   (npm run bench runs it too)
//
// Run alone, it then measures the address space one in-heap view reserves
// and how many live ones fit in this process (Linux).
//
// Each row runs `cycles` times after a warm-up, in this process; the numbers
// are µs per cycle (median of 5 runs). Not a test: they depend on the machine
// and on what else runs on it.

import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const require = createRequire(import.meta.url)
const { SharedMemory } = require(join(here, '..'))

const SIZES = [4 << 10, 64 << 10, 1 << 20, 16 << 20]

/** µs per call of `body`, the median of 5 runs of `cycles` calls. */
function time(cycles, body) {
  for (let i = 0; i < Math.min(cycles, 200); i += 1) body(i)
  const runs = []
  for (let run = 0; run < 5; run += 1) {
    globalThis.gc?.()
    const start = process.hrtime.bigint()
    for (let i = 0; i < cycles; i += 1) body(i)
    runs.push(Number(process.hrtime.bigint() - start) / 1e3 / cycles)
  }
  return runs.sort((a, b) => a - b)[2]
}

/** Reads one byte per 4 KiB page: what a consumer of a frame touches at least. */
function touch(bytes) {
  let sum = 0
  for (let at = 0; at < bytes.length; at += 4096) sum += bytes[at]
  return sum
}

export async function main(cycles = 2000) {
  const name = `named-shm-bench-in-heap-${process.pid}`
  const rows = []
  try {
    for (const size of SIZES) {
      const shm = SharedMemory.open(name, size, { create: true, exclusive: true })
      const kept = Buffer.alloc(size)
      const n = Math.max(50, Math.round(cycles / Math.max(1, size >> 16)))
      rows.push({
        size: size >= 1 << 20 ? `${size >> 20} MiB` : `${size >> 10} KiB`,
        external: time(n, () => {
          const view = shm.attach()
          touch(view)
          shm.detach(view)
        }),
        inHeap: time(n, () => {
          const view = shm.attach({ inHeap: true })
          touch(view)
          shm.detach(view)
        }),
        read: time(n, () => touch(shm.read())),
        readInto: time(n, () => {
          shm.readInto(kept)
          touch(kept)
        }),
      })
      shm.close()
      SharedMemory.delete(name)
    }
  } catch (error) {
    try {
      SharedMemory.delete(name)
    } catch {}
    throw error
  }
  const us = (value) => value.toFixed(value < 10 ? 2 : 1)
  console.log(`\nViews and copies, µs per cycle (node ${process.version}; attach + touch every page + detach, or one copy + touch)\n`)
  console.log('| segment | external view | in-heap view | read() | readInto(kept) |')
  console.log('|---|---|---|---|---|')
  for (const row of rows) {
    console.log(`| ${row.size} | ${us(row.external)} | ${us(row.inHeap)} | ${us(row.read)} | ${us(row.readInto)} |`)
  }
}

/** Bytes of address space this process has mapped or reserved (Linux: VmSize). */
function addressSpace() {
  return Number(/VmSize:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) * 1024
}

/**
 * Address space one in-heap view holds, and how many live in-heap views fit
 * before attach says ENOMEM (Linux; run last: it fills the address space).
 */
export function reservations() {
  if (process.platform !== 'linux') return
  const name = `named-shm-bench-reserve-${process.pid}`
  const shm = SharedMemory.open(name, 4096, { create: true, exclusive: true })
  SharedMemory.delete(name)
  const before = addressSpace()
  const views = [shm.attach({ inHeap: true })]
  const perView = addressSpace() - before
  let failure = 'none'
  while (views.length < 100_000) {
    try {
      views.push(shm.attach({ inHeap: true }))
    } catch (error) {
      failure = error.code
      break
    }
  }
  const live = views.length
  shm.close()
  console.log(
    `\nIn-heap views (node ${process.version}): ${(perView / 2 ** 30).toFixed(2)} GiB of address space each; ` +
      `${live} live views until attach threw ${failure}\n`,
  )
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await main(Number(process.argv[2] ?? 2000))
  reservations()
}
