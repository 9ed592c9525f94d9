// Ping-pong round trips between two parties, side by side:
// named-shm wait/notify between two Node processes (spin on and off), a C
// futex ping-pong compiled here with gcc (the physical reference),
// worker_threads Atomics.wait, a Unix socket and process.send.
//
//   node benchmark/pingpong.mjs [rounds] [variants]   (npm run bench runs it too)
//
// `variants` picks rows by key, comma-separated: c,c1,spin,nospin,atomics,socket,ipc.
// Where `taskset` exists and there are two CPUs, the two processes of a row
// run on two different CPUs (ping on CPU 0, pong on CPU 1), as the C
// reference does, so that every row pays the same cross-CPU wake-up; the
// "one CPU" C row shows what a wake-up costs without it. worker_threads
// cannot pin one thread of a process: that row runs unpinned.
//
// Each row runs in processes of its own: a "ping" that times every round
// trip and prints {p50, p99} in µs, and the "pong" it starts. Not a test: the
// numbers depend on the machine and on what else runs on it.

import { execFileSync, fork, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import net from 'node:net'
import { cpus, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker, isMainThread, workerData } from 'node:worker_threads'

import { summarize } from './lib/measure.mjs'
import { endForkedPeer, next, timeTrips, withSocketPeer } from './lib/round-trips.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const self = fileURLToPath(import.meta.url)
const require = createRequire(import.meta.url)
const ROOT = join(here, '..')
const WARMUP = 2000
const PING_CPU = 0
const PONG_CPU = 1

const now = process.hrtime.bigint

// All CPUs, not availableParallelism(): a ping already pinned to one CPU
// still pins its pong to the other. Asked lazily, never from the worker of
// the Atomics row (a spawnSync there while the main thread blocks in
// Atomics.wait could hang its start).
let pinnable
function canPin() {
  pinnable ??= process.platform === 'linux' && cpus().length >= 2 && spawnSync('taskset', ['-c', '0', 'true']).status === 0
  return pinnable
}

/** `[command, args]` running `node self ...args` on `cpu` when pinning works. */
function nodeOn(cpu, args) {
  const node = [process.execPath, self, ...args]
  return canPin() && cpu !== undefined ? ['taskset', ['-c', String(cpu), ...node]] : [node[0], node.slice(1)]
}

/** Runs a party of this script to its end; resolves with its stdout. */
function run(cpu, args) {
  const [command, argv] = nodeOn(cpu, args)
  const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'inherit'] })
  let output = ''
  child.stdout.on('data', (chunk) => (output += chunk))
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve(output) : reject(new Error(`${args.join(' ')} exited with ${code}`))))
  })
}

/** p50 and p99 in µs of `samples`, nanoseconds (numbers or bigints). */
function percentiles(samples) {
  const { median, p99 } = summarize(samples.map(Number))
  return { p50: median / 1000, p99: p99 / 1000 }
}

// ---- named-shm wait/notify ----

/** Waits until `word` holds `value`, the way an application would. */
function awaitValue(wait, word, value, spin) {
  for (;;) {
    const seen = Atomics.load(word, 0)
    if (seen === value) return
    wait(word, 0, seen, Infinity, { spin })
  }
}

function openWord(name) {
  const { SharedMemory } = require(ROOT)
  const shm = SharedMemory.open(name, 0)
  const view = shm.attach()
  return { shm, word: new Int32Array(view.buffer, view.byteOffset, 1) }
}

function shmPong(name, total, spin) {
  const { wait, notify } = require(ROOT)
  const { shm, word } = openWord(name)
  for (let i = 0; i < total; i += 1) {
    awaitValue(wait, word, 2 * i + 1, spin)
    Atomics.store(word, 0, 2 * i + 2)
    notify(word, 0, 1)
  }
  shm.close()
}

async function shmPing(name, rounds, spin) {
  const { wait, notify } = require(ROOT)
  const { shm, word } = openWord(name)
  const total = rounds + WARMUP
  const [command, argv] = nodeOn(PONG_CPU, ['--pong', 'shm', name, String(total), String(spin)])
  const pong = spawn(command, argv, { stdio: 'inherit' })
  const samples = []
  for (let i = 0; i < total; i += 1) {
    const start = now()
    Atomics.store(word, 0, 2 * i + 1)
    notify(word, 0, 1)
    awaitValue(wait, word, 2 * i + 2, spin)
    if (i >= WARMUP) samples.push(now() - start)
  }
  await new Promise((resolve) => pong.on('exit', resolve))
  shm.close()
  return percentiles(samples)
}

async function shmRow(rounds, spin) {
  const { SharedMemory } = require(ROOT)
  const name = `named-shm-bench-${process.pid}-${spin ? 'spin' : 'nospin'}`
  SharedMemory.open(name, 4096, { create: true, exclusive: true }).close()
  try {
    return JSON.parse(await run(PING_CPU, ['--ping', 'shm', name, String(rounds), String(spin)]))
  } finally {
    SharedMemory.delete(name)
  }
}

// ---- the C futex reference ----

function cRow(rounds, cpus) {
  const dir = mkdtempSync(join(tmpdir(), 'named-shm-bench-'))
  try {
    const binary = join(dir, 'futex-pingpong')
    execFileSync('gcc', ['-O2', '-o', binary, join(here, 'futex-pingpong.c')])
    const args = [String(rounds), String(WARMUP), ...(canPin() ? cpus.map(String) : [])]
    const { p50, p99 } = JSON.parse(execFileSync(binary, args, { encoding: 'utf8' }))
    return { p50: p50 / 1000, p99: p99 / 1000 }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

// ---- worker_threads Atomics.wait ----

// A finite timeout: on Node 20 here, an untimed Atomics.wait in a worker now
// and then missed a notify and slept for good; a timed one never did.
const ATOMICS_TIMEOUT = 10_000

function atomicsPong(buffer, total) {
  const word = new Int32Array(buffer)
  for (let i = 0; i < total; i += 1) {
    while (Atomics.load(word, 0) !== 2 * i + 1) Atomics.wait(word, 0, Atomics.load(word, 0), ATOMICS_TIMEOUT)
    Atomics.store(word, 0, 2 * i + 2)
    Atomics.notify(word, 0, 1)
  }
}

async function atomicsPing(rounds) {
  const buffer = new SharedArrayBuffer(4)
  const word = new Int32Array(buffer)
  const total = rounds + WARMUP
  const worker = new Worker(self, { workerData: { atomicsPong: true, buffer, total } })
  const samples = []
  for (let i = 0; i < total; i += 1) {
    const start = now()
    Atomics.store(word, 0, 2 * i + 1)
    Atomics.notify(word, 0, 1)
    while (Atomics.load(word, 0) !== 2 * i + 2) Atomics.wait(word, 0, 2 * i + 1, ATOMICS_TIMEOUT)
    if (i >= WARMUP) samples.push(now() - start)
  }
  await new Promise((resolve) => worker.on('exit', resolve))
  return percentiles(samples)
}

// ---- a Unix socket ----

function socketPong(path) {
  const socket = net.connect(path)
  socket.on('data', (chunk) => socket.write(chunk))
  socket.on('end', () => socket.end())
}

async function socketPing(rounds) {
  const byte = Buffer.from([1])
  const samples = await withSocketPeer(
    (path) => spawn(...nodeOn(PONG_CPU, ['--pong', 'socket', path]), { stdio: 'inherit' }),
    (socket) =>
      timeTrips(rounds, WARMUP, () => {
        const answer = next(socket, 'data')
        socket.write(byte)
        return answer
      }),
  )
  return percentiles(samples)
}

// ---- process.send ----

function ipcPong() {
  process.on('message', (message) => {
    if (message === 'done') process.disconnect()
    else process.send(message)
  })
}

async function ipcPing(rounds) {
  // fork() runs `execPath ...execArgv self`: taskset in front pins the pong.
  const pinned = canPin() ? { execPath: 'taskset', execArgv: ['-c', String(PONG_CPU), process.execPath] } : {}
  const pong = fork(self, ['--pong', 'ipc'], pinned)
  const samples = await timeTrips(rounds, WARMUP, (i) => {
    const answer = next(pong, 'message')
    pong.send(i)
    return answer
  })
  await endForkedPeer(pong)
  return percentiles(samples)
}

// ---- the table ----

function format(value) {
  return value < 10 ? value.toFixed(2) : value.toFixed(1)
}

/** Runs every variant (or those in `only`) and prints the table. */
export async function main(rounds = 20000, only = undefined) {
  const slowRounds = Math.max(1000, rounds >> 2)
  const where = canPin() ? `CPUs ${PING_CPU} and ${PONG_CPU}` : 'unpinned'
  const variants = [
    ['c', `C futex, 2 processes (reference)`, rounds, () => cRow(rounds, [PING_CPU, PONG_CPU])],
    ['spin', 'named-shm wait/notify, spin on', rounds, () => shmRow(rounds, true)],
    ['nospin', 'named-shm wait/notify, spin off', rounds, () => shmRow(rounds, false)],
    ['atomics', 'worker_threads Atomics.wait (unpinned)', rounds, () => run(undefined, ['--ping', 'atomics', String(rounds)]).then(JSON.parse)],
    ['socket', 'Unix socket, 2 processes', slowRounds, () => run(PING_CPU, ['--ping', 'socket', String(slowRounds)]).then(JSON.parse)],
    ['ipc', 'process.send (IPC), 2 processes', slowRounds, () => run(PING_CPU, ['--ping', 'ipc', String(slowRounds)]).then(JSON.parse)],
    ['c1', 'C futex, both on one CPU (context only)', rounds, () => cRow(rounds, [PING_CPU, PING_CPU])],
  ]
  const rows = []
  for (const [key, label, count, measure] of variants) {
    if (only && !only.includes(key)) continue
    try {
      rows.push({ key, label, count, ...(await measure()) })
    } catch (error) {
      rows.push({ key, label, count, error: error.message.split('\n')[0] })
    }
  }
  const reference = rows.find((row) => row.key === 'c' && !row.error)?.p50
  const command = `node benchmark/pingpong.mjs ${rounds}${only ? ` ${only.join(',')}` : ''}`
  console.log(`\nPing-pong round trip between two parties, µs (${WARMUP} warm-up rounds dropped; ping and pong on ${where})`)
  console.log(`command: ${command}   (node ${process.version}, ${process.platform}/${process.arch}, ${cpus().length} CPUs)\n`)
  const header = ['variant', 'rounds', 'p50 µs', 'p99 µs', 'p50 / C futex']
  const lines = rows.map((row) =>
    row.error
      ? [row.label, String(row.count), '-', '-', `failed: ${row.error}`]
      : [
          row.label,
          String(row.count),
          format(row.p50),
          format(row.p99),
          reference ? `${(row.p50 / reference).toFixed(2)}x` : '-',
        ],
  )
  const widths = header.map((title, column) => Math.max(title.length, ...lines.map((line) => line[column].length)))
  const print = (cells) => console.log(`| ${cells.map((cell, column) => cell.padEnd(widths[column])).join(' | ')} |`)
  print(header)
  console.log(`|${widths.map((width) => '-'.repeat(width + 2)).join('|')}|`)
  for (const line of lines) print(line)
  return rows
}

const [flag, kind, ...rest] = process.argv.slice(2)
if (!isMainThread) {
  if (workerData?.atomicsPong) atomicsPong(workerData.buffer, workerData.total)
} else if (flag === '--pong') {
  if (kind === 'shm') shmPong(rest[0], Number(rest[1]), rest[2] === 'true')
  else if (kind === 'socket') socketPong(rest[0])
  else if (kind === 'ipc') ipcPong()
} else if (flag === '--ping') {
  let result
  if (kind === 'shm') result = await shmPing(rest[0], Number(rest[1]), rest[2] === 'true')
  else if (kind === 'atomics') result = await atomicsPing(Number(rest[0]))
  else if (kind === 'socket') result = await socketPing(Number(rest[0]))
  else if (kind === 'ipc') result = await ipcPing(Number(rest[0]))
  console.log(JSON.stringify(result))
} else if (process.argv[1] === self) {
  await main(flag ? Number(flag) : undefined, kind?.split(','))
}
