// Channel across real processes: a million checked messages through a small
// ring, four senders at once, senders and receivers killed mid-stream, the
// end of the stream, and the codes of every misuse.

import { join } from 'node:path'
import { Worker } from 'node:worker_threads'

import test from 'ava'

import { channelCalls } from '../binding'
import { Channel, SharedMemory } from '../index'
import { assertDetached, deleteAtEnd, runFixture, runNode, uniqueName } from './helpers'
import { startFixture } from './sync-helpers'

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { check, messageBytes } = require('./fixtures/channel-peer.js') as {
  check(bytes: Buffer, tag: number, i: number, max: number): void
  messageBytes(tag: number, i: number, max: number): Buffer
}

/** A new channel, closed and deleted when the test ends. */
function fresh(t: import('ava').ExecutionContext, options: { capacity?: number; maxMessage?: number } = {}): Channel {
  const name = uniqueName('channel')
  const channel = Channel.open(name, { create: true, ...options })
  deleteAtEnd(t, name)
  t.teardown(() => channel.close())
  return channel
}

function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

/** `head` of the channel's header: bytes ever published. */
function publishedBytes(name: string): number {
  const shm = SharedMemory.open(name, 0)
  try {
    return Number(shm.read(64, 8).readBigUInt64LE(0))
  } finally {
    shm.close()
  }
}

test.serial('a million messages of random sizes arrive in order, once, through wraps, full and empty rings', async (t) => {
  const COUNT = 1_000_000
  const MAX = 200
  const receiver = fresh(t, { capacity: 8192, maxMessage: MAX })
  const sender = startFixture(t, 'channel-peer.js', ['send', receiver.name, String(COUNT), String(MAX)])
  for (let i = 0; i < COUNT; i++) {
    // Now and then the receiver dawdles, so that the ring fills and the sender sleeps.
    if (i % 250_000 === 1000) pause(50)
    const view = receiver.receiveView(60_000)
    if (!view) t.fail(`message ${i}: ${view === null ? 'the stream ended' : 'timed out'}`)
    check(view!, 0, i, MAX)
  }
  t.is(receiver.receive(60_000), null, 'the end, after the last message')
  const result = await sender.done
  t.is(result.code, 0, result.stderr)
  // Every message passed through the 8 KiB ring: it wrapped thousands of times.
  t.true(publishedBytes(receiver.name) / receiver.capacity > 5000)
})

test.serial('four senders at once: each one in its own order, nothing lost or repeated', async (t) => {
  const COUNT = 50_000
  const MAX = 300
  const receiver = fresh(t, { capacity: 4096, maxMessage: MAX })
  // The receiver's own sender handle keeps the stream open until every child has joined.
  const keeper = Channel.open(receiver.name)
  t.teardown(() => keeper.close())
  keeper.send('')
  t.is(receiver.receive(0)!.length, 0)
  const senders = [1, 2, 3, 4].map((tag) =>
    startFixture(t, 'channel-peer.js', ['send', receiver.name, String(COUNT), String(MAX), String(tag)]),
  )
  const next = [0, 0, 0, 0, 0]
  for (let n = 0; n < 4 * COUNT; n++) {
    const view = receiver.receiveView(60_000)
    if (!view) return t.fail(`message ${n}: ${view === null ? 'the stream ended' : 'timed out'}`)
    // Byte 4 of each message says whose it is; check() checks all the rest.
    const tag = view[4]
    if (!(tag >= 1 && tag <= 4)) return t.fail(`message ${n}: no sender ${tag}`)
    check(view, tag, next[tag], MAX)
    next[tag] += 1
  }
  keeper.close()
  t.is(receiver.receive(60_000), null)
  t.deepEqual(next.slice(1), [COUNT, COUNT, COUNT, COUNT])
  for (const sender of senders) t.is((await sender.done).code, 0)
})

test.serial('a sender killed mid-stream: the receiver drains whole messages, then ERR_SHM_PEER_DIED', async (t) => {
  const receiver = fresh(t, { capacity: 4096 })
  const flood = startFixture(t, 'channel-peer.js', ['flood', receiver.name, '7'])
  t.is(await flood.line('ready'), 'ready')
  for (let i = 0; i < 1000; i++) t.deepEqual(receiver.receive(10_000), Buffer.alloc(256, 7))
  flood.child.kill('SIGKILL')
  t.is((await flood.done).signal, 'SIGKILL')
  let drained = 0
  const error = t.throws(() => {
    for (;;) {
      const message = receiver.receive(10_000)
      if (!message) throw new Error(`expected an error, got ${message}`)
      if (!message.equals(Buffer.alloc(256, 7))) throw new Error('a torn message')
      drained += 1
    }
  })
  t.is((error as { code?: string }).code, 'ERR_SHM_PEER_DIED')
  t.true(drained <= receiver.capacity / 264)
  // Async receivers see it too.
  await t.throwsAsync(receiver.receiveAsync({ timeout: 10_000 }), { code: 'ERR_SHM_PEER_DIED' })
})

test.serial('a receiver killed while the ring is full: senders get ERR_SHM_PEER_DIED, sync and async', async (t) => {
  const sender = fresh(t, { capacity: 4096 })
  sender.send('first')
  const holder = startFixture(t, 'channel-peer.js', ['hold-receiver', sender.name])
  t.is(await holder.line('ready'), 'ready')
  while (sender.send(Buffer.alloc(100), 0));
  const pending = sender.sendAsync(Buffer.alloc(100))
  holder.child.kill('SIGKILL')
  await t.throwsAsync(pending, { code: 'ERR_SHM_PEER_DIED' })
  t.throws(() => sender.send(Buffer.alloc(100), 10_000), { code: 'ERR_SHM_PEER_DIED' })
})

test.serial('closing wakes the other side: a receiver sees the end after draining, senders see ERR_SHM_CHANNEL_CLOSED', async (t) => {
  const receiver = fresh(t)
  const child = runFixture('channel-peer.js', ['send', receiver.name, '3', '100', '0'])
  const got: Buffer[] = []
  for await (const message of receiver) got.push(message)
  t.is((await child).code, 0)
  t.deepEqual(got, [0, 1, 2].map((i) => messageBytes(0, i, 100)))
  // The receiver closes: a sender asleep on the full ring wakes with a code.
  const other = fresh(t, { capacity: 64 })
  const sender = Channel.open(other.name)
  t.teardown(() => sender.close())
  sender.send('x')
  t.is(other.receive(0)!.toString(), 'x')
  while (sender.send('y'.repeat(24), 0));
  t.false(sender.send('z'.repeat(24), 0))
  const pending = sender.sendAsync('z'.repeat(24))
  other.close()
  await t.throwsAsync(pending, { code: 'ERR_SHM_CHANNEL_CLOSED' })
  t.throws(() => sender.send('z'), { code: 'ERR_SHM_CHANNEL_CLOSED' })
  t.throws(() => Channel.open(other.name).receive(0), { code: 'ERR_SHM_CHANNEL_CLOSED' })
  // With room in the ring, a sender that sent before learns it at its next send.
  const roomy = fresh(t)
  const early = Channel.open(roomy.name)
  t.teardown(() => early.close())
  t.true(early.send('one'))
  t.true(early.send('two'))
  t.is(roomy.receive(0)!.toString(), 'one')
  roomy.close()
  t.throws(() => early.send('three'), { code: 'ERR_SHM_CHANNEL_CLOSED' })
})

test.serial('a sender killed holding the send lock it took in JavaScript: the next sender takes it over', async (t) => {
  const receiver = fresh(t, { capacity: 1024 })
  const holder = startFixture(t, 'channel-peer.js', ['hold-send-lock', receiver.name])
  t.is(await holder.line('ready'), 'ready')
  const sender = Channel.open(receiver.name)
  t.teardown(() => sender.close())
  // The holder lives: its word names a live thread, so the lock stays held.
  t.false(sender.send('blocked', 30))
  holder.child.kill('SIGKILL')
  t.is((await holder.done).signal, 'SIGKILL')
  t.true(sender.send('taken over', 10_000))
  t.true(sender.send('and released', 0))
  t.is(receiver.receive(0)!.toString(), 'taken over')
  t.is(receiver.receive(0)!.toString(), 'and released')
})

test.serial('positions past 2^32, 2^53 and 2^63: messages cross each boundary whole', (t) => {
  const MAX = 100
  for (const start of [2n ** 32n - 296n, 2n ** 53n - 296n, 2n ** 63n - 296n]) {
    const receiver = fresh(t, { capacity: 1024, maxMessage: MAX })
    // Before anyone sends or receives: an empty ring whose positions are about to cross.
    const shm = SharedMemory.open(receiver.name, 0)
    const header = Buffer.alloc(8)
    header.writeBigUInt64LE(start)
    shm.write(header, 64)
    shm.write(header, 128)
    const sender = Channel.open(receiver.name)
    let bytes = 0n
    for (let i = 0; i < 60; i++) {
      const message = messageBytes(0, i, MAX)
      t.true(sender.send(message, 0))
      bytes += BigInt(8 + Math.ceil(message.length / 8) * 8)
      // Now and then two in a row, so that the receiver finds them both in one look.
      if (i % 3 === 0) continue
      if (i % 3 === 1) check(receiver.receiveView(0)!, 0, i - 1, MAX)
      check(receiver.receiveView(0)!, 0, i, MAX)
    }
    t.is(receiver.receive(0), undefined)
    const head = shm.read(64, 8).readBigUInt64LE(0)
    t.is(shm.read(128, 8).readBigUInt64LE(0), head, `start ${start}: tail = head`)
    t.true(head >= start + bytes && head < start + bytes + 60n * 1024n, `start ${start}: head ${head}`)
    sender.close()
    shm.close()
  }
})

test.serial('one receiver at a time: another process gets ERR_SHM_CHANNEL_BUSY', async (t) => {
  const receiver = fresh(t)
  t.is(receiver.receive(0), undefined)
  const result = await runFixture('channel-peer.js', ['busy-receiver', receiver.name])
  t.is(result.stdout.trim(), 'ERR_SHM_CHANNEL_BUSY', result.stderr)
  // So does a second handle in this thread.
  const second = Channel.open(receiver.name)
  t.teardown(() => second.close())
  t.throws(() => second.receive(0), { code: 'ERR_SHM_CHANNEL_BUSY' })
})

test.serial('receiveView lends the ring until the next receive; close empties it', (t) => {
  const receiver = fresh(t, { capacity: 1024 })
  const sender = Channel.open(receiver.name)
  t.teardown(() => sender.close())
  sender.send(new Uint8Array([1, 2, 3]))
  sender.send(new Float64Array([1.5]))
  sender.send('héllo')
  const view = receiver.receiveView(0)!
  t.deepEqual([...view], [1, 2, 3])
  t.is(view.byteOffset % 8, 0, 'payloads are 8-byte aligned')
  t.is(receiver.receive(0)!.readDoubleLE(0), 1.5)
  const last = receiver.receiveView(0)!
  t.is(last.toString(), 'héllo')
  receiver.close()
  assertDetached(t, last, 'a view from receiveView after close()')
})

test.serial('timeouts, aborts and async waits', async (t) => {
  const receiver = fresh(t, { capacity: 64 })
  t.is(receiver.receive(0), undefined)
  t.is(receiver.receive(20), undefined)
  t.is(await receiver.receiveAsync({ timeout: 20 }), undefined)
  const controller = new AbortController()
  const aborted = receiver.receiveAsync({ signal: controller.signal })
  controller.abort()
  await t.throwsAsync(aborted, { name: 'AbortError', code: 'ABORT_ERR' })
  const sender = Channel.open(receiver.name)
  t.teardown(() => sender.close())
  const later = receiver.receiveAsync({ timeout: 10_000 })
  setTimeout(() => sender.send('late'), 20)
  t.is((await later)!.toString(), 'late')
  // Fill the ring (the receiver first frees 'late'), then time out on it.
  t.is(receiver.receive(0), undefined)
  let sent = 0
  while (sender.send('a'.repeat(24), 0)) sent += 1
  t.true(sent >= 1)
  t.false(sender.send('c'.repeat(24), 20))
  t.false(await sender.sendAsync('c'.repeat(24), { timeout: 20 }))
  const queued = sender.sendAsync('c'.repeat(24))
  for (let i = 0; i < sent; i++) t.is(receiver.receive(0)!.toString(), 'a'.repeat(24))
  // The last one is freed by the next receive, which then finds the queued one.
  t.is((await receiver.receiveAsync({ timeout: 10_000 }))!.toString(), 'c'.repeat(24))
  t.true(await queued)
})

test.serial('bad sizes, closed handles, foreign segments and bad options give codes', async (t) => {
  const channel = fresh(t, { capacity: 1024, maxMessage: 100 })
  t.is(channel.capacity, 1024)
  t.is(channel.maxMessage, 100)
  t.throws(() => channel.send(Buffer.alloc(101)), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => channel.send(42 as never), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => channel.send('x', -1), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => channel.receive('1' as never), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => Channel.open(uniqueName(), { create: true, capacity: 100 }), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => Channel.open(uniqueName(), { create: true, capacity: 1024, maxMessage: 600 }), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => Channel.open(uniqueName(), { create: true, capcity: 1024 } as never), { code: 'ERR_INVALID_ARG_VALUE' })
  t.throws(() => Channel.open(uniqueName()), { code: 'ENOENT' })
  await t.throwsAsync(channel.receiveAsync({ timeot: 1 } as never), { code: 'ERR_INVALID_ARG_VALUE' })
  // A segment that holds something else, and one too small for a header.
  const foreign = uniqueName('foreign')
  deleteAtEnd(t, foreign)
  const shm = SharedMemory.open(foreign, 4096, { create: true })
  shm.write('not a channel')
  t.throws(() => Channel.open(foreign), { code: 'ERR_SHM_NOT_A_CHANNEL' })
  t.throws(() => Channel.open(foreign, { create: true }), { code: 'ERR_SHM_NOT_A_CHANNEL' })
  // A channel of layout version 1 (its send lock where version 2 has nothing) is refused.
  const older = uniqueName('older')
  deleteAtEnd(t, older)
  Channel.open(older, { create: true, capacity: 1024 }).close()
  const version = Buffer.alloc(4)
  version.writeUInt32LE(1)
  const olderShm = SharedMemory.open(older, 0)
  olderShm.write(version, 4)
  olderShm.close()
  t.throws(() => Channel.open(older), { code: 'ERR_SHM_NOT_A_CHANNEL', message: /version is 1/ })
  // Positions that are not multiples of 8 are a foreign writer's: codes, never a misaligned access.
  for (const [field, position] of [
    [128, 4n],
    [64, 12n],
  ] as const) {
    const odd = fresh(t, { capacity: 1024 })
    const oddSender = Channel.open(odd.name)
    t.teardown(() => oddSender.close())
    t.true(oddSender.send('fine'))
    t.is(odd.receive(0)!.toString(), 'fine')
    t.is(odd.receive(0), undefined, "frees 'fine': tail is at rest")
    const word = Buffer.alloc(8)
    word.writeBigUInt64LE(position)
    const oddShm = SharedMemory.open(odd.name, 0)
    oddShm.write(word, field)
    oddShm.close()
    if (field === 64) t.throws(() => oddSender.send('x'), { code: 'ERR_SHM_NOT_A_CHANNEL', message: /head \(12\)/ })
    else t.throws(() => odd.receive(0), { code: 'ERR_SHM_NOT_A_CHANNEL', message: /tail \(4\)/ })
  }
  const tiny = uniqueName('tiny')
  deleteAtEnd(t, tiny)
  SharedMemory.open(tiny, 16, { create: true }).close()
  t.throws(() => Channel.open(tiny), { code: 'ERR_SHM_NOT_A_CHANNEL' })
  shm.close()
  channel.close()
  channel.close()
  t.true(channel.closed)
  t.throws(() => channel.send('x'), { code: 'ERR_SHM_CLOSED' })
  t.throws(() => channel.receive(0), { code: 'ERR_SHM_CLOSED' })
  t.throws(() => Channel.prototype.send.call({}, 'x'), { code: 'ERR_INVALID_THIS' })
  // The binding itself takes only the channels it made, and Uint8Arrays.
  const calls = channelCalls()
  t.throws(() => calls.send({}, new Uint8Array(1), 0, false, false), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => calls.receive(new Uint8Array(8), 0, false, false), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => calls.attach(new Uint8Array(600)), { code: 'ERR_SHM_NOT_ATTACHED' })
  t.throws(() => new (Channel as unknown as new () => Channel)(), { code: 'ERR_ILLEGAL_CONSTRUCTOR' })
})

// The Python receiver opens the segment under /dev/shm and sleeps on a Linux futex: Linux only.
if (process.platform === 'linux') {
  test.serial('a Python receiver (examples/channel-python) gets every message of a Node producer, in order', async (t) => {
    const result = await runNode([join(__dirname, '..', 'examples', 'channel-python', 'producer.js')])
    t.is(result.code, 0, result.stderr)
    t.regex(result.stdout, /^message 0 from node\nmessage 1 from node/)
    t.regex(result.stdout, /message 4999 from node\nreceived 5000\n$/)
  })
}

test.serial('a sender that has sent before still checks every argument: a refused send sends nothing', (t) => {
  const receiver = fresh(t, { capacity: 1024, maxMessage: 100 })
  const sender = Channel.open(receiver.name)
  t.teardown(() => sender.close())
  // The first send goes through the addon; the next Buffers go straight to the ring.
  t.true(sender.send(Buffer.from('first')))
  t.throws(() => sender.send(Buffer.alloc(1), -1), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => sender.send(Buffer.alloc(1), Number.NaN), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => sender.send(Buffer.alloc(1), '5' as never), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => sender.send(Buffer.alloc(101)), { code: 'ERR_OUT_OF_RANGE' })
  t.true(sender.send(Buffer.from('second'), 0))
  t.true(sender.send(Buffer.from('third'), Infinity))
  t.deepEqual(
    [receiver.receive(0), receiver.receive(0), receiver.receive(0)].map((message) => message?.toString()),
    ['first', 'second', 'third'],
  )
  t.is(receiver.receive(0), undefined, 'the refused sends sent nothing')
  sender.close()
  t.throws(() => sender.send(Buffer.from('late')), { code: 'ERR_SHM_CLOSED' })
})

test.serial('worker threads: a sender thread and the receiving main thread, each its own liveness', async (t) => {
  const receiver = fresh(t, { capacity: 1024 })
  const worker = new Worker(
    `const { Channel } = require(${JSON.stringify(join(__dirname, '..'))})
     const { workerData } = require('node:worker_threads')
     const channel = Channel.open(workerData)
     for (let i = 0; i < 10000; i++) channel.send(String(i))
     channel.close()`,
    { eval: true, workerData: receiver.name },
  )
  // Listened for now: the worker may exit before the last message is read.
  const exited = new Promise((resolve) => worker.once('exit', resolve))
  const got: string[] = []
  for await (const message of receiver) got.push(message.toString())
  t.is(got.length, 10000)
  t.true(got.every((message, i) => message === String(i)))
  await exited
})
