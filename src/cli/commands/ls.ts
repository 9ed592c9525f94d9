import type { Command } from '../command'
import { listSegments, requireListing, type SegmentEntry } from '../listing'
import { humanAge, humanSize } from '../numbers'
import { printJson, printLine, printTable } from '../output'

/** The PROCESSES cell: `1234 (node), 5678 (python3)`. */
export function processCell(entry: SegmentEntry): string {
  return entry.processes.map((process) => `${process.pid} (${process.command})`).join(', ') || '-'
}

export function unreadableNote(count: number): string {
  const hint = process.getuid?.() === 0 ? '' : '; run as root to see every process'
  return `(${count} process${count === 1 ? "'s" : "es'"} maps could not be read${hint})`
}

export const ls: Command = {
  name: 'ls',
  summary: 'list every segment, with the processes that map it (Linux)',
  usage: 'ls [--json]',
  help: `Lists every segment in /dev/shm: name, size, mode, owner, age, and the
processes that map it (from /proc/<pid>/maps, where this user may read them;
run as root to see every process).

Linux only: macOS keeps shm_open names in no directory and Windows keeps file
mappings in the object manager, so neither can list them (exit status 1,
code ERR_CLI_UNSUPPORTED); stat, cat, write, watch and rm work there by name.

--json prints {"segments": [{name, osName, path, size, mode, uid, owner,
created, ageSeconds, processes: [{pid, command}]}], "unreadableProcesses": N}.`,
  options: {},
  operands: { min: 0, max: 0 },
  async run({ json }) {
    requireListing()
    const listing = listSegments()
    if (json) {
      printJson(listing)
      return
    }
    printTable(
      ['NAME', 'SIZE', 'MODE', 'OWNER', 'AGE', 'PROCESSES'],
      listing.segments.map((entry) => [
        entry.name,
        humanSize(entry.size),
        entry.mode,
        entry.owner,
        humanAge(entry.ageSeconds),
        processCell(entry),
      ]),
    )
    if (listing.unreadableProcesses > 0) printLine(unreadableNote(listing.unreadableProcesses))
  },
}
