import { SharedMemory } from '../../index'
import type { Command } from '../command'
import { listingUnsupported, statSegment } from '../listing'
import { humanAge, humanSize } from '../numbers'
import { printJson, printLine } from '../output'
import { processCell, unreadableNote } from './ls'

export const stat: Command = {
  name: 'stat',
  summary: 'show one segment: size, mode, owner, age, processes',
  usage: 'stat NAME [--json]',
  help: `Shows the segment NAME: its OS name and size and, on Linux, the file in
/dev/shm behind it, its mode, owner, age and the processes that map it.

On macOS and Windows only the OS name and size are known (the segment is
opened read-only to learn its size).

--json prints {name, osName, size} plus, on Linux, {path, mode, uid, owner,
created, ageSeconds, processes: [{pid, command}], unreadableProcesses}.`,
  options: {},
  operands: { min: 1, max: 1 },
  async run({ positionals: [name], json }) {
    if (listingUnsupported() !== null) {
      using shm = SharedMemory.open(name, 0, { readOnly: true })
      const entry = { name: shm.osName.replace(/^\//, ''), osName: shm.osName, size: shm.size }
      if (json) printJson(entry)
      else printLine(`${entry.osName}  ${humanSize(entry.size)} (${entry.size} bytes)`)
      return
    }
    const {
      segments: [entry],
      unreadableProcesses,
    } = statSegment(name)
    if (json) {
      printJson({ ...entry, unreadableProcesses })
      return
    }
    printLine(`name:      ${entry.name}`)
    printLine(`os name:   ${entry.osName}`)
    printLine(`path:      ${entry.path}`)
    printLine(`size:      ${humanSize(entry.size)} (${entry.size} bytes)`)
    printLine(`mode:      ${entry.mode}`)
    printLine(`owner:     ${entry.owner} (uid ${entry.uid})`)
    printLine(`created:   ${entry.created} (${humanAge(entry.ageSeconds)} ago)`)
    printLine(`processes: ${processCell(entry)}`)
    if (unreadableProcesses > 0) printLine(unreadableNote(unreadableProcesses))
  },
}
