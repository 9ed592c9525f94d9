// What ran the benchmark: CPU, OS, runtime and compiler versions.

import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { cpus, loadavg, release, totalmem } from 'node:os'
import { join } from 'node:path'

import { ROOT } from './measure.mjs'

function version(command, args) {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim().split('\n')[0]
  } catch {
    return null
  }
}

export function machine() {
  const packageJson = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cpus: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    // Other work on the machine while the suite ran (1, 5 and 15 minutes).
    loadAverage: loadavg().map((load) => Number(load.toFixed(2))),
    os: `${process.platform} ${release()} ${process.arch}`,
    node: process.version,
    v8: process.versions.v8,
    namedShm: packageJson.version,
    rustc: version('rustc', ['--version']),
    gcc: version('gcc', ['--version']),
    python: version('python3', ['--version']),
  }
}
