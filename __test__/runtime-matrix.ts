// The runtime table of the README, measured: which runtimes load the packed
// package, and what works in each. Node binaries come from this process and
// NAMED_SHM_NODES (colon-separated); Bun and Deno from NAMED_SHM_BUN and
// NAMED_SHM_DENO (.ci/run fetches all of them from npm).

import { spawn, spawnSync } from 'node:child_process'
import { join } from 'node:path'

import { SharedMemory } from '../index'
import { uniqueName } from './helpers'

export interface Runtime {
  kind: 'node' | 'bun' | 'deno'
  path: string
  /** `node 22.21.1`, for test titles. */
  label: string
  version: string
  /** Its row in the README table: `Node 22`, `Bun`, `Deno`. */
  row: string
}

export function runtimesUnderTest(): Runtime[] {
  const runtimes: Runtime[] = []
  const nodes = [process.execPath, ...(process.env.NAMED_SHM_NODES ?? '').split(':').filter(Boolean)]
  for (const path of nodes) {
    const version = versionOf(path, /^v(\d+\.\d+\.\d+)/)
    runtimes.push({ kind: 'node', path, label: `node ${version}`, version, row: `Node ${version.split('.')[0]}` })
  }
  const bun = process.env.NAMED_SHM_BUN
  if (bun) {
    const version = versionOf(bun, /^(\d+\.\d+\.\d+)/)
    runtimes.push({ kind: 'bun', path: bun, label: `bun ${version}`, version, row: 'Bun' })
  }
  const deno = process.env.NAMED_SHM_DENO
  if (deno) {
    const version = versionOf(deno, /^deno (\d+\.\d+\.\d+)/)
    runtimes.push({ kind: 'deno', path: deno, label: `deno ${version}`, version, row: 'Deno' })
  }
  return runtimes
}

function versionOf(path: string, pattern: RegExp): string {
  const { stdout, error } = spawnSync(path, ['--version'], { encoding: 'utf8' })
  if (error) throw new Error(`cannot run ${path}: ${error.message}`)
  const match = pattern.exec(stdout.trim())
  if (!match) throw new Error(`${path} --version said: ${stdout}`)
  return match[1]
}

interface Outcome {
  code: number | null
  stdout: string
  stderr: string
  pid: number
}

export interface Check {
  /** The README column. */
  column: string
  /** Runs it in the installed project; null when it passed, else why not. */
  run(exec: (file: string, args: string[]) => Promise<Outcome>): Promise<string | null>
}

const cliSteps = [
  ['create', '{name}', '4K', '--json'],
  ['stat', '{name}', '--json'],
  ['cat', '{name}', '--length', '4'],
  ['rm', '{name}'],
]

export const RUNTIME_CHECKS: Check[] = [
  ...['require', 'import'].map((column) => ({
    column,
    async run(exec: (file: string, args: string[]) => Promise<Outcome>) {
      const name = uniqueName(`rt-${column}`)
      try {
        const outcome = await exec(column === 'require' ? 'consumer.cjs' : 'consumer.mjs', [name])
        return outcome.code === 0 && /"afterDelete":"ENOENT"/.test(outcome.stdout) ? null : failure(outcome)
      } finally {
        deleteQuietly(name)
      }
    },
  })),
  {
    column: 'CLI',
    async run(exec) {
      const name = uniqueName('rt-cli')
      try {
        for (const step of cliSteps) {
          const outcome = await exec(join('node_modules', 'named-shm', 'bin', 'named-shm.js'), step.map((arg) => arg.replace('{name}', name)))
          if (outcome.code !== 0) return `${step[0]}: ${failure(outcome)}`
        }
        return null
      } finally {
        deleteQuietly(name)
      }
    },
  },
  {
    column: 'cluster example',
    async run(exec) {
      const outcome = await exec('cluster-demo.js', [])
      deleteQuietly(`named-shm-demo-${outcome.pid}`)
      return outcome.code === 0 && /workers exited: 0, 0, 0/.test(outcome.stdout) ? null : failure(outcome)
    },
  },
  {
    column: 'worker_threads example',
    async run(exec) {
      const outcome = await exec('worker-threads.js', [])
      deleteQuietly(`named-shm-threads-${outcome.pid}`)
      return outcome.code === 0 && /counter: 400000 \(expected 400000\)/.test(outcome.stdout) ? null : failure(outcome)
    },
  },
]

function failure(outcome: Outcome): string {
  const said = (outcome.stderr || outcome.stdout).trim().split('\n').find((line) => /error|Error|not/i.test(line)) ?? outcome.stderr.trim().split('\n')[0]
  return `exit ${outcome.code}: ${said ?? ''}`.slice(0, 200)
}

function deleteQuietly(name: string): void {
  try {
    SharedMemory.delete(name)
  } catch {
    // Never created, or already deleted by the program.
  }
}

/** Each check's outcome under `runtime`, run in `project` (the packed install). */
export async function measureRuntime(runtime: Runtime, project: string, env: NodeJS.ProcessEnv): Promise<{ check: string; passed: boolean; detail: string }[]> {
  const exec = (file: string, args: string[]): Promise<Outcome> => {
    const argv = runtime.kind === 'deno' ? ['run', '--allow-all', file, ...args] : [file, ...args]
    return runBounded(runtime.path, argv, project, env)
  }
  const results = []
  for (const check of RUNTIME_CHECKS) {
    const why = await check.run(exec)
    results.push({ check: check.column, passed: why === null, detail: why ?? '' })
  }
  return results
}

/** Runs to its end, or kills its process group after 60 s (a runtime that hangs fails the check). */
function runBounded(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk) => (stdout += chunk))
    child.stderr.on('data', (chunk) => (stderr += chunk))
    const timer = setTimeout(() => {
      stderr += '\n(timed out after 60 s)'
      try {
        process.kill(-child.pid!, 'SIGKILL')
      } catch {
        // Already gone.
      }
    }, 60_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr, pid: child.pid! })
    })
  })
}

/** The README's runtime table: row label → column → whether it works ('yes'). */
export function readmeRuntimeTable(readme: string): Map<string, Record<string, boolean>> {
  const lines = readme.split('\n')
  const start = lines.findIndex((line) => line.startsWith('| Runtime |'))
  const table = new Map<string, Record<string, boolean>>()
  if (start < 0) return table
  const cells = (line: string) => line.split('|').slice(1, -1).map((cell) => cell.trim())
  const header = cells(lines[start])
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break
    const row = cells(line)
    const entry: Record<string, boolean> = {}
    for (const check of RUNTIME_CHECKS) {
      const column = header.indexOf(check.column)
      if (column >= 0) entry[check.column] = row[column] === 'yes'
    }
    table.set(row[0], entry)
  }
  return table
}
