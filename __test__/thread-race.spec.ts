// Views of different segments on different threads never see each other's
// memory or flags, even when the kernel hands one thread's freed address to
// another thread's new mapping.

import test from 'ava'

import { runFixture, uniqueName } from './helpers'

test('4 worker threads attaching, waiting, locking and detaching for 10 s: every result right, no signal', async (t) => {
  const result = await runFixture('thread-race.js', [uniqueName('thread-race'), '4', '10'])
  t.is(result.signal, null, result.stderr)
  t.is(result.code, 0, result.stderr)
  const report = JSON.parse(result.stdout) as { rounds: number; wrong: string[]; wrongCount: number }
  t.deepEqual(report.wrong, [])
  t.is(report.wrongCount, 0)
  t.true(report.rounds > 1000, `only ${report.rounds} rounds`)
})
