// Numbers from the command line: sizes with binary suffixes, offsets, counts.

import { usageError } from './command'

const UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }

/**
 * A non-negative integer: decimal or `0x` hexadecimal, optionally (with
 * `units`) followed by K, M, G or T (powers of 1024, `KiB` spelling accepted).
 */
export function parseCount(text: string, what: string, units = false): number {
  const match = /^(0x[0-9a-f]+|[0-9]+)(?:([kmgt])(?:i?b)?)?$/i.exec(text.trim())
  if (!match || (match[2] !== undefined && !units)) {
    throw usageError(`${what} must be a non-negative integer${units ? ' (optionally with K, M, G or T)' : ''}, not '${text}'`)
  }
  const value = Number(match[1]) * UNITS[(match[2] ?? '').toLowerCase()]
  if (!Number.isSafeInteger(value)) throw usageError(`${what} is too large: '${text}'`)
  return value
}

/** A permission mode in octal, like chmod's: `600`, `0640`, `0o644`. */
export function parseMode(text: string): number {
  const match = /^(?:0o?)?([0-7]{1,3})$/i.exec(text.trim())
  if (!match) throw usageError(`--mode must be octal permission bits (like 600 or 0640), not '${text}'`)
  return parseInt(match[1], 8)
}

/** `1.5 MiB`: a size for people, exact below 1 KiB. */
export function humanSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let value = bytes / 1024
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit += 1
  }
  return `${value >= 10 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`
}

/** `3d4h`, `12m5s`, `40s`: an age for people. */
export function humanAge(seconds: number): string {
  const parts: [number, string][] = [
    [Math.floor(seconds / 86400), 'd'],
    [Math.floor(seconds / 3600) % 24, 'h'],
    [Math.floor(seconds / 60) % 60, 'm'],
    [Math.floor(seconds) % 60, 's'],
  ]
  const first = parts.findIndex(([value]) => value > 0)
  if (first < 0) return '0s'
  return parts
    .slice(first, first + 2)
    .map(([value, unit]) => `${value}${unit}`)
    .join('')
}

/** `0600`: permission bits as `ls` and chmod write them. */
export function octalMode(mode: number): string {
  return (mode & 0o777).toString(8).padStart(4, '0')
}
