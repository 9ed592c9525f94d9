// Small copies without crossing into the addon: `read`, `readInto` and
// `write` copy through a view of the handle's own when the caller's bytes
// provably cannot be memory of a segment.
//
// Why: a call into the addon costs ~250 ns, five times a 4 KiB memcpy. Why
// only sometimes: two views of one segment are two addresses of the same
// bytes, and a copy between them (TypedArray#set, memcpy) sees no overlap
// and may read bytes it already overwrote. The addon stages such copies. A
// caller's buffer can hold segment memory only if it is a buffer that
// attach() made, in any copy of this module (all of them mark theirs with
// one registered symbol), or a SharedArrayBuffer
// (views are shared ones where the runtime allows, and another thread's
// cannot be recognized here). Everything else goes the fast way.
//
// A segment another process shrank faults where a copy touches a lost page;
// the addon's fault handler maps zeros there and counts it. A fast copy
// during which that count moved is redone by the addon, which then reports
// ERR_SHM_SIZE as every other call does.

import { faultCounter } from '../binding'

/** Segments up to this size get a copy view: above it, where views are ArrayBuffers, V8 would count it as 64 MiB+ of external memory and collect garbage. */
export const COPY_VIEW_MAX = 32 * 1024 * 1024

/**
 * Marks every buffer attach() made, in any copy of this module (a registered
 * symbol). A property of the buffer itself, not a set of them: a WeakSet of
 * every buffer ever attached grows V8's heap for good.
 */
const attachedMark = Symbol.for('named-shm.attached')

/**
 * Notes a buffer that attach() made: copies from or into it go through the
 * addon. A SharedArrayBuffer needs no mark (`isPrivate` refuses them all),
 * and a WebAssembly memory's (an in-heap view) cannot take one: it is not
 * extensible. (A mark costs each attach a map transition, too.)
 */
export function noteAttached(buffer: ArrayBufferLike): void {
  if (typeof SharedArrayBuffer === 'function' && buffer instanceof SharedArrayBuffer) return
  ;(buffer as unknown as Record<symbol, boolean>)[attachedMark] = true
}

/** Whether `bytes` cannot be memory of a segment. */
export function isPrivate(bytes: Uint8Array): boolean {
  const buffer = bytes.buffer
  return (
    (buffer as unknown as Record<symbol, boolean | undefined>)[attachedMark] !== true &&
    !(typeof SharedArrayBuffer === 'function' && buffer instanceof SharedArrayBuffer)
  )
}

let faults: Int32Array | null | undefined

/** How many faults past a segment's end the addon has covered in this process; -1 where it cannot be read (no copy views then). */
export function faultCount(): number {
  if (faults === undefined) {
    try {
      faults = new Int32Array(faultCounter())
    } catch {
      faults = null // a runtime without external buffers
    }
  }
  return faults === null ? -1 : Atomics.load(faults, 0)
}
