// Errors shaped like Node's own: a `code` property, and messages
// that name the argument.

import type { ErrorCode } from '../binding'

/**
 * Every `code` this package throws, besides the errno names of OS errors:
 * the values of the binding's `ErrorCode` (crates/node/src/codes.rs), the
 * one table both sides share.
 */
export type LibraryErrorCode = `${ErrorCode}`

/** An error from this package: `code` always; `errno` and `syscall` when the OS refused. */
export interface SharedMemoryError extends Error {
  /** A {@link LibraryErrorCode}, or the errno name of an OS error (`ENOENT`, `EACCES`, ...). */
  code: LibraryErrorCode | (string & {})
  /** OS errors: the errno value, negative as in Node (`-2` for `ENOENT` on Linux). */
  errno?: number
  /** OS errors: the call that failed (`shm_open`, `mmap`, `CreateFileMappingW`, ...). */
  syscall?: string
}

function withCode<E extends Error>(error: E, code: LibraryErrorCode): E & { code: LibraryErrorCode } {
  Object.defineProperty(error, 'code', { value: code, enumerable: true, writable: true, configurable: true })
  return error as E & { code: LibraryErrorCode }
}

/** Describes a received value the way Node's argument errors do. */
function describe(value: unknown): string {
  if (value === null || value === undefined) return `${value}`
  if (typeof value === 'function') return `function ${value.name || '<anonymous>'}`
  if (typeof value === 'object') {
    const constructor = (value as object).constructor
    return constructor?.name ? `an instance of ${constructor.name}` : 'an object'
  }
  let shown = typeof value === 'string' ? JSON.stringify(value) : String(value)
  if (shown.length > 28) shown = `${shown.slice(0, 25)}...`
  return `type ${typeof value} (${shown})`
}

export function invalidArgType(argument: string, expected: string, value: unknown): TypeError {
  return withCode(
    new TypeError(`The "${argument}" argument must be ${expected}. Received ${describe(value)}`),
    'ERR_INVALID_ARG_TYPE',
  )
}

export function invalidArgValue(argument: string, reason: string, value: unknown): TypeError {
  let shown: string
  try {
    shown = typeof value === 'string' ? JSON.stringify(value) : String(value)
  } catch {
    shown = describe(value)
  }
  return withCode(
    new TypeError(`The argument '${argument}' ${reason}. Received ${shown}`),
    'ERR_INVALID_ARG_VALUE',
  )
}

export function outOfRange(argument: string, range: string, value: unknown): RangeError {
  return withCode(
    new RangeError(`The value of "${argument}" is out of range. It must be ${range}. Received ${String(value)}`),
    'ERR_OUT_OF_RANGE',
  )
}

export function libraryError(code: LibraryErrorCode, message: string): SharedMemoryError {
  return withCode(new Error(message), code)
}

/** A method called on something that is not a SharedMemory (Node's `ERR_INVALID_THIS`). */
export function invalidThis(type: string): TypeError {
  return withCode(new TypeError(`Value of "this" must be of type ${type}`), 'ERR_INVALID_THIS')
}

/** `new` on a class that only its factory may make (Node's `ERR_ILLEGAL_CONSTRUCTOR`). */
export function illegalConstructor(hint: string): TypeError {
  return withCode(new TypeError(`Illegal constructor: ${hint}`), 'ERR_ILLEGAL_CONSTRUCTOR')
}
