// The common case of the ring protocol, done in JavaScript over the
// channel's view, so that a message that need not wait never crosses into
// the addon: a send takes the free send lock by compare-and-swap, copies,
// publishes `head` and releases the lock; a receive finds a published
// record and later frees it by storing `tail`. Each step is the one of
// crates/core/src/channel/ring.rs (whose protocol loom checks), in the same
// order and with the same checks, and docs/channel-layout.md describes both.
// Everything else goes to the addon: a full or empty ring (to wait), a lock
// someone else holds, a sleeper to wake, and anything that looks corrupt
// (the addon then reports it).
//
// Atomics on the view are sequentially consistent, so a store of `head` or
// `tail` and the following load of the other side's sleeper count are
// ordered as the fences of ring.rs order them. Positions are 64-bit; only
// their low halves change here, except when one crosses 2^32 (a 64-bit
// store then): `head - tail` is at most the capacity (< 2^32), so low
// halves say how far apart they are, and each side keeps where its own
// position lies in the data area.

import { channelLayout, channelLockWord } from '../binding'

const LAYOUT = channelLayout()
const HEADER = LAYOUT.headerBytes
const RECORD = LAYOUT.recordHeader
const HEAD = LAYOUT.headIndex
const TAIL = LAYOUT.tailIndex
const CLOSED = LAYOUT.closedIndex
const RECEIVER_SLEEPERS = LAYOUT.receiverSleepersIndex
const SENDER_SLEEPERS = LAYOUT.senderSleepersIndex
const SEND_LOCK = LAYOUT.sendLockIndex
const MESSAGE = LAYOUT.kindMessage
const WRAP = LAYOUT.kindWrap
/** What this thread stores in a send lock it holds (the `SharedMutex` owner word). */
const LOCKED = channelLockWord()
const TWO_TO_32 = 2 ** 32

/**
 * Rounds of {@link pause}: about 0.27 µs on the VM this was tuned on, the
 * time of two or three 64-byte sends. A shorter pause leaves the receiver
 * taking `head` back after nearly every message; 100 rounds made a
 * ping-pong's p50 0.2 µs slower (both with benchmark/channel.mjs).
 */
const PAUSE_ROUNDS = 50
let pauseSink = 0

/**
 * Waits a moment without touching shared memory (JavaScript has no `pause`
 * instruction; the sum keeps the loop from being optimized away). A
 * receiver faster than its sender otherwise reads `head` right after each
 * publish, so that every store of `head` must first fetch the line back,
 * which cost a busy channel about a tenth of its message rate.
 */
function pause(): void {
  let sum = pauseSink
  for (let round = 0; round < PAUSE_ROUNDS; round++) sum = (sum * 31 + round) | 0
  pauseSink = sum
}

/** The addon's calls for what this file leaves to it. */
export interface RingCalls {
  unlockSend(channel: object): void
  wakeReceiver(channel: object): void
  wakeSenders(channel: object): void
}

/** Bytes a record of `length` payload bytes takes: its header and the payload padded to 8. */
function recordBytes(length: number): number {
  return RECORD + ((length + 7) & ~7)
}

/** Where the 64-bit position `high * 2^32 + low` lies in a data area of `capacity` bytes. */
function positionOf(low: number, high: number, capacity: number): number {
  // Exact in a double below 2^53; past that (petabytes later), BigInt.
  if (high < 2 ** 21) return (high * TWO_TO_32 + low) % capacity
  return Number(((BigInt(high) << 32n) | BigInt(low)) % BigInt(capacity))
}

/**
 * Stores, in one 64-bit store, the position at `words[index]` (low half)
 * moved on to the low half `low` across a 2^32 boundary: its high half
 * grows by one. Only this end stores that position.
 */
function storeCarried(words: Int32Array, pairs: BigInt64Array, index: number, low: number): void {
  const high = BigInt((words[index + 1] >>> 0) + 1)
  Atomics.store(pairs, index >> 1, BigInt.asIntN(64, (high << 32n) | BigInt(low)))
}

/** One channel end's fast path over its view (see the top of this file). */
export class RingView {
  readonly #words: Int32Array
  readonly #pairs: BigInt64Array
  readonly #bytes: Uint8Array
  readonly #fields: DataView
  readonly #capacity: number
  readonly #maxMessage: number
  readonly #calls: RingCalls
  readonly #channel: object
  // Sender: `head`'s low half after this end's last publish, and where it lies.
  #published = -1
  #publishedAt = 0
  // Sender: `tail`'s low half as last read (an older value only means less room).
  #tail = 0
  // Receiver: `head`'s low half as last read, `tail`'s (ours) and where it lies.
  #receiving = false
  #head = 0
  #consumed = 0
  #consumedAt = 0
  /** Receiver: the payload length of the message handed out last. */
  length = 0
  // Receiver: the message handed out last, freed by the next receive.
  #pending = false
  #nextTail = 0
  #nextAt = 0

  constructor(view: Uint8Array, capacity: number, maxMessage: number, calls: RingCalls, channel: object) {
    this.#words = new Int32Array(view.buffer, view.byteOffset, HEADER >> 2)
    this.#pairs = new BigInt64Array(view.buffer, view.byteOffset, HEADER >> 3)
    this.#bytes = view
    this.#fields = new DataView(view.buffer, view.byteOffset, view.byteLength)
    this.#capacity = capacity
    this.#maxMessage = maxMessage
    this.#calls = calls
    this.#channel = channel
  }

  /**
   * Sends `bytes` if the channel is open, the send lock free and the ring
   * has room: `false` leaves it to the addon. This end must hold a sender
   * slot already. `bytes` must have a fixed length (not a view that tracks
   * the length of a growable SharedArrayBuffer, which another thread could
   * grow between the check for room and the copy).
   */
  trySend(bytes: Uint8Array): boolean {
    const words = this.#words
    const length = bytes.byteLength
    // A detached view (length 0), a closed channel, a message too long: the
    // addon says so. (`closed` lies on a line that changes once, read
    // plainly: a send that races the receiver's close may go either way, as
    // it may in the addon.)
    if (words.length === 0 || words[CLOSED] !== 0 || length > this.#maxMessage) return false
    if (Atomics.compareExchange(this.#pairs, SEND_LOCK, 0n, LOCKED) !== 0n) return false
    let pushed: boolean
    try {
      pushed = this.#push(bytes, length)
    } finally {
      // Whatever happened, the lock is not left held by a live thread. A
      // record not published is never delivered: the next sender writes over it.
      this.#unlock()
    }
    if (!pushed) return false
    if (Atomics.load(words, RECEIVER_SLEEPERS) !== 0) this.#calls.wakeReceiver(this.#channel)
    return true
  }

  /** Writes and publishes one record, holding the send lock; `false` when there is no room. */
  #push(bytes: Uint8Array, length: number): boolean {
    const words = this.#words
    const capacity = this.#capacity
    // Only the holder of the lock stores `head`: a plain read sees the last store.
    const head = words[HEAD] >>> 0
    // Not a multiple of 8: a foreign writer's; the addon says so.
    if ((head & 7) !== 0) return false
    let at = head === this.#published ? this.#publishedAt : positionOf(head, words[HEAD + 1] >>> 0, capacity)
    const record = recordBytes(length)
    const toEnd = capacity - at
    const needed = record <= toEnd ? record : toEnd + record
    let used = (head - this.#tail) >>> 0
    if (used > capacity || needed > capacity - used) {
      this.#tail = Atomics.load(words, TAIL) >>> 0
      used = (head - this.#tail) >>> 0
      if (used > capacity || needed > capacity - used) return false
    }
    const fields = this.#fields
    let advance = record
    if (record > toEnd) {
      fields.setUint32(HEADER + at, 0, true)
      fields.setUint32(HEADER + at + 4, WRAP, true)
      advance += toEnd
      at = 0
    }
    this.#bytes.set(bytes, HEADER + at + RECORD)
    fields.setUint32(HEADER + at, length, true)
    fields.setUint32(HEADER + at + 4, MESSAGE, true)
    const published = (head + advance) >>> 0
    if (published < head) storeCarried(words, this.#pairs, HEAD, published)
    else Atomics.store(words, HEAD, published)
    this.#published = published
    this.#publishedAt = at + record === capacity ? 0 : at + record
    return true
  }

  #unlock(): void {
    // Anything but our own word: a waiter announced itself, and the addon wakes it.
    if (Atomics.compareExchange(this.#pairs, SEND_LOCK, LOCKED, 0n) !== LOCKED) this.#calls.unlockSend(this.#channel)
  }

  /** Called once this end holds the receiver slot: learns where `tail` stands. */
  startReceiving(): void {
    if (this.#receiving) return
    // Only the receiver stores `tail`; a dead one's last store came before our claim.
    const low = this.#words[TAIL] >>> 0
    // Not a multiple of 8: a foreign writer's; the addon says so at each receive.
    if ((low & 7) !== 0) return
    this.#consumed = low
    this.#consumedAt = positionOf(low, this.#words[TAIL + 1] >>> 0, this.#capacity)
    this.#head = low
    this.#receiving = true
  }

  /** Frees the message handed out last (and a wrap before it), waking senders that wait for room. */
  release(): void {
    if (!this.#pending) return
    this.#pending = false
    const words = this.#words
    const next = this.#nextTail
    if (next < this.#consumed) storeCarried(words, this.#pairs, TAIL, next)
    else Atomics.store(words, TAIL, next)
    this.#consumed = next
    this.#consumedAt = this.#nextAt
    if (Atomics.load(words, SENDER_SLEEPERS) !== 0) this.#calls.wakeSenders(this.#channel)
  }

  /**
   * The view offset of the next message's payload, or 0 when the ring
   * looks empty (or odd) and the addon must look. Call {@link release} first.
   */
  tryReceive(): number {
    if (!this.#receiving || this.#words.length === 0) return 0
    const tail = this.#consumed
    let head = this.#head
    if (head === tail) {
      // Drained what we knew of: give the sender a moment before taking
      // `head`'s cache line from it (see `pause`).
      pause()
      head = this.#head = Atomics.load(this.#words, HEAD) >>> 0
      if (head === tail) return 0
    }
    const capacity = this.#capacity
    const used = (head - tail) >>> 0
    if (used > capacity) return 0
    const fields = this.#fields
    let at = this.#consumedAt
    let length = fields.getUint32(HEADER + at, true)
    let kind = fields.getUint32(HEADER + at + 4, true)
    let skipped = 0
    if (kind === WRAP) {
      skipped = capacity - at
      if (skipped >= used) return 0
      at = 0
      length = fields.getUint32(HEADER, true)
      kind = fields.getUint32(HEADER + 4, true)
    }
    if (kind !== MESSAGE || length > this.#maxMessage) return 0
    const record = recordBytes(length)
    if (record > capacity - at || record > used - skipped) return 0
    this.length = length
    this.#handOut(tail, skipped, at, record)
    return HEADER + at + RECORD
  }

  /** Takes note of a message the addon found at view offset `offset`, to free it later. */
  adopt(offset: number): void {
    const at = offset - HEADER - RECORD
    this.length = this.#fields.getUint32(offset - RECORD, true)
    const record = recordBytes(this.length)
    const skipped = (at - this.#consumedAt + this.#capacity) % this.#capacity
    this.#handOut(this.#consumed, skipped, at, record)
    // `head` is at least past this message.
    this.#head = this.#nextTail
  }

  #handOut(tail: number, skipped: number, at: number, record: number): void {
    this.#pending = true
    this.#nextTail = (tail + skipped + record) >>> 0
    this.#nextAt = at + record === this.#capacity ? 0 : at + record
  }
}
