// The SharedMemory class: validates, then calls the binding.

import { kMaxLength } from 'node:buffer'

import { ViewRequest, osNameOf, segmentCalls, zeroCopy, type ZeroCopy } from '../binding'
import { COPY_VIEW_MAX, faultCount, isPrivate, noteAttached } from './copy-view'
import { illegalConstructor, invalidArgType, invalidArgValue, invalidThis, libraryError, outOfRange } from './errors'
import {
  booleanValue,
  bytesOf,
  MAX_SIZE,
  validateInteger,
  validateOptions,
  validateString,
} from './validate'

/** Options of {@link SharedMemory.open}. */
export interface OpenOptions {
  /** Create the segment if it does not exist (`PR_SHM_CREATE`). Default `false`. */
  create?: boolean
  /** With `create`, fail with `EEXIST` if it exists (`PR_SHM_EXCL`). Default `false`. */
  exclusive?: boolean
  /** Permission bits of a segment this call creates, masked by the umask. Default `0o600`. */
  mode?: number
  /** Open for reading only; every attach is then read-only. Default `false`. */
  readOnly?: boolean
  /**
   * When creating, reserve the memory now, so that a full `/dev/shm` fails here
   * with `ENOSPC` instead of on a later write. Default `true`.
   *
   * With `false` (Linux), creating only sets the size and succeeds even beyond
   * the free space; each page is allocated when first written. If `/dev/shm`
   * is full by then, a write through a view to that page lands in a private
   * zero page and is lost (the process is not killed), and `read()`/`write()`
   * throw `ENOSPC`. Use it only for sparse segments. It matters on Linux only:
   * Windows commits the whole size when creating, and macOS backs segments
   * with ordinary virtual memory.
   */
  reserve?: boolean
  /** Windows: use the `Global\` namespace (every session). Ignored elsewhere. Default `false`. */
  global?: boolean
  /**
   * With `create`: when this call creates the segment, `init(view)` runs first
   * with a read-write Buffer over it, before any other process can open it by
   * name; the name is published only after `init` returns. If `init` throws,
   * nothing is published and the error propagates. It does not run when the
   * segment already exists (see {@link SharedMemory.created}). It must be
   * synchronous: a promise cannot hold the name back. `view` is detached when
   * `init` returns; detaching or transferring it inside `init` is an error
   * (`ERR_SHM_INIT_DETACHED`).
   */
  init?: (view: Buffer) => void
}

/** Options of {@link SharedMemory.attach}. */
export interface AttachOptions {
  /**
   * Map read-only: the segment cannot be changed through this view. A write
   * through it stays private to this process (copy-on-write) and never crashes.
   * Default: the handle's `readOnly`.
   */
  readOnly?: boolean
  /**
   * Map the segment over a WebAssembly memory V8 allocated (an in-heap view)
   * even where external buffers work. `attach()` does so by itself where the
   * runtime refuses them (Electron). Linux and macOS only. Default `false`.
   */
  inHeap?: boolean
}

/** Options of {@link SharedMemory.delete} and {@link SharedMemory.osNameOf}. */
export interface NameOptions {
  /** Windows: the `Global\` namespace. Ignored elsewhere. Default `false`. */
  global?: boolean
}

const construct = Symbol('construct')

/** The binding's calls (crates/node/src/segment_calls.rs). */
const calls = segmentCalls()

/** An open segment in the binding: the number its calls take. */
type Handle = number

/** What `calls.open` writes besides its result: size, owner, mode (NaN where none), created (1 or 0). */
const opened = new Float64Array(4)

/**
 * OS names already asked for, by name (one map per namespace): the OS name
 * is a pure function of the name, and asking the addon costs a call.
 * Cleared when full, so that a program opening ever new names keeps few.
 */
const osNames = [new Map<string, string>(), new Map<string, string>()] as const
const OS_NAMES_MAX = 256

/** The OS name of `name`, a name that `calls.open` just accepted. */
function osNameOfOpened(name: string, global: boolean): string {
  const known = osNames[global ? 1 : 0]
  let osName = known.get(name)
  if (osName === undefined) {
    osName = osNameOf(name, global)
    if (known.size >= OS_NAMES_MAX) known.clear()
    known.set(name, osName)
  }
  return osName
}

/** Every key of {@link NameOptions}. */
const NAME_OPTIONS = ['global'] as const

/** Every key of {@link AttachOptions}. */
const ATTACH_OPTIONS = ['readOnly', 'inHeap'] as const

/** Every key of {@link OpenOptions}. */
const OPEN_OPTIONS = ['create', 'exclusive', 'mode', 'readOnly', 'reserve', 'global', 'init'] as const

const AsyncFunction = (async () => {}).constructor

/**
 * The `init` option as the binding calls it (with an ArrayBuffer), or
 * `undefined`. `init` runs while the name waits to be published, so it must
 * finish before returning: an async function, or a returned promise, is an
 * argument error.
 */
function initOption(init: unknown, create: boolean): ((buffer: ArrayBuffer) => void) | undefined {
  if (init === undefined) return undefined
  if (typeof init !== 'function') throw invalidArgType('options.init', 'of type function', init)
  if (!create) throw invalidArgValue('options.init', "needs 'create: true'", 'a function')
  if (init instanceof AsyncFunction) {
    throw invalidArgValue('options.init', 'must be synchronous: the name cannot wait for a promise', 'an async function')
  }
  return (buffer) => {
    const returned: unknown = init(Buffer.from(buffer))
    if (isThenable(returned)) {
      // Its work would finish after the name is published, on a detached view;
      // a later rejection is this same mistake, already reported.
      Promise.resolve(returned).catch(() => {})
      throw invalidArgValue('options.init', 'must be synchronous: the name cannot wait for the promise it returned', 'a promise')
    }
  }
}

/**
 * The Buffer an attach gives: the binding's own where it made one (over an
 * external ArrayBuffer), else one over the first `size` bytes of the buffer
 * it made (an in-heap view's ArrayBuffer is whole 64 KiB pages).
 */
function viewOf(made: Buffer | ArrayBuffer | SharedArrayBuffer, size: number): Buffer {
  if (ArrayBuffer.isView(made)) {
    noteAttached(made.buffer)
    return made
  }
  noteAttached(made)
  return Buffer.from(made, 0, size)
}

function isThenable(value: unknown): boolean {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  )
}

/** The `global` option of a {@link NameOptions} argument. */
function globalOption(options: unknown): boolean {
  return booleanValue(validateOptions(options, NAME_OPTIONS).global, 'options.global', false)
}

/**
 * An open named shared memory segment (NSPR's `PRSharedMemory`).
 *
 * @example
 * const shm = SharedMemory.open('frames', 1 << 20, { create: true })
 * const view = shm.attach()
 * view.writeUInt32LE(42, 0) // every process attached to 'frames' sees it
 * shm.close()
 */
export class SharedMemory implements Disposable {
  /** The name as given to `open`. */
  readonly name: string
  /** The name the OS uses (`/frames`, `Local\frames`), for other programs. */
  readonly osName: string
  /** Bytes each `attach()` maps and `read`/`write` reach. */
  readonly size: number
  /** Whether the handle was opened read-only. */
  readonly readOnly: boolean
  /**
   * The user id that owns the segment, as it was at open; `null` on Windows.
   * The owner can read, write and shrink a segment whatever its mode.
   */
  readonly owner: number | null
  /** The segment's permission bits (`0o600`, ...) as they were at open; `null` on Windows. */
  readonly mode: number | null
  /**
   * Whether this `open` call created the segment (`true`) or opened one that
   * existed (`false`). Exclusive create is always `true`.
   */
  readonly created: boolean
  readonly #native: Handle
  /** A view for copies that need not cross into the addon (copy-view.ts): undefined until first needed, null where there is none. */
  #copyView: Buffer | null | undefined
  /** The copy view's ArrayBuffer (`.buffer` is a call into V8's runtime on every read). */
  #copyBuffer: ArrayBuffer | null
  /** Copies made before the copy view: a handle that copies once is better off without one. */
  #copiesWithoutView: number

  /** @internal Use {@link SharedMemory.open}. */
  constructor(
    token: typeof construct,
    name: string,
    size: number,
    create: boolean,
    exclusive: boolean,
    readOnly: boolean,
    reserve: boolean,
    global: boolean,
    mode: number,
    init: ((buffer: ArrayBuffer) => void) | undefined,
  ) {
    if (token !== construct) throw illegalConstructor('use SharedMemory.open() to open a segment')
    // The binding closes the handle when this object is collected open.
    const native = calls.open(this, name, size, create, exclusive, readOnly, reserve, global, mode, init, opened)
    // Every field in one order, then frozen: one shape for every handle.
    this.name = name
    this.osName = osNameOfOpened(name, global)
    this.size = opened[0]
    this.readOnly = readOnly
    this.owner = Number.isNaN(opened[1]) ? null : opened[1]
    this.mode = Number.isNaN(opened[2]) ? null : opened[2]
    this.created = opened[3] === 1
    this.#native = native
    this.#copyView = undefined
    this.#copyBuffer = null
    this.#copiesWithoutView = 0
    // `readonly` binds TypeScript only: JavaScript could assign `size` and
    // change what read() checks against. Frozen, it cannot (private fields
    // stay writable).
    Object.freeze(this)
  }

  /**
   * Opens, or with `create` creates, the segment `name` (`PR_OpenSharedMemory`).
   *
   * @param name 1–255 UTF-8 bytes, no NUL; a leading `/` is optional.
   * @param size Bytes. Creating: the exact size (1 … 2^53−1), zero-filled.
   *   Opening: 0 means the segment's size; more than it is `ERR_SHM_SIZE`.
   * @throws `ENOENT`, `EEXIST`, `EACCES`, `ENOSPC`, `EMFILE`, `ERR_SHM_SIZE`, argument errors.
   */
  static open(name: string, size: number, options?: OpenOptions): SharedMemory {
    validateString(name, 'name')
    validateInteger(size, 'size')
    const given = validateOptions(options, OPEN_OPTIONS)
    const create = booleanValue(given.create, 'options.create', false)
    const exclusive = booleanValue(given.exclusive, 'options.exclusive', false)
    const readOnly = booleanValue(given.readOnly, 'options.readOnly', false)
    const reserve = booleanValue(given.reserve, 'options.reserve', true)
    const global = booleanValue(given.global, 'options.global', false)
    let mode = 0o600
    if (given.mode !== undefined) {
      validateInteger(given.mode, 'options.mode', 0, 0o777)
      mode = given.mode
    }
    if (exclusive && !create) {
      throw invalidArgValue('options.exclusive', "needs 'create: true'", exclusive)
    }
    if (create && size === 0) throw outOfRange('size', '>= 1 && <= 2^53 - 1 to create a segment', size)
    const init = initOption(given.init, create)
    return new SharedMemory(construct, name, size, create, exclusive, readOnly, reserve, global, mode, init)
  }

  /**
   * Removes the name (`PR_DeleteSharedMemory`). Later opens without `create`
   * fail with `ENOENT`; handles and views already open keep their memory.
   * On Windows names are not persistent and this does nothing.
   * @throws `ENOENT` when no segment has the name; `EACCES`.
   */
  static delete(name: string, options?: NameOptions): void {
    validateString(name, 'name')
    calls.delete(name, globalOption(options))
  }

  /** The OS name `name` maps to on this platform, without opening anything. */
  static osNameOf(name: string, options?: NameOptions): string {
    validateString(name, 'name')
    return osNameOf(name, globalOption(options))
  }

  /**
   * What `attach()` gives in this runtime: `'external'` (a Buffer over this
   * process's own mapping: Node, Bun, Deno), `'in-heap'` (the segment mapped
   * over a WebAssembly memory: Electron on Linux and macOS) or `'copy'` (no
   * zero-copy view: Electron on Windows, no WebAssembly, or Bun with
   * `NAMED_SHM_FORCE_IN_HEAP=1`; `attach()` throws `ERR_SHM_EXTERNAL_BUFFERS`;
   * use `read`, `readInto` and `write`).
   */
  static get zeroCopy(): `${ZeroCopy}` {
    return zeroCopy()
  }

  /** Whether {@link SharedMemory.close} has run. */
  get closed(): boolean {
    return calls.closed(SharedMemory.#of(this))
  }

  /**
   * Maps the segment and returns a Buffer that IS the segment, zero-copy
   * (`PR_AttachSharedMemory`). Each call maps again and returns a new Buffer.
   * Its memory starts on a page boundary, so `Int32Array`, `Float64Array`,
   * `BigInt64Array` and `DataView` work over `view.buffer`.
   * @throws `ERR_SHM_CLOSED`, `ERR_SHM_EXTERNAL_BUFFERS` (Electron), `ENOMEM`;
   *   `ERR_OUT_OF_RANGE` when `size` is more than a Buffer can hold.
   */
  attach(options?: AttachOptions): Buffer {
    const native = SharedMemory.#of(this)
    const given = validateOptions(options, ATTACH_OPTIONS)
    const readOnly = booleanValue(given.readOnly, 'options.readOnly', this.readOnly)
    const inHeap = booleanValue(given.inHeap, 'options.inHeap', false)
    // The addon says ERR_SHM_CLOSED itself; only this check comes first.
    if (this.size > kMaxLength) {
      SharedMemory.#throwIfClosed(native)
      throw outOfRange(
        'size',
        `at most buffer.constants.MAX_LENGTH (${kMaxLength}) to attach; open the segment with a smaller size to map its start, or use read() and write()`,
        this.size,
      )
    }
    return viewOf(calls.attach(native, readOnly, inHeap ? ViewRequest.InHeap : ViewRequest.Auto), this.size)
  }

  /**
   * Unmaps a view from `attach()` (`PR_DetachSharedMemory`). `view` may be the
   * Buffer or any TypedArray/DataView on its buffer. Afterwards every view on
   * an `ArrayBuffer` has length 0; every view on a `SharedArrayBuffer` (Node
   * 22.22+, 24.16+) keeps its length and reads zeros.
   * @throws `ERR_SHM_NOT_ATTACHED` for any other buffer or one already detached.
   */
  detach(view: ArrayBufferView | ArrayBuffer | SharedArrayBuffer): void {
    const native = SharedMemory.#of(this)
    if (view instanceof ArrayBuffer || view instanceof SharedArrayBuffer) {
      calls.detach(native, view)
      return
    }
    if (!ArrayBuffer.isView(view)) {
      throw invalidArgType('view', 'a Buffer, TypedArray or DataView from attach()', view)
    }
    calls.detach(native, view.buffer)
  }

  /**
   * Copies bytes out of the segment into a new Buffer. Needs no attached view
   * and works in every runtime, Electron included.
   * @throws `ERR_OUT_OF_RANGE` when `offset + length > size` or `length` is
   *   more than a Buffer can hold; `ENOMEM` when the copy cannot be allocated.
   */
  read(offset = 0, length?: number): Buffer {
    const native = SharedMemory.#of(this)
    validateInteger(offset, 'offset', 0, this.size)
    if (length === undefined) length = this.size - offset
    else validateInteger(length, 'length', 0, this.size - offset)
    // A Buffer cannot be longer; asking would fail deep inside Node.
    if (length > kMaxLength) {
      throw outOfRange('length', `at most buffer.constants.MAX_LENGTH (${kMaxLength}) bytes per read`, length)
    }
    const view = this.#copyViewOf(native)
    if (view !== null) {
      const faults = faultCount()
      const copy = Buffer.allocUnsafe(length)
      copy.set(new Uint8Array(this.#copyBuffer as ArrayBuffer, offset, length))
      if (faultCount() === faults) return copy
    }
    return calls.read(native, offset, length)
  }

  /**
   * Copies bytes from `offset` into `target`, as many as fit or remain.
   * @returns the number of bytes copied.
   */
  readInto(target: ArrayBufferView, offset = 0): number {
    const native = SharedMemory.#of(this)
    const bytes = bytesOf(target, 'target', 'a Buffer, TypedArray or DataView')
    validateInteger(offset, 'offset', 0, this.size)
    const view = isPrivate(bytes) ? this.#copyViewOf(native) : null
    if (view !== null) {
      const faults = faultCount()
      const copied = Math.min(bytes.byteLength, this.size - offset)
      // Not view.copy() (read too): Buffer#copy checks its arguments again and reads `.buffer`.
      bytes.set(new Uint8Array(this.#copyBuffer as ArrayBuffer, offset, copied))
      if (faultCount() === faults) return copied
    }
    return calls.readInto(native, bytes, offset)
  }

  /**
   * Copies `source` (bytes, or a string as UTF-8) into the segment at `offset`.
   * @returns the number of bytes written.
   * @throws `ERR_SHM_READ_ONLY` on a read-only handle; `ERR_OUT_OF_RANGE` when it does not fit.
   */
  write(source: string | ArrayBufferView, offset = 0): number {
    const native = SharedMemory.#of(this)
    const bytes =
      typeof source === 'string'
        ? Buffer.from(source, 'utf8')
        : bytesOf(source, 'source', 'of type string or a Buffer, TypedArray or DataView')
    validateInteger(offset, 'offset', 0, this.size)
    if (this.readOnly && !calls.closed(native)) {
      throw libraryError('ERR_SHM_READ_ONLY', `Segment '${this.osName}' was opened read-only`)
    }
    if (bytes.byteLength > this.size - offset) {
      throw outOfRange('source', `at most ${this.size - offset} bytes to fit at offset ${offset}`, `${bytes.byteLength} bytes`)
    }
    const view = isPrivate(bytes) ? this.#copyViewOf(native) : null
    if (view !== null) {
      const faults = faultCount()
      view.set(bytes, offset)
      if (faultCount() === faults) return bytes.byteLength
    }
    return calls.write(native, bytes, offset)
  }

  /**
   * Detaches every view this handle still has (they become length 0) and
   * releases the OS handle (`PR_CloseSharedMemory`). A second call does nothing.
   */
  close(): void {
    SharedMemory.#close(this)
  }

  /** `using shm = SharedMemory.open(...)` closes it at the end of the block. */
  [Symbol.dispose](): void {
    SharedMemory.#close(this)
  }

  static #close(self: unknown): void {
    calls.close(SharedMemory.#of(self))
    const shm = self as SharedMemory
    shm.#copyView = null // detached with the rest; copies now say ERR_SHM_CLOSED
    shm.#copyBuffer = null
  }

  /**
   * The view copies go through, made at the second copy that can use it (a
   * view costs more than one crossing); null when the handle is closed, the
   * segment is larger than COPY_VIEW_MAX, or attach() is refused
   * (Electron): copies then cross.
   */
  #copyViewOf(native: Handle): Buffer | null {
    if (this.#copyView === undefined) {
      if (this.#copiesWithoutView < 1) {
        this.#copiesWithoutView += 1
        return null
      }
      this.#copyView = null
      // Only over an external buffer: an in-heap view reserves gigabytes of
      // address space, more than a few copies are worth.
      if (this.size <= COPY_VIEW_MAX && zeroCopy() === 'external' && faultCount() >= 0 && !calls.closed(native)) {
        try {
          const buffer = calls.attach(native, this.readOnly, ViewRequest.Copies) as ArrayBuffer
          this.#copyView = viewOf(buffer, this.size)
          this.#copyBuffer = buffer
        } catch {
          // No view (ENOMEM, ERR_SHM_EXTERNAL_BUFFERS): the addon copies.
        }
      }
    }
    return this.#copyView
  }

  static #throwIfClosed(native: Handle): void {
    if (calls.closed(native)) throw libraryError('ERR_SHM_CLOSED', 'The shared memory handle is closed')
  }

  /** @internal The binding's handle, for tests that call the binding (`segmentCalls()`) directly. */
  static nativeOf(shm: SharedMemory): Handle {
    return SharedMemory.#of(shm)
  }

  /** The binding's handle behind `self`, checking that it is a SharedMemory. */
  static #of(self: unknown): Handle {
    if (typeof self !== 'object' || self === null || !(#native in self)) throw invalidThis('SharedMemory')
    return (self as SharedMemory).#native
  }
}

export { MAX_SIZE }
