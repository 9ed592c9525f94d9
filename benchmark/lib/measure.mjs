// Timing helpers shared by the cases: samples in nanoseconds, medians, p99.

import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const BENCH = join(dirname(fileURLToPath(import.meta.url)), '..')
export const ROOT = join(BENCH, '..')

const now = process.hrtime.bigint

/** Median and 99th percentile of `samples` (numbers). */
export function summarize(samples) {
  const sorted = Float64Array.from(samples).sort()
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]
  return { median: at(0.5), p99: at(0.99), samples: sorted.length }
}

/**
 * Calls `body` `batch` times per sample, `samples` times after `warmup`
 * samples, and summarizes nanoseconds per call.
 */
export function timePerCall(body, { batch, samples, warmup = Math.max(1, samples >> 4) }) {
  const results = []
  for (let s = -warmup; s < samples; s += 1) {
    const start = now()
    for (let i = 0; i < batch; i += 1) body(i)
    const elapsed = Number(now() - start) / batch
    if (s >= 0) results.push(elapsed)
  }
  return summarize(results)
}

let cDir
/** Compiles benchmark/c/<name>.c once per run with gcc -O2; returns the binary's path. */
export function compileC(name) {
  cDir ??= mkdtempSync(join(tmpdir(), 'named-shm-bench-c-'))
  const binary = join(cDir, name)
  execFileSync('gcc', ['-O2', '-o', binary, join(BENCH, 'c', `${name}.c`)], { stdio: ['ignore', 'ignore', 'inherit'] })
  return binary
}

/** Runs `command` to its end; resolves with its stdout parsed as JSON (its last line). */
export function runJson(command, args, options = {}) {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => (stdout += chunk))
  child.stderr.on('data', (chunk) => (stderr += chunk))
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code, signal) => {
      if (code !== 0) {
        const lines = stderr.trim().split('\n')
        const reason = lines.find((line) => /Error\b|error:/.test(line)) ?? lines.slice(-3).join(' / ')
        reject(new Error(`${args.find((arg) => arg.startsWith('--')) ?? command} ${signal ?? `exited with ${code}`}: ${reason.trim()}`))
        return
      }
      try {
        resolve(JSON.parse(stdout.trim().split('\n').pop()))
      } catch {
        reject(new Error(`${command} printed no JSON: ${stdout.slice(-200)} ${stderr.slice(-200)}`))
      }
    })
  })
}

/** Runs `node <script> ...args` (a case's child mode); resolves with its JSON. */
export function runNode(script, args, nodeArgs = []) {
  return runJson(process.execPath, [...nodeArgs, script, ...args])
}

/** A segment name no other run uses. */
export function uniqueName(tag) {
  return `named-shm-bench-${process.pid}-${tag}-${Math.random().toString(36).slice(2, 8)}`
}

/** Bytes as `64 MiB`, `4 KiB`, `64 B`. */
export function bytes(n) {
  for (const [unit, size] of [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]]) {
    if (n >= size && n % size === 0) return `${n / size} ${unit}`
  }
  return `${n} B`
}
