import { SharedMemory } from '../../index'
import { CliError, type Command, UNSUPPORTED } from '../command'
import { listingUnsupported, statSegment } from '../listing'
import { humanSize, parseCount, parseMode } from '../numbers'
import { printJson, printLine } from '../output'

export const create: Command = {
  name: 'create',
  summary: 'create a zero-filled segment',
  usage: 'create NAME SIZE [--mode MODE] [--sparse] [--json]',
  help: `Creates the segment NAME of SIZE bytes, zero-filled; fails with EEXIST if
the name is taken. SIZE may end in K, M, G or T (powers of 1024): 64K, 1M.

  --mode MODE  permission bits in octal (default 600), masked by the umask
               (macOS applies them as given; Windows ignores them)
  --sparse     do not reserve the memory now (Linux): pages are allocated
               when first written, and a full /dev/shm then kills the writer
               with SIGBUS; without it, a full /dev/shm fails here with ENOSPC

Windows: a segment lives only while some process holds it, so one created here
would vanish when this command exits; create it from the program that uses it
(exit status 1, code ERR_CLI_UNSUPPORTED).

--json prints the new segment as stat --json does.`,
  options: { mode: { type: 'string' }, sparse: { type: 'boolean' } },
  operands: { min: 2, max: 2 },
  async run({ positionals: [name, sizeText], values, json }) {
    const size = parseCount(sizeText, 'SIZE', true)
    const mode = typeof values.mode === 'string' ? parseMode(values.mode) : 0o600
    if (process.platform === 'win32') {
      throw new CliError(UNSUPPORTED, 'Windows segments end with the last handle: one created here would vanish when this command exits')
    }
    const shm = SharedMemory.open(name, size, { create: true, exclusive: true, mode, reserve: values.sparse !== true })
    shm.close()
    const described = listingUnsupported() === null ? statSegment(name).segments[0] : { name, osName: shm.osName, size: shm.size }
    if (json) printJson(described)
    else printLine(`created ${described.osName}: ${humanSize(described.size)} (${described.size} bytes)${'mode' in described ? `, mode ${described.mode}` : ''}`)
  },
}
