// `named-shm COMMAND ...`: finds the command, parses its arguments strictly
// (unknown options are errors), runs it, and turns any error into one line on
// stderr and a non-zero exit status.

import { parseArgs } from 'node:util'

import { type Command, CliError, USAGE, usageError } from './command'
import { cat } from './commands/cat'
import { create } from './commands/create'
import { ls } from './commands/ls'
import { rm } from './commands/rm'
import { stat } from './commands/stat'
import { watch } from './commands/watch'
import { write } from './commands/write'
import { printLine } from './output'
import { printError } from './report'

const COMMANDS: Command[] = [ls, stat, create, rm, cat, write, watch]

function overview(): string {
  const width = Math.max(...COMMANDS.map((command) => command.name.length))
  return [
    'Usage: named-shm COMMAND [ARGS] [--json]',
    '',
    'Inspect and clean up named shared memory segments (the ones',
    "SharedMemory.open, shm_open and Python's multiprocessing.shared_memory make).",
    '',
    'Commands:',
    ...COMMANDS.map((command) => `  ${command.name.padEnd(width)}  ${command.summary}`),
    '',
    'Every command takes --json (machine-readable output; errors as JSON on',
    'stderr) and --help. Listing (ls) works on Linux only: macOS and Windows keep',
    'segment names where no program can enumerate them.',
    '',
    'Exit status: 0 on success, 1 when an operation failed, 2 for a usage error.',
  ].join('\n')
}

function commandHelp(command: Command): string {
  return `Usage: named-shm ${command.usage}\n\n${command.help}`
}

/** Runs the CLI with `args` (argv without node and the script); resolves to the exit status. */
export async function main(args: string[]): Promise<number> {
  const json = args.includes('--json')
  // `named-shm --json ls` as well as `named-shm ls --json`.
  const [name, ...rest] = args[0] === '--json' ? [args[1], '--json', ...args.slice(2)] : args
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const topic = name === 'help' ? COMMANDS.find((command) => command.name === rest[0]) : undefined
    printLine(topic ? commandHelp(topic) : overview())
    return 0
  }
  if (name === '--version' || name === '-v') {
    printLine((require('../../package.json') as { version: string }).version)
    return 0
  }
  const command = COMMANDS.find((candidate) => candidate.name === name)
  try {
    if (command === undefined) throw usageError(`unknown command '${name}'; run named-shm --help for the list`)
    const { values, positionals } = parseArguments(command, rest)
    if (values.help === true) {
      printLine(commandHelp(command))
      return 0
    }
    await command.run({ positionals, values, json })
    return typeof process.exitCode === 'number' ? process.exitCode : 0
  } catch (error) {
    printError(error, json)
    if ((error as { code?: unknown }).code === USAGE) {
      if (!json) process.stderr.write(command ? `Usage: named-shm ${command.usage}\n` : '')
      return 2
    }
    return 1
  }
}

function parseArguments(command: Command, args: string[]): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  let parsed
  try {
    parsed = parseArgs({
      args,
      options: { ...command.options, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    })
  } catch (error) {
    // parseArgs's own errors (ERR_PARSE_ARGS_UNKNOWN_OPTION, ...) are usage errors.
    throw new CliError(USAGE, (error as Error).message)
  }
  const { values, positionals } = parsed
  if (values.help !== true) {
    const { min, max } = command.operands
    if (positionals.length < min || positionals.length > max) {
      throw usageError(`${command.name} takes ${min === max ? min : max === Infinity ? `at least ${min}` : `${min} to ${max}`} operand${max === 1 ? '' : 's'}, got ${positionals.length}`)
    }
  }
  return { values: values as Record<string, string | boolean | undefined>, positionals }
}
