// What both stress programs (races.mjs, hostile.mjs) share: the library,
// child processes that run the same script in another role and print their
// report as one JSON line last, and the verdict at the end.

import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const require = createRequire(import.meta.url)

/** The package under test: NAMED_SHM_ROOT, or this checkout. */
export const library = require(process.env.NAMED_SHM_ROOT ?? ROOT)

/** A whole number in [0, n). */
export const random = (n) => Math.floor(Math.random() * n)

/** Child processes of one run, each `node script ...argv`, killed together on a hang. */
export class Children {
  #script
  #running = []
  #timer

  /** `script`: the file URL of the program that runs every role. */
  constructor(script) {
    this.#script = fileURLToPath(script)
  }

  /** Runs one child, `who` in reports, to its end: `{ who, code, signal, stdout, stderr }`. */
  run(who, argv) {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [this.#script, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] })
      this.#running.push(child)
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (chunk) => (stdout += chunk))
      child.stderr.on('data', (chunk) => (stderr += chunk))
      child.on('close', (code, signal) => resolve({ who, code, signal, stdout, stderr }))
    })
  }

  /** After `ms`, notes `why` in `failures` and kills every child, until {@link Children#settled}. */
  limit(ms, failures, why) {
    this.#timer = setTimeout(() => {
      failures.push(why)
      for (const child of this.#running) child.kill('SIGKILL')
    }, ms)
  }

  /** Every child has ended: the limit is off. */
  settled() {
    clearTimeout(this.#timer)
  }
}

/**
 * Adds to `failures` each child that died or failed and each finding it
 * reported (`who: ...`), and returns the sum of their counts. A child's
 * report is the last line of its stdout: `{ counts, failures }`.
 */
export function gather(results, failures) {
  const totals = {}
  for (const { who, ...result } of results) {
    if (result.signal !== null || result.code !== 0) {
      failures.push(`${who} exited with ${result.signal ?? `code ${result.code}`}: ${result.stderr.trim().slice(0, 2000)}`)
    }
    const last = result.stdout.trim().split('\n').pop()
    if (!last) continue
    const report = JSON.parse(last)
    for (const failure of report.failures ?? []) failures.push(`${who}: ${failure}`)
    for (const [key, value] of Object.entries(report.counts ?? {})) totals[key] = (totals[key] ?? 0) + value
  }
  return totals
}

/** Deletes `names` (already gone is fine); then anything of `prefix`, or a library temporary, left in /dev/shm fails. */
export function removeSegments(names, prefix, failures) {
  for (const name of names) {
    try {
      library.SharedMemory.delete(name)
    } catch (error) {
      if (error.code !== 'ENOENT') failures.push(`deleting ${name}: ${error.message}`)
    }
  }
  const left = readdirSync('/dev/shm').filter((entry) => entry.startsWith(prefix) || entry.startsWith('.named-shm-'))
  if (left.length > 0) failures.push(`left in /dev/shm: ${left.join(', ')}`)
}

/** Prints the totals and the verdict of the program `label`; any failure makes its exit code 1. */
export function verdict(label, totals, failures, ok) {
  console.log(`${label}: ${JSON.stringify(totals)}`)
  if (failures.length > 0) {
    console.error(`${label}: FAILED (${failures.length})`)
    for (const failure of failures) console.error(`  - ${failure}`)
    process.exitCode = 1
  } else {
    console.log(`${label}: ok — ${ok}`)
  }
}
