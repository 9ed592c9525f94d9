// `npm run bench`: every case under benchmark/cases/, side by side in one
// run. Prints a table per case, writes benchmark/results.json (machine,
// versions, medians, p99, ratios, goals) and docs/benchmark.svg.
//
//   node benchmark/run.mjs [--smoke] [--out DIR] [case ...]
//
// --smoke runs every case with tiny sizes and counts (what `npm test` does,
// so that the benchmark code cannot rot; its numbers mean nothing) and
// writes into --out (default: a temporary folder) instead of the repo.
//
// A case is a module in cases/ exporting `title`, `unit`, `better`
// ('lower' or 'higher') and `async run({ smoke })` returning
// `{ rows, goals?, notes? }`; each row is `{ group, key, label, median, p99,
// reference? }` in `unit`. Adding one is adding its file to CASES.

import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { chart } from './lib/chart.mjs'
import { BENCH, ROOT } from './lib/measure.mjs'
import { machine } from './lib/machine.mjs'

/** Run order: quick in-process cases first, the two-process ones after. */
export const CASES = ['copies', 'attach', 'lifecycle', 'bulk', 'wake']

/** Adds each row's ratio to its group's reference row (value / reference). */
function withRatios(rows) {
  return rows.map((row) => {
    const reference = rows.find((other) => other.group === row.group && other.reference && !other.error)
    const ratio = reference && !row.error && reference.median > 0 ? row.median / reference.median : undefined
    return { ...row, ratio }
  })
}

function format(value) {
  if (value === undefined || Number.isNaN(value)) return '-'
  if (value >= 100) return value.toFixed(0)
  if (value >= 10) return value.toFixed(1)
  return value.toPrecision(3)
}

function printTable(result) {
  console.log(`\n## ${result.title} (${result.unit}, ${result.better} is better)\n`)
  const header = ['variant', `median ${result.unit}`, `p99 ${result.unit}`, 'ratio to reference']
  const lines = result.rows.map((row) =>
    row.error
      ? [row.label, '-', '-', `failed: ${row.error}`]
      : [row.label, format(row.median), format(row.p99), row.ratio === undefined ? '-' : `${format(row.ratio)}x`],
  )
  const widths = header.map((title, column) => Math.max(title.length, ...lines.map((line) => line[column].length)))
  const print = (cells) => console.log(`| ${cells.map((cell, column) => cell.padEnd(widths[column])).join(' | ')} |`)
  print(header)
  console.log(`|${widths.map((width) => '-'.repeat(width + 2)).join('|')}|`)
  for (const line of lines) print(line)
  for (const note of result.notes ?? []) console.log(`\n${note}`)
  for (const goal of result.goals ?? []) {
    console.log(`goal: ${goal.what} = ${format(goal.ratio)} (${goal.goal}) ${goal.ok ? 'met' : 'NOT met'}`)
  }
}

/** Every case's goals in one markdown table (what the README quotes). */
function printGoals(results) {
  const goals = results.flatMap((result) => (result.goals ?? []).map((goal) => ({ case: result.case, ...goal })))
  if (goals.length === 0) return
  console.log('\n## Goals\n')
  console.log('| case | measure | value | goal | met |')
  console.log('|---|---|---|---|---|')
  for (const goal of goals) console.log(`| ${goal.case} | ${goal.what} | ${format(goal.ratio)} | ${goal.goal} | ${goal.ok ? 'yes' : 'no'} |`)
}

export async function main(argv = process.argv.slice(2)) {
  const smoke = argv.includes('--smoke')
  const outIndex = argv.indexOf('--out')
  const out = outIndex >= 0 ? argv[outIndex + 1] : smoke ? mkdtempSync(join(tmpdir(), 'named-shm-bench-')) : undefined
  const only = argv.filter((arg, index) => !arg.startsWith('--') && (outIndex < 0 || index !== outIndex + 1))
  const unknown = only.filter((name) => !CASES.includes(name))
  if (unknown.length > 0) throw new Error(`unknown case ${unknown.join(', ')}; cases: ${CASES.join(', ')}`)
  const selected = only.length > 0 ? CASES.filter((name) => only.includes(name)) : CASES
  const results = []
  for (const name of selected) {
    const module = await import(`./cases/${name}.mjs`)
    const started = Date.now()
    let outcome
    try {
      outcome = await module.run({ smoke })
    } catch (error) {
      outcome = { rows: [], notes: [`failed: ${error.stack ?? error}`], failed: true }
    }
    const result = {
      case: name,
      title: module.title,
      unit: module.unit,
      better: module.better,
      seconds: (Date.now() - started) / 1000,
      ...outcome,
      rows: withRatios(outcome.rows),
    }
    printTable(result)
    results.push(result)
  }
  // The address space each in-heap view reserves (its own table; not a
  // side-by-side case).
  if (!smoke && only.length === 0) await (await import('./in-heap.mjs')).main()
  const report = {
    command: `node benchmark/run.mjs ${argv.join(' ')}`.trim(),
    date: new Date().toISOString(),
    smoke,
    machine: machine(),
    cases: results,
  }
  printGoals(results)
  const resultsPath = out ? join(out, 'results.json') : join(BENCH, 'results.json')
  const chartPath = out ? join(out, 'benchmark.svg') : join(ROOT, 'docs', 'benchmark.svg')
  mkdirSync(join(chartPath, '..'), { recursive: true })
  writeFileSync(resultsPath, `${JSON.stringify(report, null, 2)}\n`)
  writeFileSync(chartPath, chart(report))
  console.log(`\nwrote ${resultsPath} and ${chartPath}`)
  return { report, resultsPath, chartPath }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { report } = await main()
  if (report.cases.some((result) => result.failed)) process.exitCode = 1
}
