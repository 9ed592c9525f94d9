// A process killed with SIGKILL while attached and writing: the
// others go on, and every record it finished is there (fixtures/crash-writer.mjs).

import { spawn } from 'node:child_process'
import { join } from 'node:path'

import test from 'ava'

import { PACKAGE_ROOT, runFixture, runNode, scratch } from './helpers'

const RING = 4096
const WRITER = join(__dirname, 'fixtures', 'crash-writer.mjs')

/** Whether record `i` of `slot` is intact in `view`. */
function recordOk(view: Buffer, slot: number, i: number): boolean {
  const at = 4096 + slot * RING * 16 + (i % RING) * 16
  return (
    view.readUInt32LE(at) === i &&
    view.readUInt32LE(at + 4) === slot &&
    view.readUInt32LE(at + 8) === Math.imul(i, 2654435761) >>> 0 &&
    view.readUInt32LE(at + 12) === ~i >>> 0
  )
}

/** Indices whose records are missing or wrong among the last ones below `count`. */
function badRecords(view: Buffer, slot: number, count: number): number[] {
  const bad = []
  // The record at count % RING may be half-overwritten by record `count`.
  for (let i = Math.max(0, count - RING + 1); i < count; i += 1) if (!recordOk(view, slot, i)) bad.push(i)
  return bad
}

test('a writer killed with SIGKILL while attached leaves every finished write, and the others go on', async (t) => {
  const shm = scratch(t, 4096 + 3 * RING * 16)
  const view = shm.attach()
  const counters = new Int32Array(view.buffer, 0, 1024)
  const env = { ...process.env, NAMED_SHM_ROOT: PACKAGE_ROOT }

  const victim = spawn(process.execPath, [WRITER, shm.name, '0', 'forever'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => victim.kill('SIGKILL'))
  const victimExit = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => victim.on('exit', (code, signal) => resolve([code, signal])))
  const survivor = runFixture('crash-writer.mjs', [shm.name, '1', '200000'])

  // Kill it mid-stream, once it has lapped the ring a few times.
  while (Atomics.load(counters, 0) < 3 * RING) await new Promise((resolve) => setTimeout(resolve, 1))
  victim.kill('SIGKILL')
  const [code, signal] = await victimExit
  t.is(signal, 'SIGKILL')
  t.is(code, null)

  const published = Atomics.load(counters, 0)
  t.true(published >= 3 * RING)
  t.deepEqual(badRecords(view, 0, published), [], `records below the counter ${published}`)
  t.is(Atomics.load(counters, 0), published, 'nothing writes after the kill')

  // The other writer finished untouched, and saw no crash either.
  const other = await survivor
  t.is(other.signal, null)
  t.is(other.code, 0, other.stderr)
  t.is(other.stdout, 'attached\ndone\n')
  t.is(Atomics.load(counters, 1), 200000)
  t.deepEqual(badRecords(view, 1, 200000), [])

  // This process goes on writing, and a new process sees the dead one's records.
  shm.write(Buffer.from('after the crash'), 4096 + 2 * RING * 16)
  t.is(shm.read(4096 + 2 * RING * 16, 15).toString(), 'after the crash')
  const script = `const { SharedMemory } = require(process.env.NAMED_SHM_ROOT)
const shm = SharedMemory.open(${JSON.stringify(shm.name)}, 0, { readOnly: true })
const view = shm.read()
let bad = 0
for (let i = ${published} - ${RING} + 1; i < ${published}; i += 1) {
  const at = 4096 + (i % ${RING}) * 16
  if (view.readUInt32LE(at) !== i || view.readUInt32LE(at + 12) !== (~i >>> 0)) bad += 1
}
process.stdout.write(String(bad))
shm.close()`
  const checker = await runNode(['-e', script])
  t.is(checker.code, 0, checker.stderr)
  t.is(checker.stdout, '0')
  shm.detach(view)
})

