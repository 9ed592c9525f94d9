// `shm.created` and `open(name, size, { create: true, init })`: init fills a
// created segment before any other process can open it by name; a failed,
// killed or misbehaving init leaves nothing behind.

import { spawn, spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'

import test from 'ava'

import { segmentCalls } from '../binding'
import { SharedMemory, SharedMutex } from '../index'
import { deleteAtEnd, jsonLines, PACKAGE_ROOT, runFixture, runNode, uniqueName } from './helpers'

const FIXTURES = join(__dirname, 'fixtures')

/** Whether `name` can be opened now. */
function exists(name: string): boolean {
  try {
    SharedMemory.open(name, 0).close()
    return true
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return false
    throw error
  }
}

/** Entries of /dev/shm that belong to `name` or to process `pid`'s temporaries. */
function traces(name: string, pid = process.pid): string[] {
  return readdirSync('/dev/shm').filter((entry) => entry === name || entry.startsWith(`.named-shm-${pid}-`))
}

/** What another process sees when it opens `name` now. */
function probe(name: string): string {
  const child = spawnSync(process.execPath, [join(FIXTURES, 'init-probe.js'), name], {
    env: { ...process.env, NAMED_SHM_ROOT: PACKAGE_ROOT },
    encoding: 'utf8',
  })
  return child.stdout
}

test('created tells whether this open made the segment', (t) => {
  const name = uniqueName('created')
  deleteAtEnd(t, name)
  const first = SharedMemory.open(name, 4096, { create: true, exclusive: true })
  const second = SharedMemory.open(name, 4096, { create: true })
  const third = SharedMemory.open(name, 0)
  t.true(first.created)
  t.false(second.created)
  t.false(third.created)
  first.close()
  second.close()
  third.close()
  SharedMemory.delete(name)
  const again = SharedMemory.open(name, 4096, { create: true })
  t.true(again.created)
  again.close()
})

test('init fills the segment before any other process can open it, and runs once', (t) => {
  const name = uniqueName('init-before')
  deleteAtEnd(t, name)
  const during: string[] = []
  let calls = 0
  const shm = SharedMemory.open(name, 4096, {
    create: true,
    init(view) {
      calls += 1
      t.is(view.length, 4096)
      t.true(view.every((byte) => byte === 0))
      view.write('0123abcd', 'latin1')
      during.push(probe(name))
      t.false(exists(name))
    },
  })
  t.is(calls, 1)
  t.deepEqual(during, ['ENOENT'])
  t.true(shm.created)
  t.is(probe(name), Buffer.from('0123abcd').toString('hex'))
  t.is(shm.read(0, 8).toString(), '0123abcd')
  shm.close()
})

test('init does not run when the segment exists', (t) => {
  const name = uniqueName('init-exists')
  deleteAtEnd(t, name)
  const creator = SharedMemory.open(name, 4096, { create: true, init: (view) => view.write('first') })
  let calls = 0
  const opener = SharedMemory.open(name, 4096, { create: true, init: () => (calls += 1) })
  t.is(calls, 0)
  t.false(opener.created)
  t.is(opener.read(0, 5).toString(), 'first')
  creator.close()
  opener.close()
})

test('an init that throws publishes nothing, leaves nothing behind, and its error propagates', (t) => {
  const name = uniqueName('init-throws')
  deleteAtEnd(t, name)
  const thrown = new Error('header refused')
  for (const exclusive of [false, true]) {
    const error = t.throws(() =>
      SharedMemory.open(name, 1 << 16, {
        create: true,
        exclusive,
        init(view) {
          view.fill(1)
          throw thrown
        },
      }),
    )
    t.is(error, thrown)
    t.false(exists(name))
    t.deepEqual(traces(name), [])
  }
  // The name is free for the next creator, whose segment starts zero-filled.
  const shm = SharedMemory.open(name, 1 << 16, { create: true })
  t.true(shm.created)
  t.true(shm.read().every((byte) => byte === 0))
  shm.close()
})

test('the view given to init is detached when init returns', (t) => {
  const name = uniqueName('init-detached')
  deleteAtEnd(t, name)
  let kept: Buffer | undefined
  let words: Int32Array | undefined
  const shm = SharedMemory.open(name, 4096, {
    create: true,
    init(view) {
      kept = view
      words = new Int32Array(view.buffer, view.byteOffset, 4)
      words[0] = 5
    },
  })
  t.is(kept?.length, 0)
  t.is(words?.length, 0)
  t.is(shm.read(0, 4).readInt32LE(0), 5)
  shm.close()
})

test('a read-only handle still initializes the segment it creates', (t) => {
  const name = uniqueName('init-read-only')
  deleteAtEnd(t, name)
  const shm = SharedMemory.open(name, 4096, { create: true, readOnly: true, init: (view) => view.write('ro-init') })
  t.true(shm.readOnly)
  t.true(shm.created)
  t.is(shm.read(0, 7).toString(), 'ro-init')
  t.throws(() => shm.write('x'), { code: 'ERR_SHM_READ_ONLY' })
  shm.close()
})

test('an init that is async or returns a promise is an argument error and publishes nothing', async (t) => {
  const name = uniqueName('init-async')
  deleteAtEnd(t, name)
  let ran = false
  t.throws(() => SharedMemory.open(name, 4096, { create: true, init: async () => void (ran = true) }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /must be synchronous/,
  })
  t.false(ran)
  t.throws(() => SharedMemory.open(name, 4096, { create: true, init: () => Promise.reject(new Error('later')) }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /must be synchronous/,
  })
  t.false(exists(name))
  t.deepEqual(traces(name), [])
  // The rejected promise is not left unhandled (ava would fail the run).
  await new Promise((resolve) => setImmediate(resolve))
})

test('init is checked like every option', (t) => {
  const name = uniqueName('init-options')
  t.throws(() => SharedMemory.open(name, 4096, { create: true, init: 'header' as never }), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => SharedMemory.open(name, 4096, { init: () => {} }), { code: 'ERR_INVALID_ARG_VALUE', message: /create/ })
  t.false(exists(name))
})

test('the binding called directly with an init that is not a function, or an owner that is not an object: a coded error, nothing published', (t) => {
  const name = uniqueName('init-binding')
  const open = () => segmentCalls().open({}, name, 64, true, false, false, true, false, 0o600, 42 as never, new Float64Array(4))
  t.throws(open, { code: 'ERR_INVALID_ARG_TYPE' })
  const ownerless = (owner: unknown) =>
    segmentCalls().open(owner as object, name, 64, true, false, false, true, false, 0o600, undefined, new Float64Array(4))
  for (const owner of [undefined, null, 1, 'shm']) t.throws(() => ownerless(owner), { code: 'ERR_INVALID_ARG_TYPE', message: /owner/ })
  t.false(exists(name))
  t.deepEqual(traces(name), [])
})

test('the binding called directly with a wrong info array: a coded error, nothing published; one init detaches: a coded error, no crash', (t) => {
  const name = uniqueName('init-info')
  deleteAtEnd(t, name)
  const open = (init: (() => void) | undefined, info: unknown) =>
    segmentCalls().open({}, name, 64, true, false, false, true, false, 0o600, init, info as Float64Array)
  t.throws(() => open(undefined, new Float32Array(4)), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => open(undefined, new Float64Array(3)), { code: 'ERR_INVALID_ARG_TYPE' })
  t.false(exists(name))
  const info = new Float64Array(4)
  t.throws(() => open(() => void structuredClone(info.buffer, { transfer: [info.buffer] }), info), {
    code: 'ERR_INVALID_ARG_TYPE',
  })
  t.is(info.length, 0)
})

test('init opening the same name: not found without create; with create the inner open publishes and the outer opens it', (t) => {
  const name = uniqueName('init-nested')
  deleteAtEnd(t, name)
  const outer = SharedMemory.open(name, 4096, {
    create: true,
    init(view) {
      view.write('outer')
      t.throws(() => SharedMemory.open(name, 0), { code: 'ENOENT' })
      const inner = SharedMemory.open(name, 4096, { create: true, init: (innerView) => innerView.write('inner') })
      t.true(inner.created)
      inner.close()
    },
  })
  // The name holds one segment, the inner one; the outer's work was dropped.
  t.false(outer.created)
  t.is(outer.read(0, 5).toString(), 'inner')
  outer.close()

  // An exclusive outer open fails once the inner one has the name.
  SharedMemory.delete(name)
  t.throws(
    () =>
      SharedMemory.open(name, 4096, {
        create: true,
        exclusive: true,
        init: () => SharedMemory.open(name, 4096, { create: true, exclusive: true, init: (view) => view.write('inner') }).close(),
      }),
    { code: 'EEXIST' },
  )
  const left = SharedMemory.open(name, 0)
  t.is(left.read(0, 5).toString(), 'inner')
  left.close()
})

test('the documented pattern: a header with a magic number and a SharedMutex', (t) => {
  const name = uniqueName('init-pattern')
  deleteAtEnd(t, name)
  const MAGIC = 0x6e73686d
  const open = () =>
    SharedMemory.open(name, 4096, {
      create: true,
      init(view) {
        view.writeUInt32LE(1, 4) // version
        view.writeUInt32LE(MAGIC, 0) // a zeroed SharedMutex at offset 8 is unlocked
      },
    })
  const a = open()
  const b = open()
  t.deepEqual([a.created, b.created], [true, false])
  const view = b.attach()
  t.is(view.readUInt32LE(0), MAGIC)
  const mutex = new SharedMutex(view, 8)
  t.is(mutex.lock(), 'ok')
  t.is(new SharedMutex(a.attach(), 8).tryLock(), 'busy')
  mutex.unlock()
  a.close()
  b.close()
})

test('an init that transfers its view fails with ERR_SHM_INIT_DETACHED and publishes nothing', async (t) => {
  const extra = (process.env.NAMED_SHM_NODES ?? '').split(':').filter(Boolean)
  for (const node of [process.execPath, ...extra]) {
    const name = uniqueName('init-transfer')
    deleteAtEnd(t, name)
    const child = await runNode([join(FIXTURES, 'init-transfer.js'), name], { node })
    t.is(child.signal, null, child.stderr)
    t.is(child.code, 0, child.stderr)
    const report = JSON.parse(child.stdout)
    t.log(report)
    if (report.how === 'copied') {
      // Node 20 copies an untransferable buffer: the view stays, init succeeds.
      t.true(report.created)
      t.is(report.firstByte, 9)
      t.true(report.published)
    } else {
      t.is(report.code, 'ERR_SHM_INIT_DETACHED')
      t.is(report.published, 'ENOENT')
    }
  }
})

test('a creator SIGKILLed inside init leaves nothing published and nothing behind', async (t) => {
  const name = uniqueName('init-killed')
  deleteAtEnd(t, name)
  const child = spawn(process.execPath, [join(FIXTURES, 'init-killed.js'), name], {
    env: { ...process.env, NAMED_SHM_ROOT: PACKAGE_ROOT },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  t.teardown(() => child.kill('SIGKILL'))
  await new Promise<void>((resolve) => child.stdout.on('data', (chunk: Buffer) => chunk.includes('in-init') && resolve()))
  t.false(exists(name))
  child.kill('SIGKILL')
  const [, signal] = await new Promise<[number | null, string | null]>((resolve) => child.on('close', (...end) => resolve(end)))
  t.is(signal, 'SIGKILL')
  t.false(exists(name))
  t.deepEqual(traces(name, child.pid), [])
})

test('6 processes x 2,000 open-or-create rounds with init, a deleter at random: complete headers only, one creator per generation', async (t) => {
  const name = uniqueName('init-race')
  const clockName = uniqueName('init-race-clock')
  deleteAtEnd(t, name)
  deleteAtEnd(t, clockName)
  const RACERS = 6
  const ROUNDS = 2000
  const clock = SharedMemory.open(clockName, 4096, { create: true, exclusive: true })
  t.teardown(() => clock.close())
  new Int32Array(clock.attach().buffer, 0, 4)[1] = RACERS
  const script = 'init-race.mjs'
  const [deleter, ...racers] = await Promise.all([
    runFixture(script, ['delete', name, clockName]),
    ...Array.from({ length: RACERS }, () => runFixture(script, ['race', name, clockName, String(ROUNDS)])),
  ])
  for (const child of [deleter, ...racers]) {
    t.is(child.signal, null, child.stderr)
    t.is(child.code, 0, child.stderr)
  }
  type Report = { pid: number; created: [number, number][]; seen: [number, number][]; notFound: number; initsRun: number; problems: string[] }
  const reports = racers.map((child) => jsonLines<Report>(child.stdout)[0])
  const problems = reports.flatMap((report) => report.problems)
  t.deepEqual(problems, [])
  const creators = new Map<number, number[]>()
  for (const report of reports) {
    for (const [generation, pid] of report.created) creators.set(generation, [...(creators.get(generation) ?? []), pid])
  }
  const twice = [...creators].filter(([, pids]) => pids.length > 1)
  t.deepEqual(twice, [], 'a generation with more than one creator')
  const orphans = reports.flatMap((report) => report.seen).filter(([generation, pid]) => creators.get(generation)?.[0] !== pid)
  t.deepEqual(orphans, [], 'a segment opened that no racer reports creating')
  const deleted = jsonLines<{ deleted: number }>(deleter.stdout)[0].deleted
  const opened = reports.reduce((sum, report) => sum + report.created.length + report.seen.length, 0)
  const notFound = reports.reduce((sum, report) => sum + report.notFound, 0)
  t.log({ generations: creators.size, deleted, opened, notFound, initsRun: reports.reduce((sum, r) => sum + r.initsRun, 0) })
  t.is(opened + notFound, RACERS * ROUNDS)
  t.true(creators.size > 1, 'the deleter never made a second generation')
  try {
    SharedMemory.delete(name)
  } catch (error) {
    t.is((error as { code?: string }).code, 'ENOENT')
  }
  const left = readdirSync('/dev/shm').filter((entry) => entry === name || entry.startsWith('.named-shm-'))
  t.deepEqual(left, [])
})
