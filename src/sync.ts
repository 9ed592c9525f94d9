// Cross-process synchronization: Atomics.wait/notify that reach
// every process attached to a segment, an async wait that never blocks the
// event loop, and a mutex that survives its owner's death.

import { types } from 'node:util'

import { SyncOutcome, cancelWait, checkMutex, initSync, keepAlive, lockMutexAsync, syncCalls, waitWordAsync } from '../binding'
import { invalidArgType, invalidThis, libraryError, outOfRange, type LibraryErrorCode } from './errors'
import { booleanOption, validateInteger, validateOptions } from './validate'

/** How {@link wait} and {@link waitAsync} end, as `Atomics.wait` says it. */
export type WaitResult = 'ok' | 'not-equal' | 'timed-out'
/** How {@link SharedMutex.lock} and {@link SharedMutex.lockAsync} end. */
export type LockResult = 'ok' | 'owner-died' | 'timed-out'
/** How {@link SharedMutex.tryLock} ends. */
export type TryLockResult = 'ok' | 'owner-died' | 'busy'

/** Options of {@link wait}. */
export interface WaitOptions {
  /**
   * Watch the word for a moment (2 to 100 µs, learned from recent waits)
   * before sleeping, so that a partner
   * that answers quickly costs no sleep and no wake-up latency. Default `true`.
   */
  spin?: boolean
}

/** Options of {@link waitAsync} and {@link SharedMutex.lockAsync}. */
export interface AsyncWaitOptions {
  /**
   * Aborting it ends the wait: the promise rejects with an `AbortError`,
   * unless the wait ended first (woken, or the lock taken), in which case it
   * settles as it would have without the abort.
   */
  signal?: AbortSignal
  /**
   * Keep the process alive while this wait is pending, as a pending timer
   * does. Default `false`: like `Atomics.waitAsync` (and an unref'd timer),
   * a pending wait alone does not keep Node running.
   */
  ref?: boolean
}

/** Options of {@link SharedMutex}. */
export interface SharedMutexOptions {
  /** Spin a moment (2 to 100 µs, learned) before sleeping in `lock()`. Default `true`. */
  spin?: boolean
}

/** The synchronous calls, as plain Node-API functions (crates/node/src/hot.rs). */
const native = syncCalls()

// What the binding's SyncOutcome codes (crates/node/src/outcome.rs, a const
// enum in binding.d.ts) mean to users: OUTCOMES[SyncOutcome.Ok] is 'ok', ...
const OUTCOMES = ['ok', 'not-equal', 'timed-out', 'owner-died', 'busy'] as const

type Outcome = (typeof OUTCOMES)[number]

interface Pending {
  resolve(value: Outcome): void
  reject(error: Error): void
  /** Removes the abort listener, drops the keep-alive. */
  done(): void
  /** The signal whose abort cancelled the request (its reason is the cause). */
  signal: AbortSignal | undefined
  /**
   * The view waited on, held until the request ends: a program may keep
   * only the promise, and the collector would then unmap the view and end
   * the wait as if it had been detached.
   */
  view: ArrayBufferView
}

/**
 * Promises waiting for the waiter threads, by request id. A request leaves
 * only when the native side reports how it ended, aborted or not: a wake-up
 * or a lock that came before the abort is reported rather than lost.
 */
const pending = new Map<number, Pending>()
/** This copy's receiver on the native side (`initSync`), once made. */
let token: number | undefined
/** Pending waits with `ref: true`; while any, the event loop stays alive. */
let refs = 0

function holdLoop(on: boolean): void {
  refs += on ? 1 : -1
  if (refs === (on ? 1 : 0) && token !== undefined) keepAlive(on, token)
}

function settled(id: number, code: SyncOutcome, errorCode: string, message: string, errno: number, syscall: string): void {
  const waiter = pending.get(id)
  if (waiter === undefined) return
  pending.delete(id)
  waiter.done()
  if (code <= SyncOutcome.Busy) waiter.resolve(OUTCOMES[code as number] as Outcome)
  else if (code === SyncOutcome.Detached) waiter.reject(libraryError('ERR_SHM_NOT_ATTACHED', 'The view was detached while waiting'))
  else if (code === SyncOutcome.Cancelled) waiter.reject(abortError(waiter.signal))
  else {
    const error = libraryError(errorCode as LibraryErrorCode, message)
    // An OS error keeps its errno and syscall, as the synchronous calls' do.
    if (errno !== 0) Object.assign(error, { errno, syscall })
    waiter.reject(error)
  }
}

/**
 * This copy's receiver token. Each copy of this module loaded in a thread
 * registers its own, so that outcomes come back to the copy that asked.
 */
function receiver(): number {
  token ??= initSync(settled)
  return token
}

function abortError(signal: AbortSignal | undefined): Error {
  const error = new Error('The operation was aborted', { cause: signal?.reason })
  error.name = 'AbortError'
  Object.defineProperty(error, 'code', { value: 'ABORT_ERR', enumerable: true, writable: true, configurable: true })
  return error
}

function validateInt32Array(view: unknown): asserts view is Int32Array {
  // `instanceof` is the fast path; util.types also knows other realms' arrays.
  if (!(view instanceof Int32Array) && !types.isInt32Array(view)) {
    throw invalidArgType('view', 'an instance of Int32Array', view)
  }
}

function validateTimeout(timeout: unknown): number {
  if (timeout === undefined) return Infinity
  if (typeof timeout !== 'number') throw invalidArgType('timeout', 'of type number', timeout)
  if (Number.isNaN(timeout) || timeout < 0) {
    throw outOfRange('timeout', '>= 0 milliseconds (Infinity: no limit)', timeout)
  }
  return timeout
}

/** An int32 or uint32 value, as `Atomics.wait` compares it (ToInt32). */
function validateExpected(value: unknown): number {
  if (typeof value !== 'number') throw invalidArgType('value', 'of type number', value)
  if (!Number.isInteger(value) || value < -(2 ** 31) || value > 2 ** 32 - 1) {
    throw outOfRange('value', 'an integer >= -2^31 and <= 2^32 - 1', value)
  }
  return value | 0
}

interface AsyncOptions {
  signal: AbortSignal | undefined
  ref: boolean
}

function validateAsyncOptions(options: unknown): AsyncOptions {
  const given = validateOptions(options, ['signal', 'ref'])
  const ref = booleanOption(given, 'ref', false)
  const signal = given.signal
  if (signal === undefined) return { signal: undefined, ref }
  if (!(signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', signal)
  return { signal, ref }
}

/**
 * Turns a binding start result (an id, or `-1 - code`) into a promise. An
 * abort asks the waiter thread to stop; the promise settles when it has:
 * `AbortError` if it stopped first, else the wake-up or lock it got.
 */
function track(started: number, view: ArrayBufferView, options: AsyncOptions): Promise<Outcome> {
  if (started < 0) return Promise.resolve(OUTCOMES[-1 - started])
  const { signal, ref } = options
  if (ref) holdLoop(true)
  return new Promise<Outcome>((resolve, reject) => {
    const onAbort = (): void => cancelWait(started)
    const done = (): void => {
      signal?.removeEventListener('abort', onAbort)
      if (ref) holdLoop(false)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    pending.set(started, { resolve, reject, done, signal, view })
  })
}

/**
 * `Atomics.wait` across processes: blocks this thread while `view[index]`
 * holds `value`. `view` is an Int32Array over an attached segment (any
 * process attached to it can wake us with {@link notify}).
 *
 * Returns `'not-equal'` at once if the word does not hold `value`, `'ok'`
 * when woken or when the word changes, `'timed-out'` after `timeout` ms.
 *
 * @param timeout Milliseconds (fractions allowed); `Infinity` (default): no limit.
 * @throws `ERR_SHM_NOT_ATTACHED` when `view` is not over an attached segment;
 *   `ERR_OUT_OF_RANGE` for an index outside it; argument errors.
 */
export function wait(view: Int32Array, index: number, value: number, timeout?: number, options?: WaitOptions): WaitResult {
  validateInt32Array(view)
  validateInteger(index, 'index')
  const expected = validateExpected(value)
  const ms = validateTimeout(timeout)
  const spin = booleanOption(validateOptions(options, ['spin']), 'spin', true)
  return OUTCOMES[native.wait(view, index, expected, ms, spin)] as WaitResult
}

/**
 * `Atomics.waitAsync` across processes: resolves when `view[index]` is
 * notified or changes (`'ok'`), or after `timeout` ms (`'timed-out'`);
 * `'not-equal'` at once if it does not hold `value`. It neither blocks the
 * event loop nor takes a thread of libuv's pool: a waiter thread of this
 * library sleeps on the word. A pending wait does not keep the process
 * alive (like `Atomics.waitAsync`) unless `options.ref` is `true`.
 *
 * Rejects with an `AbortError` when `options.signal` aborts (unless a
 * wake-up reached it first: then `'ok'`, so that no wake counted by a
 * `notify` is lost), and with `ERR_SHM_NOT_ATTACHED` if the view is detached
 * meanwhile.
 */
export function waitAsync(
  view: Int32Array,
  index: number,
  value: number,
  timeout?: number,
  options?: AsyncWaitOptions,
): Promise<WaitResult> {
  validateInt32Array(view)
  validateInteger(index, 'index')
  const expected = validateExpected(value)
  const ms = validateTimeout(timeout)
  const asyncOptions = validateAsyncOptions(options)
  if (asyncOptions.signal?.aborted) return Promise.reject(abortError(asyncOptions.signal))
  return track(waitWordAsync(view, index, expected, ms, receiver()), view, asyncOptions) as Promise<WaitResult>
}

/**
 * `Atomics.notify` across processes: wakes up to `count` waiters (default:
 * all) on `view[index]`, in every process attached to the segment; `0`
 * wakes nobody. Change the word first: a waiter still spinning sees only
 * changes, and so does a `waitAsync` whose wake-up the kernel did not report
 * (docs/api.md, "How waiting works").
 *
 * @returns how many the OS reports woken: exact on Linux; on macOS 1 for
 *   "all" when someone woke; 0 on Windows, where other processes poll.
 */
export function notify(view: Int32Array, index: number, count?: number): number {
  validateInt32Array(view)
  validateInteger(index, 'index')
  let n = Infinity
  if (count !== undefined) {
    if (typeof count !== 'number') throw invalidArgType('count', 'of type number', count)
    if (count !== Infinity && (!Number.isInteger(count) || count < 0)) {
      throw outOfRange('count', 'an integer >= 0 or Infinity', count)
    }
    n = count
  }
  return native.notify(view, index, n)
}

/**
 * A mutex that lives in 8 bytes of a segment (zero: unlocked), shared by
 * every process attached to it. If its owner dies holding it, the next
 * locker gets `'owner-died'` instead of `'ok'` and holds the lock: it should
 * repair the data the lock protects.
 *
 * The owner is a thread: `unlock()` must come from the thread that locked
 * (async code on one thread shares it). Spins briefly before sleeping; an
 * uncontended `lock()`/`unlock()` makes no system call.
 *
 * @example
 * const mutex = new SharedMutex(view, 0)   // bytes 0..7 of the segment
 * if (mutex.lock() === 'owner-died') repair()
 * try { update() } finally { mutex.unlock() }
 */
export class SharedMutex {
  /** Bytes a mutex takes in the segment. */
  static readonly BYTES = 8

  readonly #view: ArrayBufferView
  readonly #byteOffset: number
  readonly #spin: boolean

  /**
   * @param view A Buffer, TypedArray or DataView over an attached segment,
   *   read-write.
   * @param byteOffset Where the mutex starts in `view`; 8-byte aligned in
   *   the segment.
   * @throws `ERR_SHM_NOT_ATTACHED`, `ERR_SHM_READ_ONLY`, `ERR_OUT_OF_RANGE`,
   *   `ERR_INVALID_ARG_VALUE` (misaligned), `ERR_INVALID_ARG_TYPE`.
   */
  constructor(view: ArrayBufferView, byteOffset = 0, options?: SharedMutexOptions) {
    if (!ArrayBuffer.isView(view)) throw invalidArgType('view', 'a Buffer, TypedArray or DataView', view)
    validateInteger(byteOffset, 'byteOffset')
    this.#spin = booleanOption(validateOptions(options, ['spin']), 'spin', true)
    checkMutex(view, byteOffset)
    this.#view = view
    this.#byteOffset = byteOffset
  }

  /**
   * Locks, blocking this thread at most `timeout` ms (default: no limit).
   * @throws `ERR_SHM_DEADLOCK` if this thread holds it already.
   */
  lock(timeout?: number): LockResult {
    SharedMutex.#check(this)
    const ms = validateTimeout(timeout)
    return OUTCOMES[native.lock(this.#view, this.#byteOffset, ms, this.#spin)] as LockResult
  }

  /**
   * Locks without blocking the event loop: a waiter thread takes the lock for
   * this thread. Resolves `'ok'`, `'owner-died'` or `'timed-out'`; rejects
   * with an `AbortError` when `options.signal` aborts before the lock is
   * taken. A lock taken first is kept and reported (`'ok'`/`'owner-died'`):
   * once the promise has rejected, this thread does not hold the lock.
   */
  lockAsync(timeout?: number, options?: AsyncWaitOptions): Promise<LockResult> {
    SharedMutex.#check(this)
    const ms = validateTimeout(timeout)
    const asyncOptions = validateAsyncOptions(options)
    if (asyncOptions.signal?.aborted) return Promise.reject(abortError(asyncOptions.signal))
    const started = lockMutexAsync(this.#view, this.#byteOffset, ms, receiver())
    return track(started, this.#view, asyncOptions) as Promise<LockResult>
  }

  /** Locks if free (or if its owner died); never waits: `'busy'` otherwise. */
  tryLock(): TryLockResult {
    SharedMutex.#check(this)
    return OUTCOMES[native.tryLock(this.#view, this.#byteOffset)] as TryLockResult
  }

  /**
   * Unlocks, waking one waiter if any sleeps.
   * @throws `ERR_SHM_NOT_OWNER` unless this thread holds the lock.
   */
  unlock(): void {
    SharedMutex.#check(this)
    native.unlock(this.#view, this.#byteOffset)
  }

  /** `ERR_INVALID_THIS` unless `self` is a SharedMutex (a method called on another object). */
  static #check(self: unknown): void {
    if (typeof self !== 'object' || self === null || !(#view in self)) throw invalidThis('SharedMutex')
  }
}
