import { notify, SharedMemory } from '../../index'
import { type Command, usageError } from '../command'
import { parseCount } from '../numbers'
import { printJson, printLine } from '../output'

export const write: Command = {
  name: 'write',
  summary: 'copy stdin into a segment',
  usage: 'write NAME [--offset N] [--notify WORD] [--json]',
  help: `Reads stdin to its end and copies it into segment NAME at --offset
(default 0). If stdin holds more than fits, nothing is written
(ERR_OUT_OF_RANGE).

  --offset N     where the bytes go (K, M, G suffixes allowed)
  --notify WORD  afterwards, wake every process waiting (wait, waitAsync,
                 named-shm watch) on the 32-bit word at byte offset WORD,
                 a multiple of 4

--json prints {name, osName, offset, written, woken}.`,
  options: { offset: { type: 'string' }, notify: { type: 'string' } },
  operands: { min: 1, max: 1 },
  async run({ positionals: [name], values, json }) {
    const offset = typeof values.offset === 'string' ? parseCount(values.offset, '--offset', true) : 0
    const word = typeof values.notify === 'string' ? parseCount(values.notify, '--notify') : undefined
    if (word !== undefined && word % 4 !== 0) throw usageError(`--notify must be a multiple of 4 (a 32-bit word), not ${word}`)
    using shm = SharedMemory.open(name, 0)
    const bytes = await readStdin(Math.max(0, shm.size - offset) + 1)
    const written = shm.write(bytes, offset)
    let woken: number | null = null
    if (word !== undefined) {
      const view = shm.attach()
      woken = notify(new Int32Array(view.buffer, view.byteOffset, view.length >> 2), word / 4)
    }
    if (json) printJson({ name, osName: shm.osName, offset, written, woken })
    else printLine(`wrote ${written} bytes to ${shm.osName} at offset ${offset}${woken === null ? '' : `; woke ${woken}`}`)
  },
}

/** stdin to its end, or as soon as it holds `limit` bytes (enough to know it will not fit). */
async function readStdin(limit: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let total = 0
  for await (const chunk of process.stdin) {
    chunks.push(chunk as Buffer)
    total += (chunk as Buffer).length
    if (total >= limit) break
  }
  return Buffer.concat(chunks)
}
