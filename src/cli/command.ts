// What every CLI command is made of, and the one error type the CLI raises
// itself (everything else comes from the library with its own `code`).

import type { ParseArgsConfig } from 'node:util'

/** The parsed command line one command runs with. */
export interface Invocation {
  /** The operands after the command name. */
  positionals: string[]
  /** The command's options, as `node:util` `parseArgs` gives them. */
  values: Record<string, string | boolean | undefined>
  /** `--json`: machine-readable output on stdout (and errors on stderr). */
  json: boolean
}

export interface Command {
  name: string
  /** One line for the command list. */
  summary: string
  /** The synopsis after `named-shm`, e.g. `create NAME SIZE [--mode MODE]`. */
  usage: string
  /** What the command does, its options and platform limits, for `--help`. */
  help: string
  /** The command's own options (`--json` and `--help` are added to each). */
  options: NonNullable<ParseArgsConfig['options']>
  /** How many operands it takes. */
  operands: { min: number; max: number }
  run(invocation: Invocation): Promise<void>
}

/** A mistake on the command line: exit status 2, with the command's usage. */
export const USAGE = 'ERR_CLI_USAGE'
/** Something this platform cannot do (listing segments on macOS, ...). */
export const UNSUPPORTED = 'ERR_CLI_UNSUPPORTED'

export class CliError extends Error {
  readonly code: string
  constructor(code: string, message: string) {
    super(message)
    this.code = code
  }
}

export function usageError(message: string): CliError {
  return new CliError(USAGE, message)
}
