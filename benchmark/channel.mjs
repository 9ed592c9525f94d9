// Channel against the usual ways to pass messages between Node processes,
// in one run: message rate for 64-byte messages, throughput for 64 KiB
// messages, and a 64-byte ping-pong through two channels.
//
//   node benchmark/channel.mjs [scale]   (npm run bench runs it too; scale 1 by default, 0.1 for a smoke run)
//   node benchmark/channel.mjs pingpong [rounds]   the ping-pong alone
//
// Every row is one sender process and one receiver (this process, or for
// worker_threads one of its threads). Every transport gets the same warm-up:
// the clock starts once a tenth of its messages has arrived, so process
// start-up and the JIT's first tiers are not counted, for any of them. Not a test: the numbers
// depend on the machine and on what else runs on it.

import { fork, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import net from 'node:net'
import { cpus, loadavg, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'

const here = dirname(fileURLToPath(import.meta.url))
const self = fileURLToPath(import.meta.url)
const require = createRequire(import.meta.url)
const ROOT = join(here, '..')
const now = process.hrtime.bigint

const SMALL = 64
const LARGE = 64 * 1024

/** How many of `count` messages arrive before the clock starts (the same share for every transport). */
function warmUp(count) {
  return Math.floor(count / 10)
}

function payload(size) {
  return Buffer.alloc(size, 0x61)
}

// ---- senders (child processes) ----

async function sender([kind, size, count, target]) {
  size = Number(size)
  count = Number(count)
  const data = payload(size)
  if (kind === 'channel') {
    const { Channel } = require(ROOT)
    const channel = Channel.open(target)
    for (let i = 0; i < count; i++) channel.send(data)
    channel.close()
  } else if (kind === 'ipc-json' || kind === 'ipc-advanced') {
    const message = kind === 'ipc-json' ? data.toString('latin1') : data
    // Wait for the pipe now and then, as a well-behaved sender must.
    for (let i = 0; i < count; i++) {
      if (i % 256 === 255) await new Promise((resolve) => process.send(message, resolve))
      else process.send(message)
    }
    await new Promise((resolve) => process.send('end', resolve))
    process.disconnect()
  } else if (kind === 'socket') {
    const socket = net.connect(target)
    await new Promise((resolve) => socket.once('connect', resolve))
    for (let i = 0; i < count; i++) {
      if (!socket.write(data)) await new Promise((resolve) => socket.once('drain', resolve))
    }
    socket.end()
  } else if (kind === 'echo') {
    // Ping-pong: every message on `target` goes straight back on `target`-back.
    const { Channel } = require(ROOT)
    const input = Channel.open(target)
    const output = Channel.open(`${target}-back`)
    for (let i = 0; i < count; i++) output.send(input.receiveView())
    input.close()
    output.close()
  }
}

function child(args, options = {}) {
  return spawn(process.execPath, [self, 'sender', ...args], { stdio: ['ignore', 'inherit', 'inherit'], ...options })
}

function exited(process) {
  return new Promise((resolve, reject) =>
    process.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`a sender exited with ${code}`)))),
  )
}

// ---- receivers, one per kind ----

async function viaChannel(size, count) {
  const { Channel } = require(ROOT)
  const name = `named-shm-bench-${process.pid}-${size}`
  const channel = Channel.open(name, { create: true, capacity: Math.max(1 << 20, 8 * size) })
  const sending = child(['channel', size, count, name])
  const warm = warmUp(count)
  let start = 0n
  for (let i = 0; i < count; i++) {
    channel.receiveView()
    if (i === warm) start = now()
  }
  const elapsed = now() - start
  await exited(sending)
  channel.close()
  Channel.delete(name)
  return { count: count - warm - 1, elapsed }
}

function viaIpc(serialization) {
  return async (size, count) => {
    const sending = fork(self, ['sender', `ipc-${serialization}`, size, count], { serialization, stdio: 'inherit' })
    const warm = warmUp(count)
    let received = 0
    let start = 0n
    const elapsed = await new Promise((resolve) => {
      sending.on('message', (message) => {
        if (message === 'end') return resolve(now() - start)
        if (received++ === warm) start = now()
      })
    })
    await exited(sending)
    return { count: received - warm - 1, elapsed }
  }
}

async function viaSocket(size, count) {
  const dir = mkdtempSync(join(tmpdir(), 'named-shm-bench-'))
  const path = join(dir, 'socket')
  let sending
  const result = await new Promise((resolve) => {
    const server = net.createServer((socket) => {
      const warm = warmUp(count) * size
      let bytes = 0
      let start = 0n
      let counted = 0
      socket.on('data', (chunk) => {
        if (start === 0n && bytes + chunk.length > warm) {
          start = now()
          counted = bytes + chunk.length
        }
        bytes += chunk.length
      })
      socket.on('end', () => {
        server.close()
        resolve({ count: (bytes - counted) / size, elapsed: now() - start })
      })
    })
    server.listen(path, () => (sending = child(['socket', size, count, path])))
  })
  await exited(sending)
  rmSync(dir, { recursive: true, force: true })
  return result
}

async function viaWorker(size, count) {
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads')
     const data = new Uint8Array(workerData.size).fill(0x61)
     for (let i = 0; i < workerData.count; i++) parentPort.postMessage(data)`,
    { eval: true, workerData: { size, count } },
  )
  const warm = warmUp(count)
  let received = 0
  let start = 0n
  const elapsed = await new Promise((resolve) => {
    worker.on('message', () => {
      if (received === warm) start = now()
      if (++received === count) resolve(now() - start)
    })
  })
  await worker.terminate()
  return { count: count - warm - 1, elapsed }
}

/** Whether the two sides of the ping-pong can sit on CPUs 0 and 1, as benchmark/pingpong.mjs puts them. */
function canPin() {
  return process.platform === 'linux' && cpus().length >= 2 && spawnSync('taskset', ['-c', '0', 'true']).status === 0
}

async function pingPong(rounds) {
  const { Channel } = require(ROOT)
  const name = `named-shm-bench-pingpong-${process.pid}`
  const out = Channel.open(name, { create: true, capacity: 4096 })
  const back = Channel.open(`${name}-back`, { create: true, capacity: 4096 })
  const pinned = canPin()
  // This thread (the ping) on CPU 0, the echo on CPU 1: every round pays the same cross-CPU trip.
  if (pinned) spawnSync('taskset', ['-cp', '0', String(process.pid)])
  const echo = pinned
    ? spawn('taskset', ['-c', '1', process.execPath, self, 'sender', 'echo', 0, rounds, name], { stdio: 'inherit' })
    : child(['echo', 0, rounds, name])
  const message = payload(SMALL)
  const samples = new BigInt64Array(rounds)
  for (let i = 0; i < rounds; i++) {
    const start = now()
    out.send(message)
    back.receiveView()
    samples[i] = now() - start
  }
  await exited(echo)
  out.close()
  back.close()
  Channel.delete(name)
  Channel.delete(`${name}-back`)
  if (pinned) spawnSync('taskset', ['-cp', `0-${cpus().length - 1}`, String(process.pid)])
  const measured = samples.slice(Math.min(2000, rounds >> 2)).sort()
  const at = (q) => Number(measured[Math.floor(measured.length * q)]) / 1000
  return { p50: at(0.5), p99: at(0.99) }
}

// ---- the run ----

// Each transport's share of the messages, so that each measures for a few
// tenths of a second. A million 64-byte messages took the Channel 0.1 s,
// and on a 2-CPU machine (where V8's compiler thread competes with the two
// processes) four runs in six then came out a quarter lower than with 3
// million, whose runs all agreed within 8%.
const KINDS = [
  ['named-shm Channel', viaChannel, 3],
  ["process.send (serialization 'json')", viaIpc('json'), 0.1],
  ["process.send (serialization 'advanced')", viaIpc('advanced'), 0.1],
  ['Unix socket', viaSocket, 0.5],
  ['worker_threads postMessage', viaWorker, 0.1],
]

export async function main(scale = Number(process.argv[2] ?? 1)) {
  console.log(`\nChannel vs the alternatives (node ${process.version}, load average ${loadavg()[0].toFixed(1)})\n`)
  for (const [label, size, messages] of [
    ['64-byte messages', SMALL, 1_000_000],
    ['64 KiB messages', LARGE, 40_000],
  ]) {
    console.log(`${label}:\n`)
    console.log('| transport | messages/s | MB/s | vs process.send (json) |')
    console.log('|---|---|---|---|')
    const rows = []
    for (const [name, run, share] of KINDS) {
      const count = Math.max(100, Math.round(messages * share * scale))
      const { count: measured, elapsed } = await run(size, count)
      const rate = measured / (Number(elapsed) / 1e9)
      rows.push({ name, rate })
    }
    const base = rows[1].rate
    for (const { name, rate } of rows) {
      console.log(`| ${name} | ${Math.round(rate).toLocaleString('en')} | ${((rate * size) / 1e6).toFixed(0)} | ${(rate / base).toFixed(1)}x |`)
    }
    console.log()
  }
  const { p50, p99 } = await pingPong(Math.max(1000, Math.round(100_000 * scale)))
  console.log(`64-byte ping-pong through two channels, spin on${canPin() ? ', on CPUs 0 and 1' : ''}: p50 ${p50.toFixed(2)} µs, p99 ${p99.toFixed(2)} µs\n`)
}

if (process.argv[2] === 'sender') await sender(process.argv.slice(3))
else if (process.argv[2] === 'pingpong') {
  const { p50, p99 } = await pingPong(Number(process.argv[3] ?? 100_000))
  console.log(`64-byte ping-pong through two channels: p50 ${p50.toFixed(2)} µs, p99 ${p99.toFixed(2)} µs`)
} else if (process.argv[1] === self) await main()
