// Shared by the ava specs: unique names, cleanup, child processes, counters.

import { fork, spawn } from 'node:child_process'
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'

import type { ExecutionContext } from 'ava'

import { SharedMemory, type OpenOptions } from '../index'

/** The package root, for child processes to `require()`. */
export const PACKAGE_ROOT = join(__dirname, '..')

let counter = 0

/** A segment name no other test or run uses. */
export function uniqueName(prefix = 'test'): string {
  counter += 1
  return `named-shm-${prefix}-${process.pid}-${counter}-${Math.random().toString(36).slice(2, 8)}`
}

/** Deletes `name` when the test ends, ignoring ENOENT. */
export function deleteAtEnd(t: ExecutionContext, name: string): void {
  t.teardown(() => {
    try {
      SharedMemory.delete(name)
    } catch (error) {
      if ((error as { code?: string }).code !== 'ENOENT') throw error
    }
  })
}

/** Creates a fresh segment that is closed and deleted when the test ends. */
export function scratch(t: ExecutionContext, size: number, options: OpenOptions = {}): SharedMemory {
  const name = uniqueName(t.title.replace(/[^a-z0-9]+/gi, '-').slice(0, 40))
  const shm = SharedMemory.open(name, size, { create: true, exclusive: true, ...options })
  deleteAtEnd(t, name)
  t.teardown(() => shm.close())
  return shm
}

export interface ChildResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Runs `node <script> ...args` (a file under __test__/fixtures/) to its end. */
export function runFixture(script: string, args: string[] = [], options: { env?: NodeJS.ProcessEnv } = {}): Promise<ChildResult> {
  return runNode([join(__dirname, 'fixtures', script), ...args], options)
}

/** Runs `node ...args` to its end, collecting its output. */
export function runNode(args: string[], options: { env?: NodeJS.ProcessEnv; node?: string } = {}): Promise<ChildResult> {
  return runProcess(options.node ?? process.execPath, args, options)
}

/** Runs `command ...args` to its end with NAMED_SHM_ROOT set, collecting its output. */
export function runProcess(command: string, args: string[], options: { env?: NodeJS.ProcessEnv } = {}): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: { ...process.env, NAMED_SHM_ROOT: PACKAGE_ROOT, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk) => (stdout += chunk))
    child.stderr.on('data', (chunk) => (stderr += chunk))
    child.on('error', reject)
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
}

export interface ForkResult extends ChildResult {
  /** The messages the child sent with `process.send`, in order. */
  messages: unknown[]
}

/**
 * Forks `node <script> ...args` (a file under __test__/fixtures/) with an IPC
 * channel and runs it to its end. `onMessage` sees each message as it comes.
 */
export function forkFixture(script: string, args: string[] = [], onMessage?: (message: unknown) => void): Promise<ForkResult> {
  return new Promise((resolve, reject) => {
    const child = fork(join(__dirname, 'fixtures', script), args, {
      env: { ...process.env, NAMED_SHM_ROOT: PACKAGE_ROOT },
      execArgv: [],
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    })
    const messages: unknown[] = []
    let stdout = ''
    let stderr = ''
    child.stdout?.on('data', (chunk) => (stdout += chunk))
    child.stderr?.on('data', (chunk) => (stderr += chunk))
    child.on('message', (message) => {
      messages.push(message)
      onMessage?.(message)
    })
    child.on('error', reject)
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr, messages }))
  })
}

/** Open file descriptors of this process. */
export function fdCount(): number {
  return readdirSync('/proc/self/fd').length
}

/** Lines of /proc/self/maps: this process's mappings. */
export function mapsCount(): number {
  return readFileSync('/proc/self/maps', 'utf8').split('\n').filter(Boolean).length
}

/** Open file descriptors of this process that are files in /dev/shm: its segment handles. */
export function shmFdCount(): number {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).startsWith('/dev/shm/')
    } catch {
      return false // closed while we looked (the directory's own fd)
    }
  }).length
}

/** Lines of /proc/self/maps that map a file in /dev/shm: this process's segment mappings. */
export function shmMapsCount(): number {
  return readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((line) => line.includes(' /dev/shm/'))
    .length
}

/** Runs the garbage collector (tests run with --expose-gc) and lets finalizers settle. */
export async function collectGarbage(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc
  if (!gc) throw new Error('run with --expose-gc')
  for (let round = 0; round < 3; round += 1) {
    gc()
    await new Promise((resolve) => setImmediate(resolve))
  }
}

/** Whether this process runs as root (the tests that need it log and pass otherwise). */
export function isRoot(): boolean {
  return process.getuid?.() === 0
}

/** The JSON objects a child printed, one per line. */
export function jsonLines<T = Record<string, unknown>>(stdout: string): T[] {
  return stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as T)
}

/**
 * Whether this run's views are in-heap: the segment mapped over a WebAssembly
 * memory, as in Electron (NAMED_SHM_FORCE_IN_HEAP=1 runs the suite that way).
 */
export const IN_HEAP = SharedMemory.zeroCopy === 'in-heap'

/** The byteLength of a view's ArrayBuffer for a segment of `size` bytes: whole 64 KiB pages in-heap. */
export function bufferLength(size: number): number {
  return IN_HEAP ? Math.ceil(size / 65536) * 65536 : size
}

/**
 * Asserts that `view` was detached, the one way every spec checks it. A view
 * on an ArrayBuffer has no bytes left. Where the buffer cannot be detached,
 * every byte the view shows is zero again: in-heap (a WebAssembly memory's
 * buffer), and over a SharedArrayBuffer (what attach() gives where Node makes
 * external ones, 22.23+ and 24.16+). Tests write something first, so that
 * zeros say something.
 */
export function assertDetached(
  t: ExecutionContext,
  view: ArrayBufferView | ArrayBuffer | SharedArrayBuffer,
  what = 'the view',
  inHeap = IN_HEAP,
): void {
  const buffer = ArrayBuffer.isView(view) ? view.buffer : view
  const shared = typeof SharedArrayBuffer === 'function' && buffer instanceof SharedArrayBuffer
  if (!inHeap && !shared) {
    // A DataView on a detached buffer throws on byteLength; its buffer tells.
    const length = view instanceof DataView && buffer.byteLength === 0 ? 0 : view.byteLength
    t.is(length, 0, `${what} has length 0`)
    return
  }
  const bytes = ArrayBuffer.isView(view) ? new Uint8Array(view.buffer, view.byteOffset, view.byteLength) : new Uint8Array(view)
  t.true(bytes.byteLength > 0 && bytes.every((byte) => byte === 0), `${what} reads zeros`)
}

/**
 * GiB of address space this process holds reserved but inaccessible in
 * regions of 1 GiB or more: in Node, the guard regions of WebAssembly
 * memories, 8 to 10 GiB for each in-heap view until V8 frees it.
 */
export function reservedGiB(): number {
  let bytes = 0
  for (const line of readFileSync('/proc/self/maps', 'utf8').split('\n')) {
    const [range, permissions, , , inode] = line.split(/\s+/)
    if (permissions !== '---p' || inode !== '0') continue
    const [start, end] = range.split('-').map((hex) => BigInt(`0x${hex}`))
    const size = Number(end - start)
    if (size >= 2 ** 30) bytes += size
  }
  return Math.floor(bytes / 2 ** 30)
}
