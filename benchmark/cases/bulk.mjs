// Bulk transfer between two processes: the producer fills a chunk (64 MiB)
// and hands it to the consumer, which must end up with the bytes; the
// producer times each round until the consumer says it is done.
//
// - named-shm in place: the producer fills the segment itself and the
//   consumer reads it where it lies (it touches every page): no copy at all;
// - named-shm copying: `write` in, `readInto` out (two copies, as C);
// - C: the same two copies through a shm segment (the physical reference);
// - a Unix socket, and `process.send` with advanced serialization.
//
// GB/s per round; ratio = throughput / C's.
//
//   node benchmark/cases/bulk.mjs --producer <variant> <chunk> <chunks>

import { fork, spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import net from 'node:net'
import { fileURLToPath } from 'node:url'

import { ROOT, bytes, compileC, runJson, runNode, summarize, uniqueName } from '../lib/measure.mjs'
import { endForkedPeer, next, timeTrips, withSocketPeer } from '../lib/round-trips.mjs'

const require = createRequire(import.meta.url)
const self = fileURLToPath(import.meta.url)
const WARMUP = 2
const PAGE = 4096
const now = process.hrtime.bigint

export const title = 'Bulk transfer between two processes'
export const unit = 'GB/s'
export const better = 'higher'

/** Touches one byte per page: the consumer reading data in place. */
function touch(view) {
  let sum = 0
  for (let i = 0; i < view.length; i += PAGE) sum += view[i]
  return sum
}

// ---- named-shm: a control word and a data segment ----

function shmParty(name) {
  const { SharedMemory, wait, notify } = require(ROOT)
  const shm = SharedMemory.open(name, 0)
  const control = shm.attach()
  const word = new Int32Array(control.buffer, control.byteOffset, 1)
  const awaitValue = (value) => {
    for (let seen; (seen = Atomics.load(word, 0)) !== value; ) wait(word, 0, seen, Infinity)
  }
  const setValue = (value) => {
    Atomics.store(word, 0, value)
    notify(word, 0, 1)
  }
  const data = SharedMemory.open(`${name}-data`, 0)
  return { shm, data, view: data.attach(), awaitValue, setValue }
}

function shmConsumer(name, mode, chunk, total) {
  const { shm, data, view, awaitValue, setValue } = shmParty(name)
  const own = Buffer.alloc(chunk)
  for (let i = 0; i < total; i += 1) {
    awaitValue(2 * i + 1)
    if (mode === 'copy') data.readInto(own, 0)
    else touch(view)
    setValue(2 * i + 2)
  }
  shm.close()
  data.close()
}

async function shmProducer(mode, chunk, chunks) {
  const { SharedMemory } = require(ROOT)
  const name = uniqueName(`bulk-${mode}`)
  SharedMemory.open(name, PAGE, { create: true, exclusive: true }).close()
  SharedMemory.open(`${name}-data`, chunk, { create: true, exclusive: true }).close()
  try {
    const { shm, data, view, awaitValue, setValue } = shmParty(name)
    const own = Buffer.alloc(chunk)
    const consumer = spawn(process.execPath, [self, '--consumer', mode, name, String(chunk), String(chunks + WARMUP)], { stdio: 'inherit' })
    const times = []
    for (let i = 0; i < chunks + WARMUP; i += 1) {
      const start = now()
      if (mode === 'copy') {
        own.fill(i)
        data.write(own, 0)
      } else {
        view.fill(i)
      }
      setValue(2 * i + 1)
      awaitValue(2 * i + 2)
      if (i >= WARMUP) times.push(Number(now() - start))
    }
    await new Promise((resolve) => consumer.on('exit', resolve))
    shm.close()
    data.close()
    return summarize(times)
  } finally {
    SharedMemory.delete(name)
    SharedMemory.delete(`${name}-data`)
  }
}

// ---- Unix socket ----

function socketConsumer(path, chunk) {
  const own = Buffer.alloc(chunk)
  let filled = 0
  const socket = net.connect(path)
  socket.on('data', (part) => {
    part.copy(own, filled)
    filled += part.length
    if (filled === chunk) {
      filled = 0
      socket.write(Buffer.from([1]))
    }
  })
  socket.on('end', () => socket.end())
}

async function socketProducer(chunk, chunks) {
  const own = Buffer.alloc(chunk)
  const times = await withSocketPeer(
    (path) => spawn(process.execPath, [self, '--consumer', 'socket', path, String(chunk)], { stdio: 'inherit' }),
    (socket) =>
      timeTrips(chunks, WARMUP, (i) => {
        own.fill(i)
        const done = next(socket, 'data')
        socket.write(own)
        return done
      }),
  )
  return summarize(times)
}

// ---- process.send, advanced serialization ----

function ipcConsumer() {
  process.on('message', (message) => {
    if (message === 'done') process.disconnect()
    else process.send(message.length)
  })
}

async function ipcProducer(chunk, chunks) {
  const consumer = fork(self, ['--consumer', 'ipc'], { serialization: 'advanced' })
  const own = Buffer.alloc(chunk)
  const times = await timeTrips(chunks, WARMUP, (i) => {
    own.fill(i)
    const done = next(consumer, 'message')
    consumer.send(own)
    return done
  })
  await endForkedPeer(consumer)
  return summarize(times)
}

// ---- the case ----

export async function run({ smoke }) {
  const chunk = smoke ? 1 << 16 : 1 << 26
  const chunks = smoke ? 3 : 16
  const slowChunks = smoke ? 3 : 6
  const group = `${bytes(chunk)} chunks`
  const rate = ({ median, p99 }) => ({ median: chunk / median, p99: chunk / p99 })
  const variants = [
    ['c', `C, shm + futex, 2 copies (reference)`, true, async () => {
      return rate(await runJson(compileC('bulk'), [`/${uniqueName('bulk-c')}`, String(chunk), String(chunks)]))
    }],
    ['in-place', 'named-shm in place (no copy)', false, () => runNode(self, ['--producer', 'in-place', String(chunk), String(chunks)]).then(rate)],
    ['copy', 'named-shm write + readInto (2 copies)', false, () => runNode(self, ['--producer', 'copy', String(chunk), String(chunks)]).then(rate)],
    ['socket', 'Unix socket', false, () => runNode(self, ['--producer', 'socket', String(chunk), String(slowChunks)]).then(rate)],
    ['ipc', "process.send, serialization: 'advanced'", false, () => runNode(self, ['--producer', 'ipc', String(chunk), String(slowChunks)]).then(rate)],
  ]
  const rows = []
  for (const [key, label, reference, measure] of variants) {
    try {
      rows.push({ group, key, label, reference, ...(await measure()) })
    } catch (error) {
      rows.push({ group, key, label, reference, error: error.message })
    }
  }
  const find = (key) => rows.find((row) => row.key === key && !row.error)
  const goals = []
  if (find('copy') && find('c')) {
    const ratio = find('copy').median / find('c').median
    goals.push({ what: 'named-shm copying / C', ratio, goal: '>= 0.9', ok: ratio >= 0.9 })
  }
  return { rows, goals }
}

const [flag, kind, ...rest] = process.argv.slice(2)
if (flag === '--producer') {
  const [chunk, chunks] = rest.map(Number)
  let result
  if (kind === 'socket') result = await socketProducer(chunk, chunks)
  else if (kind === 'ipc') result = await ipcProducer(chunk, chunks)
  else result = await shmProducer(kind === 'copy' ? 'copy' : 'in-place', chunk, chunks)
  console.log(JSON.stringify(result))
} else if (flag === '--consumer') {
  if (kind === 'socket') socketConsumer(rest[0], Number(rest[1]))
  else if (kind === 'ipc') ipcConsumer()
  else shmConsumer(rest[0], kind, Number(rest[1]), Number(rest[2]))
}
