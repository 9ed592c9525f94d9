// What finding a view's mapping costs the calls that do it (wait, notify,
// tryLock/unlock, readInto from a view), with few and with many live
// mappings in the process: the lookup is one ordered search, so the cost
// should barely move with the count.
//
//   node benchmark/lookup.mjs [package root ...]
//
// Each root (default: this checkout) is loaded in a child process of its
// own, so two builds can be compared side by side in one run.

import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const HERE = fileURLToPath(import.meta.url)
const ROOT = join(dirname(HERE), '..')

function measure(root) {
  const require = createRequire(join(root, 'index.js'))
  const { SharedMemory, wait, notify, SharedMutex } = require(root)
  const name = `lookup-bench-${process.pid}`
  const shm = SharedMemory.open(name, 4096, { create: true, exclusive: true })
  SharedMemory.delete(name)
  const rows = []
  const others = []
  for (const live of [10, 2000]) {
    while (others.length < live) others.push(shm.attach())
    const view = shm.attach()
    const words = new Int32Array(view.buffer)
    const mutex = new SharedMutex(view, 8)
    const target = others[0].subarray(64, 128)
    const time = (what, run) => {
      const rounds = 200_000
      for (let i = 0; i < 10_000; i += 1) run()
      const start = process.hrtime.bigint()
      for (let i = 0; i < rounds; i += 1) run()
      const ns = Number(process.hrtime.bigint() - start) / rounds
      rows.push({ live, what, ns: Math.round(ns) })
    }
    time("wait 'not-equal'", () => wait(words, 0, 1, 0))
    time('notify (no waiter)', () => notify(words, 0, 1))
    time('tryLock + unlock', () => {
      mutex.tryLock()
      mutex.unlock()
    })
    time('readInto a view (staged)', () => shm.readInto(target, 0))
    shm.detach(view)
  }
  shm.close()
  return rows
}

if (process.argv[2] === '--child') {
  console.log(JSON.stringify(measure(process.argv[3])))
} else {
  const roots = process.argv.length > 2 ? process.argv.slice(2).map((root) => resolve(root)) : [ROOT]
  const results = roots.map((root) => {
    const child = spawnSync(process.execPath, [HERE, '--child', root], { encoding: 'utf8' })
    if (child.status !== 0) throw new Error(`${root}: ${child.stderr}`)
    return { root, rows: JSON.parse(child.stdout) }
  })
  const header = ['live mappings', 'call', ...results.map(({ root }) => `ns/call ${root}`)]
  console.log(`| ${header.join(' | ')} |`)
  console.log(`|${header.map(() => '---').join('|')}|`)
  for (const [i, row] of results[0].rows.entries()) {
    console.log(`| ${row.live} | ${row.what} | ${results.map(({ rows }) => rows[i].ns).join(' | ')} |`)
  }
}
