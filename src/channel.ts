// Channel: a ring of messages in a named segment, between any number of
// senders and one receiver in any processes. The ring protocol lives in the
// core (crates/core/src/channel); this file validates, opens the segment,
// sends and receives what needs no wait over the view (channel-ring.ts),
// and leaves the rest to the binding.

import { Buffer } from 'node:buffer'

import { ChannelOutcome, channelCalls, channelHeader, channelLayout, channelMaxMessage } from '../binding'
import { RingView } from './channel-ring'
import { illegalConstructor, invalidArgType, invalidThis, libraryError, outOfRange } from './errors'
import { SharedMemory } from './shared-memory'
import { waitAsync } from './sync'
import { booleanOption, bytesOf, validateInteger, validateOptions, validateString } from './validate'

/** Options of {@link Channel.open}. */
export interface ChannelOptions {
  /** Create the channel if it does not exist. Default `false`. */
  create?: boolean
  /**
   * Bytes of the ring when creating (a multiple of 8, 64 … 2^31). Default:
   * 1 MiB, or enough for two messages of `maxMessage`. Ignored when the
   * channel exists: its own shape wins.
   */
  capacity?: number
  /**
   * The largest message in bytes when creating. Default and maximum: half
   * the capacity less 8. Ignored when the channel exists.
   */
  maxMessage?: number
  /** Permission bits of a channel this call creates, masked by the umask. Default `0o600`. */
  mode?: number
  /**
   * Watch the ring for a moment (2 to 100 µs, learned) before sleeping when
   * it is empty (receive) or full (send): a partner that answers quickly
   * then costs no sleep and no wake-up. Default `true`.
   */
  spin?: boolean
}

/** Options of {@link Channel.sendAsync} and {@link Channel.receiveAsync}. */
export interface ChannelWaitOptions {
  /** Give up after this many milliseconds. Default `Infinity`. */
  timeout?: number
  /** Aborting it rejects the promise with an `AbortError`. */
  signal?: AbortSignal
}

const LAYOUT = channelLayout()
/** The per-message calls, as plain Node-API functions (crates/node/src/channel.rs). */
const native = channelCalls()
type NativeChannel = ReturnType<typeof native.attach>
const RECEIVER = 0
const SENDER = 1
// `receive` returns a payload's offset (never below the 512-byte header)
// or one of the binding's ChannelOutcome codes.
const TIMED_OUT: number = ChannelOutcome.TimedOut
const ENDED: number = ChannelOutcome.Ended
const SENT: number = ChannelOutcome.Sent
/** How long an async wait sleeps before it asks whether the peer still lives. */
const LIVENESS_SLICE_MS = 50
const DEFAULT_CAPACITY = 1 << 20

type ViewMaker = new (buffer: ArrayBufferLike, byteOffset: number, length: number) => Buffer
/**
 * The class whose instances `buffer.subarray()` returns (Node's species of
 * Buffer), to make a view directly, at half the cost; `undefined` where a
 * runtime names none that makes Buffers (then `Buffer.from` makes the same view).
 */
const BufferView = ((): ViewMaker | undefined => {
  const species: unknown = (Buffer as unknown as Record<symbol, unknown>)[Symbol.species]
  if (typeof species !== 'function' || species === Buffer) return undefined
  try {
    const made: unknown = new (species as ViewMaker)(new ArrayBuffer(8), 4, 4)
    return made instanceof Buffer && made.byteOffset === 4 && made.length === 4 ? (species as ViewMaker) : undefined
  } catch {
    return undefined
  }
})()

const construct = Symbol('construct')
const OPTION_KEYS = ['create', 'capacity', 'maxMessage', 'mode', 'spin'] as const
const WAIT_KEYS = ['timeout', 'signal'] as const

function validateTimeout(value: unknown, argument: string): number {
  if (value === undefined) return Infinity
  if (typeof value !== 'number') throw invalidArgType(argument, 'of type number', value)
  if (Number.isNaN(value) || value < 0) throw outOfRange(argument, '>= 0', value)
  return value
}

function validateSignal(value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined
  if (!(value instanceof AbortSignal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', value)
  return value
}

function abortError(signal: AbortSignal): Error {
  const error = new Error('The operation was aborted', { cause: signal.reason })
  error.name = 'AbortError'
  Object.defineProperty(error, 'code', { value: 'ABORT_ERR', enumerable: true, writable: true, configurable: true })
  return error
}

/** The smallest power of two ≥ 1 MiB that carries two messages of `maxMessage`. */
function capacityFor(maxMessage: number): number {
  let capacity = DEFAULT_CAPACITY
  while (channelMaxMessage(capacity) < maxMessage && capacity < LAYOUT.maxCapacity) capacity *= 2
  return capacity
}

/**
 * A ring of messages in a named segment: any number of senders, one
 * receiver, in any processes (or threads). Messages arrive whole, in each
 * sender's order, exactly once; the data is copied once in and once out
 * (or lent with {@link Channel.receiveView}), never through the kernel.
 *
 * @example
 * // receiver
 * const ch = Channel.open('jobs', { create: true })
 * for await (const message of ch) console.log(message.toString())
 * // sender, in another process
 * const out = Channel.open('jobs', { create: true })
 * out.send('hello'); out.close()
 */
export class Channel implements Disposable, AsyncIterable<Buffer> {
  /** The name as given to `open`. */
  readonly name: string
  /** Bytes of the ring. */
  readonly capacity: number
  /** The largest message in bytes. */
  readonly maxMessage: number
  readonly #shm: SharedMemory
  // The view's buffer and offset, read once: `view.buffer` is a call into
  // V8's runtime for a buffer of external memory.
  readonly #buffer: ArrayBufferLike
  readonly #base: number
  readonly #words: Int32Array
  readonly #channel: NativeChannel
  readonly #ring: RingView
  readonly #spin: boolean
  /** Whether this end holds a sender slot (its first send went through the binding). */
  #sending = false
  #closed = false

  /** @internal Use {@link Channel.open}. */
  constructor(token: typeof construct, name: string, shm: SharedMemory, view: Buffer, channel: NativeChannel, spin: boolean) {
    if (token !== construct) throw illegalConstructor('use Channel.open() to open a channel')
    this.name = name
    this.#shm = shm
    this.#buffer = view.buffer
    this.#base = view.byteOffset
    this.#words = new Int32Array(view.buffer, view.byteOffset, LAYOUT.headerBytes >> 2)
    this.#channel = channel
    this.#spin = spin
    this.capacity = native.capacity(channel)
    this.maxMessage = native.maxMessage(channel)
    this.#ring = new RingView(view, this.capacity, this.maxMessage, native, channel)
  }

  /**
   * Opens the channel `name`, or with `create` creates it if missing.
   * @throws `ENOENT` without `create` when missing; `ERR_SHM_NOT_A_CHANNEL`
   *   for a segment that holds no channel; argument errors; the errors of
   *   {@link SharedMemory.open}.
   */
  static open(name: string, options?: ChannelOptions): Channel {
    validateString(name, 'name')
    const given = validateOptions(options, OPTION_KEYS)
    const create = booleanOption(given, 'create', false)
    const spin = booleanOption(given, 'spin', true)
    let mode = 0o600
    if (given.mode !== undefined) {
      validateInteger(given.mode, 'options.mode', 0, 0o777)
      mode = given.mode
    }
    let capacity = DEFAULT_CAPACITY
    if (given.capacity !== undefined) {
      validateInteger(given.capacity, 'options.capacity', LAYOUT.minCapacity, LAYOUT.maxCapacity)
      if (given.capacity % 8 !== 0) throw outOfRange('options.capacity', 'a multiple of 8', given.capacity)
      capacity = given.capacity
    }
    let maxMessage: number
    if (given.maxMessage !== undefined) {
      const limit = channelMaxMessage(given.capacity === undefined ? LAYOUT.maxCapacity : capacity)
      validateInteger(given.maxMessage, 'options.maxMessage', 0, limit)
      maxMessage = given.maxMessage
      if (given.capacity === undefined) capacity = capacityFor(maxMessage)
    } else {
      maxMessage = channelMaxMessage(capacity)
    }
    let shm: SharedMemory
    if (create) {
      // The header is written before the name is published: no opener ever
      // sees a segment that is not yet a channel.
      const header = channelHeader(capacity, maxMessage)
      const init = (view: Buffer): void => void view.set(header)
      try {
        shm = SharedMemory.open(name, LAYOUT.headerBytes + capacity, { create: true, exclusive: true, mode, init })
      } catch (error) {
        if ((error as { code?: unknown }).code !== 'EEXIST') throw error
        shm = SharedMemory.open(name, 0)
      }
    } else {
      shm = SharedMemory.open(name, 0)
    }
    try {
      const view = shm.attach()
      return new Channel(construct, name, shm, view, native.attach(view), spin)
    } catch (error) {
      shm.close()
      throw error
    }
  }

  /** Removes the channel's name, as {@link SharedMemory.delete} does. */
  static delete(name: string): void {
    SharedMemory.delete(name)
  }

  /** Whether {@link Channel.close} has run. */
  get closed(): boolean {
    return Channel.#of(this).#closed
  }

  /**
   * Copies `data` (bytes, or a string as UTF-8) into the ring as one
   * message, waiting up to `timeout` ms while the ring is full.
   * @returns `true` when sent, `false` when the ring stayed full for `timeout`.
   * @throws `ERR_OUT_OF_RANGE` for more than `maxMessage` bytes;
   *   `ERR_SHM_CHANNEL_CLOSED` once the receiver closed; `ERR_SHM_PEER_DIED`
   *   when the receiver died while the ring was full; `ERR_SHM_CLOSED`.
   */
  send(data: string | ArrayBufferView, timeout?: number): boolean {
    const self = Channel.#of(this)
    // The common case, kept small so that V8 inlines the ring's fast path
    // into it: a Buffer, no timeout or a valid one, an open end that has
    // sent before. Anything else, or a `false` (too long, no room, closed
    // ring), takes the checks below, which then throw or wait.
    if (
      data instanceof Buffer &&
      (timeout === undefined || (typeof timeout === 'number' && timeout >= 0)) &&
      self.#sending &&
      !self.#closed &&
      self.#ring.trySend(data)
    ) {
      return true
    }
    const bytes = self.#bytes(data)
    const ms = validateTimeout(timeout, 'timeout')
    self.#throwIfClosed()
    if (self.#sending && self.#ring.trySend(bytes)) return true
    return self.#sendNative(bytes, ms, self.#spin, false)
  }

  /**
   * {@link Channel.send} without blocking the event loop while the ring is full.
   * @returns `true` when sent, `false` when `options.timeout` passed first.
   */
  async sendAsync(data: string | ArrayBufferView, options?: ChannelWaitOptions): Promise<boolean> {
    const self = Channel.#of(this)
    const bytes = self.#bytes(data)
    const { timeout, signal } = Channel.#waitOptions(options)
    const deadline = performance.now() + timeout
    let check = false
    for (;;) {
      if (signal?.aborted) throw abortError(signal)
      self.#throwIfClosed()
      if (self.#sending && self.#ring.trySend(bytes)) return true
      if (self.#sendNative(bytes, 0, false, check)) return true
      const left = deadline - performance.now()
      if (left <= 0) return false
      // A sleep that ran its whole slice asks, next time, whether the receiver lives.
      check = (await self.#sleep(SENDER, bytes.byteLength, left, signal)) === 'timed-out'
    }
  }

  /**
   * The next message, copied into a new Buffer; waits up to `timeout` ms
   * while the ring is empty.
   * @returns the message; `null` when every sender closed and the ring is
   *   drained (the end); `undefined` when `timeout` passed first.
   * @throws `ERR_SHM_PEER_DIED` when the ring is drained and a sender died
   *   without closing; `ERR_SHM_CHANNEL_BUSY` while another receiver is
   *   attached; `ERR_SHM_CHANNEL_CLOSED`; `ERR_SHM_CLOSED`.
   */
  receive(timeout?: number): Buffer | null | undefined {
    const self = Channel.#of(this)
    const at = self.#receive(validateTimeout(timeout, 'timeout'), self.#spin, false)
    return at < LAYOUT.headerBytes ? Channel.#none(at) : self.#copy(at)
  }

  /**
   * As {@link Channel.receive}, but lends the message where it lies in the
   * ring, zero-copy. The view is valid until the next receive or `close()`
   * on this channel: after that the ring may reuse its bytes (after
   * `close()` it has length 0).
   */
  receiveView(timeout?: number): Buffer | null | undefined {
    const self = Channel.#of(this)
    const at = self.#receive(validateTimeout(timeout, 'timeout'), self.#spin, false)
    return at < LAYOUT.headerBytes ? Channel.#none(at) : self.#lend(at)
  }

  /**
   * {@link Channel.receive} without blocking the event loop while the ring
   * is empty. A pending call keeps the process alive, as a socket does.
   */
  async receiveAsync(options?: ChannelWaitOptions): Promise<Buffer | null | undefined> {
    const self = Channel.#of(this)
    const { timeout, signal } = Channel.#waitOptions(options)
    const deadline = performance.now() + timeout
    let check = false
    for (;;) {
      if (signal?.aborted) throw abortError(signal)
      const at = self.#receive(0, false, check)
      if (at >= LAYOUT.headerBytes) return self.#copy(at)
      if (at === ENDED) return null
      const left = deadline - performance.now()
      if (left <= 0) return undefined
      // A sleep that ran its whole slice asks, next time, whether the senders live.
      check = (await self.#sleep(RECEIVER, 0, left, signal)) === 'timed-out'
    }
  }

  /** `for await (const message of channel)`: every message, copied, until the end. */
  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer, void, undefined> {
    for (;;) {
      const message = await this.receiveAsync()
      if (message === null || message === undefined) return
      yield message
    }
  }

  /**
   * Leaves the channel and wakes whoever waits on it. A sender's close
   * lets the receiver see the end once every sender closed and it drained
   * the ring; the receiver's close closes the channel for every sender
   * (`ERR_SHM_CHANNEL_CLOSED`). Views from `receiveView` get length 0.
   * The segment stays until {@link Channel.delete}. A second call does nothing.
   */
  close(): void {
    const self = Channel.#of(this)
    if (self.#closed) return
    self.#closed = true
    native.close(self.#channel)
    self.#shm.close()
  }

  /** `using channel = Channel.open(...)` closes it at the end of the block. */
  [Symbol.dispose](): void {
    this.close()
  }

  /** The message's bytes, as a view whose length cannot change while it is copied (see RingView.trySend). */
  #bytes(data: unknown): Uint8Array {
    let bytes: Uint8Array
    // Buffers, which Node makes with a fixed length, first: the common case.
    if (data instanceof Buffer) bytes = data
    else if (typeof data === 'string') bytes = Buffer.from(data, 'utf8')
    else {
      bytes = bytesOf(data, 'data', 'of type string or a Buffer, TypedArray or DataView')
      // A Uint8Array of a growable SharedArrayBuffer may track its length,
      // which another thread can change: copy from a fixed-length view.
      if (bytes === data && bytes.byteLength !== 0) bytes = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    }
    if (bytes.byteLength > this.maxMessage) {
      throw outOfRange('data', `at most maxMessage (${this.maxMessage}) bytes`, `${bytes.byteLength} bytes`)
    }
    return bytes
  }

  #sendNative(bytes: Uint8Array, timeout: number, spin: boolean, check: boolean): boolean {
    const sent = native.send(this.#channel, bytes, timeout, spin, check) === SENT
    // It returned: this end holds a sender slot now.
    this.#sending = true
    return sent
  }

  /**
   * Frees the message handed out last, then finds the next one: in the
   * view when one is there, else through the binding (which waits up to
   * `timeout`). A payload's view offset, or a ChannelOutcome.
   */
  #receive(timeout: number, spin: boolean, check: boolean): number {
    this.#throwIfClosed()
    const ring = this.#ring
    ring.release()
    const found = ring.tryReceive()
    if (found !== 0) return found
    const at = native.receive(this.#channel, timeout, spin, check)
    // It returned: this end holds the receiver slot now.
    ring.startReceiving()
    if (at >= LAYOUT.headerBytes) ring.adopt(at)
    return at
  }

  #copy(at: number): Buffer {
    const copy = Buffer.allocUnsafe(this.#ring.length)
    copy.set(new Uint8Array(this.#buffer, this.#base + at, copy.length))
    return copy
  }

  #lend(at: number): Buffer {
    const length = this.#ring.length
    if (BufferView === undefined) return Buffer.from(this.#buffer, this.#base + at, length)
    return new BufferView(this.#buffer, this.#base + at, length)
  }

  static #none(at: number): null | undefined {
    return at === TIMED_OUT ? undefined : null
  }

  /** Waits off the event loop until the other side may have moved, at most one liveness slice. */
  async #sleep(side: number, length: number, left: number, signal: AbortSignal | undefined): Promise<string> {
    const seq = native.beginWait(this.#channel, side, length)
    if (seq === undefined) return 'ok'
    const index = side === RECEIVER ? LAYOUT.dataSeqIndex : LAYOUT.spaceSeqIndex
    try {
      return await waitAsync(this.#words, index, seq | 0, Math.min(left, LIVENESS_SLICE_MS), { signal, ref: true })
    } catch (error) {
      if (this.#closed) this.#throwIfClosed()
      throw error
    } finally {
      native.endWait(this.#channel, side)
    }
  }

  #throwIfClosed(): void {
    if (this.#closed) throw libraryError('ERR_SHM_CLOSED', 'The channel is closed')
  }

  static #waitOptions(options: unknown): { timeout: number; signal: AbortSignal | undefined } {
    const given = validateOptions(options, WAIT_KEYS)
    return { timeout: validateTimeout(given.timeout, 'options.timeout'), signal: validateSignal(given.signal) }
  }

  static #of(self: unknown): Channel {
    if (typeof self !== 'object' || self === null || !(#channel in self)) throw invalidThis('Channel')
    return self as Channel
  }
}
