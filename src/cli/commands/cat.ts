import { SharedMemory } from '../../index'
import { CliError, type Command } from '../command'
import { parseCount } from '../numbers'
import { printJson, writeBytes } from '../output'

/** Bytes copied per read: large enough to be fast, small enough to stream. */
const CHUNK = 1 << 20

export const cat: Command = {
  name: 'cat',
  summary: "copy a segment's bytes to stdout",
  usage: 'cat NAME [--offset N] [--length N] [--json]',
  help: `Writes the bytes of segment NAME to stdout (opened read-only, copied
with read(), so it works on every platform).

  --offset N   start at byte N (default 0)
  --length N   copy N bytes (default: to the end); K, M, G suffixes allowed

--json prints {name, osName, offset, length, base64} instead of raw bytes.`,
  options: { offset: { type: 'string' }, length: { type: 'string' } },
  operands: { min: 1, max: 1 },
  async run({ positionals: [name], values, json }) {
    using shm = SharedMemory.open(name, 0, { readOnly: true })
    const offset = typeof values.offset === 'string' ? parseCount(values.offset, '--offset', true) : 0
    const length = typeof values.length === 'string' ? parseCount(values.length, '--length', true) : Math.max(0, shm.size - offset)
    if (offset > shm.size || length > shm.size - offset) {
      throw new CliError('ERR_OUT_OF_RANGE', `${shm.osName} has ${shm.size} bytes: --offset ${offset} --length ${length} reaches past its end`)
    }
    if (json) {
      const bytes = shm.read(offset, length)
      printJson({ name, osName: shm.osName, offset, length, base64: bytes.toString('base64') })
      return
    }
    for (let done = 0; done < length; done += CHUNK) {
      await writeBytes(shm.read(offset + done, Math.min(CHUNK, length - done)))
    }
  },
}
