// Hostile stress: 8 processes × 3 worker threads attach, detach, copy, wait,
// notify and lock on a mix of segments (read-only and read-write views)
// while a ninth process truncates and deletes them at random.
//
//   npm run test:stress          (runs this after races.mjs)
//   node hostile.mjs [processes] [threads] [seconds]
//
// Fails (exit 1, with every finding) when a process dies (a signal: SIGBUS,
// SIGSEGV), an error comes without a code (or with code UNKNOWN), a thread
// hangs past the time limit, or anything of ours is left in /dev/shm.

import { truncateSync } from 'node:fs'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'

import { Children, gather, library, random, removeSegments, verdict } from './children.mjs'

const { SharedMemory, wait, waitAsync, notify, SharedMutex } = library

const SIZE = 3 * 4096
const NAMES = 6
const namesOf = (prefix) => Array.from({ length: NAMES }, (_, i) => `${prefix}${i}`)

// ---- parent ---------------------------------------------------------------

async function main() {
  const processes = Number(process.argv[2] ?? 8)
  const threads = Number(process.argv[3] ?? 3)
  const seconds = Number(process.argv[4] ?? 30)
  const prefix = `hostile-${process.pid}-`
  const started = Date.now()
  const deadline = started + seconds * 1000
  const failures = []
  const children = new Children(import.meta.url)
  // Everything ends by the deadline; a process still running 60 s later hangs.
  children.limit(seconds * 1000 + 60_000, failures, 'a process still ran 60 s after the deadline (a hang); killing the children')

  const results = await Promise.all([
    children.run('chaos', ['chaos', prefix, String(deadline)]),
    ...Array.from({ length: processes }, (_, id) =>
      children.run(`worker ${id}`, ['worker', prefix, String(deadline), String(id), String(threads)]),
    ),
  ])
  children.settled()
  const totals = gather(results, failures)
  removeSegments(namesOf(prefix), prefix, failures)

  const took = ((Date.now() - started) / 1000).toFixed(1)
  console.log(`hostile: ${processes} processes × ${threads} threads + 1 truncating/deleting process in ${took} s`)
  verdict('hostile', totals, failures, 'no process died, every error had a code, nothing left')
}

// ---- worker process: threads that use the segments ------------------------

async function workerProcess(prefix, deadline, id, threads) {
  const reports = await Promise.all(
    Array.from(
      { length: threads },
      (_, thread) =>
        new Promise((resolve) => {
          const worker = new Worker(new URL(import.meta.url), { workerData: { prefix, deadline, id, thread } })
          let report = { counts: {}, failures: [`thread ${thread} sent no report`] }
          worker.on('message', (message) => (report = message))
          worker.on('error', (error) => (report = { counts: {}, failures: [`thread ${thread} threw ${error.code}: ${error.message}`] }))
          worker.on('exit', () => resolve(report))
        }),
    ),
  )
  const counts = {}
  const failures = []
  for (const report of reports) {
    failures.push(...report.failures)
    for (const [key, value] of Object.entries(report.counts)) counts[key] = (counts[key] ?? 0) + value
  }
  console.log(JSON.stringify({ counts, failures }))
}

async function thread({ prefix, deadline, thread }) {
  const names = namesOf(prefix)
  const counts = { rounds: 0, coded: 0 }
  const failures = []
  /** Runs `step`; an error must carry a code (an OS one, or the library's). */
  const attempt = async (what, step) => {
    try {
      return await step()
    } catch (error) {
      const code = error?.code
      if (typeof code !== 'string' || code === 'UNKNOWN') {
        if (failures.length < 20) failures.push(`${what}: uncoded ${error?.name}: ${error?.message}`)
      } else {
        counts.coded += 1
        counts[code] = (counts[code] ?? 0) + 1
      }
      return undefined
    }
  }
  while (Date.now() < deadline && failures.length < 20) {
    counts.rounds += 1
    const name = names[random(names.length)]
    const readOnly = random(3) === 0
    const shm = await attempt('open', () =>
      random(2) === 0 ? SharedMemory.open(name, SIZE, { create: true, readOnly }) : SharedMemory.open(name, 0, { readOnly }),
    )
    if (!shm) continue
    for (let k = 0; k < 4; k += 1) {
      const view = await attempt('attach', () => shm.attach({ readOnly: random(2) === 0 || readOnly }))
      if (!view) continue
      const words = new Int32Array(view.buffer)
      const index = random(words.length)
      // Raw access anywhere in the view, past a shrunk end included.
      view[random(view.length)] = 1
      void view[random(view.length)]
      await attempt('read', () => shm.read(random(shm.size), 1))
      await attempt('write', () => shm.write(Buffer.from([7]), random(shm.size)))
      await attempt('readInto', () => shm.readInto(Buffer.alloc(64), random(shm.size)))
      await attempt('wait', () => wait(words, index, words[index], random(2)))
      await attempt('notify', () => notify(words, random(words.length), 1))
      if (random(4) === 0) await attempt('waitAsync', () => waitAsync(words, index, words[index], 1 + random(3), { ref: true }))
      const mutex = await attempt('SharedMutex', () => new SharedMutex(view, 8 * random(words.length / 2)))
      if (mutex) {
        const locked = await attempt('lock', () => (random(2) === 0 ? mutex.tryLock() : mutex.lock(random(3))))
        if (locked === 'ok' || locked === 'owner-died') await attempt('unlock', () => mutex.unlock())
        if (random(8) === 0) {
          const asyncLocked = await attempt('lockAsync', () => mutex.lockAsync(1 + random(3), { ref: true }))
          if (asyncLocked === 'ok' || asyncLocked === 'owner-died') await attempt('unlock', () => mutex.unlock())
        }
      }
      await attempt('detach', () => shm.detach(view))
    }
    shm.close()
  }
  parentPort.postMessage({ counts, failures })
}

// ---- chaos: truncates and deletes at random --------------------------------

async function chaos(prefix, deadline) {
  const names = namesOf(prefix)
  const counts = { truncated: 0, deleted: 0, missing: 0 }
  const failures = []
  while (Date.now() < deadline) {
    const name = names[random(names.length)]
    try {
      if (random(3) === 0) {
        SharedMemory.delete(name)
        counts.deleted += 1
      } else {
        truncateSync(`/dev/shm/${name}`, [0, 100, 4096, 5000, 8192][random(5)])
        counts.truncated += 1
      }
    } catch (error) {
      if (error.code === 'ENOENT') counts.missing += 1
      else failures.push(`${error.code}: ${error.message}`)
    }
    await new Promise((resolve) => setTimeout(resolve, random(4)))
  }
  console.log(JSON.stringify({ counts, failures }))
}

if (!isMainThread) {
  await thread(workerData)
} else {
  const [role, prefix, deadline, ...rest] = process.argv.slice(2)
  if (role === 'worker') await workerProcess(prefix, Number(deadline), Number(rest[0]), Number(rest[1]))
  else if (role === 'chaos') await chaos(prefix, Number(deadline))
  else await main()
}
