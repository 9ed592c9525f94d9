// Child processes that talk back line by line, for the sync specs.

import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'

import type { ExecutionContext } from 'ava'

import { SharedMemory } from '../index'
import { PACKAGE_ROOT, scratch, type ChildResult } from './helpers'

export interface Fixture {
  child: ChildProcess
  /** Resolves with the first stdout line that starts with `prefix`. */
  line(prefix: string): Promise<string>
  /** Resolves when the child has exited. */
  done: Promise<ChildResult>
}

/** Starts `node fixtures/<script> ...args`; killed at the end of the test if still running. */
export function startFixture(
  t: ExecutionContext,
  script: string,
  args: string[] = [],
  env: NodeJS.ProcessEnv = {},
): Fixture {
  const child = spawn(process.execPath, [join(__dirname, 'fixtures', script), ...args], {
    env: { ...process.env, NAMED_SHM_ROOT: PACKAGE_ROOT, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  const seen: string[] = []
  const waiting: { prefix: string; resolve(line: string): void }[] = []
  createInterface({ input: child.stdout! }).on('line', (line) => {
    stdout += `${line}\n`
    seen.push(line)
    for (const waiter of waiting.filter((w) => line.startsWith(w.prefix))) {
      waiting.splice(waiting.indexOf(waiter), 1)
      waiter.resolve(line)
    }
  })
  child.stderr!.on('data', (chunk) => (stderr += chunk))
  const done = new Promise<ChildResult>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code, signal) => {
      for (const waiter of waiting) waiter.resolve(`<exited ${code ?? signal}: ${stderr}>`)
      resolve({ code, signal, stdout, stderr })
    })
  })
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    return done.then(() => undefined)
  })
  const line = (prefix: string): Promise<string> => {
    const found = seen.find((l) => l.startsWith(prefix))
    if (found !== undefined) return Promise.resolve(found)
    if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(`<exited: ${stderr}>`)
    return new Promise((resolve) => waiting.push({ prefix, resolve }))
  }
  return { child, line, done }
}

/** A scratch segment and an Int32Array over all of it. */
export function words(t: ExecutionContext, size = 4096): { shm: SharedMemory; view: Buffer; i32: Int32Array } {
  const shm = scratch(t, size)
  const view = shm.attach()
  return { shm, view, i32: new Int32Array(view.buffer, view.byteOffset, view.length >> 2) }
}
