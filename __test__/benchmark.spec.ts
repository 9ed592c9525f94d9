// The benchmark suite, run with tiny sizes (`--smoke`) so that its code
// cannot rot. Its numbers mean nothing here: no timing is asserted, only that
// every case ran and reported a measurement for every variant it could run.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test from 'ava'

import { PACKAGE_ROOT, runNode } from './helpers'

interface Row {
  key: string
  label: string
  median?: number
  p99?: number
  ratio?: number
  error?: string
}

test('npm run bench runs every case (smoke run) and writes results.json and the chart', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'named-shm-bench-smoke-'))
  t.teardown(() => rmSync(out, { recursive: true, force: true }))
  const child = await runNode([join(PACKAGE_ROOT, 'benchmark', 'run.mjs'), '--smoke', '--out', out])
  t.is(child.signal, null, child.stderr)
  t.is(child.code, 0, child.stdout + child.stderr)
  const report = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'))
  t.true(report.smoke)
  t.is(report.machine.node, process.version)
  t.deepEqual(
    report.cases.map((result: { case: string }) => result.case),
    ['copies', 'attach', 'lifecycle', 'bulk', 'wake'],
  )
  for (const result of report.cases as { case: string; rows: Row[]; failed?: boolean }[]) {
    t.falsy(result.failed, `${result.case} failed`)
    for (const row of result.rows) {
      // Only another package that a smoke run does not install may be missing.
      if (row.error !== undefined) {
        t.regex(row.key, /^(sta-|shm-typed-array)/, `${result.case}/${row.key}: ${row.error}`)
        continue
      }
      t.true(Number.isFinite(row.median) && row.median! > 0, `${result.case}/${row.key} median ${row.median}`)
      t.true(Number.isFinite(row.p99) && row.p99! > 0, `${result.case}/${row.key} p99 ${row.p99}`)
      t.true(Number.isFinite(row.ratio), `${result.case}/${row.key} ratio ${row.ratio}`)
    }
  }
  const rowsOf = (name: string): Row[] => report.cases.find((result: { case: string }) => result.case === name).rows
  // The rows the goals are judged on exist, named-shm's and the references'.
  for (const [name, key] of [
    ['copies', 'write-4096'],
    ['copies', 'buffer-copy-4096'],
    ['attach', 'named-shm-1048576'],
    ['lifecycle', 'named-shm'],
    ['lifecycle', 'c'],
    ['lifecycle', 'python'],
    ['bulk', 'in-place'],
    ['bulk', 'c'],
    ['wake', 'spin'],
  ]) {
    t.truthy(rowsOf(name).find((row) => row.key === key && row.error === undefined), `${name}/${key}`)
  }
  const chart = readFileSync(join(out, 'benchmark.svg'), 'utf8')
  t.regex(chart, /^<svg [^>]*>/)
  t.regex(chart, /smoke run/)
})
