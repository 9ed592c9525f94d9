// Interop: Python's multiprocessing.shared_memory finds our segments
// by the same name, and we find its.

import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'

import test, { type ExecutionContext } from 'ava'

import { SharedMemory } from '../index'
import { type ChildResult, deleteAtEnd, runProcess, scratch, uniqueName } from './helpers'

const SCRIPT = join(__dirname, 'fixtures', 'shm_interop.py')

/** Why Python cannot run here, or null when it can. */
function pythonMissing(): string | null {
  const probe = spawnSync('python3', ['-c', 'import multiprocessing.shared_memory'], { encoding: 'utf8' })
  if ((probe.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') return 'python3 is not installed'
  return null
}

const missing = pythonMissing()

/** Skips (logging why and passing) only where python3 is missing; else false. */
function skipWithoutPython(t: ExecutionContext): boolean {
  if (missing === null) return false
  t.log(`skipped: ${missing}`)
  t.pass()
  return true
}

function runPython(args: string[]): Promise<ChildResult> {
  return runProcess('python3', [SCRIPT, ...args])
}

test('a segment created here is read and written by Python under the same name', async (t) => {
  if (skipWithoutPython(t)) return
  const shm = scratch(t, 1000)
  const view = shm.attach()
  for (let i = 0; i < view.length; i += 1) view[i] = (i * 5 + 1) & 0xff
  t.is(shm.osName, `/${shm.name}`)

  const python = await runPython(['read', shm.name])
  t.is(python.code, 0, python.stderr)
  t.is(python.stderr, '', 'no resource_tracker warnings')
  const seen = JSON.parse(python.stdout) as { name: string; size: number; hex: string }
  t.is(seen.name, shm.name)
  t.is(seen.size, 1000)
  t.is(view.toString('utf8', 16, 27), 'from python', 'Python wrote into our live view')
  t.is(seen.hex.length, 2000)
  t.true(Buffer.from(seen.hex, 'hex').subarray(0, 16).equals(view.subarray(0, 16)))
  t.true(Buffer.from(seen.hex, 'hex').subarray(27).equals(view.subarray(27)), 'Python saw our bytes')
  t.true(existsSync(`/dev/shm${shm.osName}`), "Python's resource tracker did not unlink it")
})

test('a segment Python creates is opened and read here, with or without the leading slash', async (t) => {
  if (skipWithoutPython(t)) return
  const name = uniqueName('python')
  deleteAtEnd(t, name)
  const python = await runPython(['create', name, '5000'])
  t.is(python.code, 0, python.stderr)
  t.is(python.stderr, '')
  t.deepEqual(JSON.parse(python.stdout), { name, size: 5000 })

  for (const given of [name, `/${name}`]) {
    const shm = SharedMemory.open(given, 0)
    t.teardown(() => shm.close())
    t.is(shm.size, 5000)
    t.is(shm.osName, `/${name}`)
    const view = shm.attach()
    let mismatch = -1
    for (let i = 0; i < view.length && mismatch < 0; i += 1) if (view[i] !== ((i * 7 + 3) & 0xff)) mismatch = i
    t.is(mismatch, -1, `${given}: every byte Python wrote`)
  }
  SharedMemory.delete(name)
  t.false(existsSync(`/dev/shm/${name}`))
})
