// Bad input: a fast-check run in a child process makes 10,000+
// random calls at every function and method. See fixtures/fuzz.mjs.

import { readdirSync } from 'node:fs'
import { join } from 'node:path'

import test from 'ava'

import { runNode } from './helpers'

test('random calls with bad input never kill the process and always throw a documented code', async (t) => {
  const seed = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31))
  t.log(`seed ${seed}; rerun with FUZZ_SEED=${seed} (FUZZ_TRACE=<file> logs each call)`)
  const child = await runNode(['--expose-gc', join(__dirname, 'fixtures', 'fuzz.mjs'), String(seed), '50000'])
  t.is(child.signal, null, `the child died of ${child.signal}; rerun with FUZZ_SEED=${seed} FUZZ_TRACE=/tmp/trace`)
  t.is(child.code, 0, child.stdout + child.stderr)
  const lines = child.stdout.trim().split('\n')
  const report = JSON.parse(lines[lines.length - 1]) as {
    seed: number
    prefix: string
    calls: number
    codes: Record<string, number>
    left: string[]
  }
  t.is(report.seed, seed)
  t.true(report.calls >= 50_000, `only ${report.calls} calls`)
  // The run reached every kind of failure, not just argument checks.
  for (const code of ['ERR_INVALID_ARG_TYPE', 'ERR_INVALID_ARG_VALUE', 'ERR_OUT_OF_RANGE', 'ERR_SHM_CLOSED', 'ERR_SHM_NOT_ATTACHED', 'ENOENT']) {
    t.true((report.codes[code] ?? 0) > 0, `no ${code} in ${JSON.stringify(report.codes)}`)
  }
  t.deepEqual(report.left, [])
  t.deepEqual(
    readdirSync('/dev/shm').filter((entry) => entry.includes(report.prefix)),
    [],
    'every segment the run created is deleted',
  )
})
