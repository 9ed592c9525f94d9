// Argument checks run before any native call, so the binding sees only
// well-formed values and every mistake names the argument at fault.

import { invalidArgType, invalidArgValue, outOfRange } from './errors'

/** 2^53 − 1: the largest size or offset a JavaScript number holds exactly. */
export const MAX_SIZE = Number.MAX_SAFE_INTEGER

export function validateString(value: unknown, argument: string): asserts value is string {
  if (typeof value !== 'string') throw invalidArgType(argument, 'of type string', value)
}

export function validateBoolean(value: unknown, argument: string): asserts value is boolean {
  if (typeof value !== 'boolean') throw invalidArgType(argument, 'of type boolean', value)
}

/** An integer in `[min, max]`: `ERR_INVALID_ARG_TYPE` for non-numbers, `ERR_OUT_OF_RANGE` otherwise. */
export function validateInteger(value: unknown, argument: string, min = 0, max = MAX_SIZE): asserts value is number {
  if (typeof value !== 'number') throw invalidArgType(argument, 'of type number', value)
  if (!Number.isInteger(value) || value < min || value > max) {
    const range = Number.isInteger(value) ? `>= ${min} && <= ${max === MAX_SIZE ? '2^53 - 1' : max}` : 'an integer'
    throw outOfRange(argument, range, value)
  }
}

/**
 * `undefined` or a plain object whose own keys are all in `known`: the shape
 * of an options argument, as a record of its keys. A key not in `known` (a
 * typo such as `readonly`) is `ERR_INVALID_ARG_VALUE` naming it, rather than
 * silently meaning the default.
 */
export function validateOptions(
  value: unknown,
  known: readonly string[],
  argument = 'options',
): Record<string, unknown> {
  if (value === undefined) return NO_OPTIONS
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalidArgType(argument, 'of type object', value)
  }
  // An indexed loop: for-of runs the iterator protocol, which costs every
  // call until the optimizing compiler takes over.
  const keys = Object.keys(value)
  for (let i = 0; i < keys.length; i += 1) {
    const key = keys[i]
    if (!known.includes(key)) {
      const expected = known.length === 0 ? 'none' : known.join(', ')
      throw invalidArgValue(`${argument}.${key}`, `is not a known option (known: ${expected})`, (value as Record<string, unknown>)[key])
    }
  }
  return value as Record<string, unknown>
}

/** What an omitted options argument reads as (shared: callers only read it). */
const NO_OPTIONS: Record<string, unknown> = Object.freeze({})

/**
 * An optional boolean option, already read from its object (a named read,
 * which V8 caches where `options[key]` is a dictionary lookup on every call).
 */
export function booleanValue(value: unknown, argument: string, fallback: boolean): boolean {
  if (value === undefined) return fallback
  validateBoolean(value, argument)
  return value
}

/** Reads an optional boolean option. */
export function booleanOption(options: Record<string, unknown>, key: string, fallback: boolean): boolean {
  const value = options[key]
  if (value === undefined) return fallback
  validateBoolean(value, `options.${key}`)
  return value
}

/** A Uint8Array over the bytes of any TypedArray or DataView, without copying. */
export function bytesOf(value: unknown, argument: string, expected: string): Uint8Array {
  if (!ArrayBuffer.isView(value)) throw invalidArgType(argument, expected, value)
  if (value instanceof Uint8Array) return value
  // A view on a detached buffer (say, made before shm.detach()) has no bytes;
  // a DataView's byteOffset and a new Uint8Array over it would throw instead.
  if (value.buffer.byteLength === 0) return new Uint8Array(0)
  return new Uint8Array(value.buffer, value.byteOffset, value.byteLength)
}
