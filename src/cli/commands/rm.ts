import { SharedMemory } from '../../index'
import type { Command } from '../command'
import { printJson, printLine } from '../output'
import { printError } from '../report'

export const rm: Command = {
  name: 'rm',
  summary: 'remove segments by name',
  usage: 'rm NAME... [--force] [--json]',
  help: `Removes each NAME (shm_unlink). Processes that have a segment open or
mapped keep its memory until they close it; later opens by name fail with
ENOENT. Every NAME is tried; each failure is one line on stderr, and the exit
status is 1 if any failed.

  --force, -f  a NAME that does not exist is not an error

Windows: names vanish with their last handle, so there is nothing to remove
and rm succeeds without doing anything.

--json prints {"removed": [osName, ...]} (failures still go to stderr).`,
  options: { force: { type: 'boolean', short: 'f' } },
  operands: { min: 1, max: Infinity },
  async run({ positionals: names, values, json }) {
    const removed: string[] = []
    let failed = false
    for (const name of names) {
      try {
        SharedMemory.delete(name)
        removed.push(SharedMemory.osNameOf(name))
      } catch (error) {
        if (values.force === true && (error as { code?: unknown }).code === 'ENOENT') continue
        printError(error, json)
        failed = true
      }
    }
    if (json) printJson({ removed })
    else for (const osName of removed) printLine(`removed ${osName}`)
    if (failed) process.exitCode = 1
  },
}
