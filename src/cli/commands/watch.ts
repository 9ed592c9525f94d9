import { SharedMemory, waitAsync } from '../../index'
import { type Command, usageError } from '../command'
import { parseCount } from '../numbers'
import { printJson, printLine } from '../output'

export const watch: Command = {
  name: 'watch',
  summary: 'print a 32-bit word each time it is notified',
  usage: 'watch NAME OFFSET [--count N] [--timeout MS] [--json]',
  help: `Prints the 32-bit word at byte OFFSET (a multiple of 4) of segment NAME,
then again each time a process notifies it (notify(), named-shm write
--notify) or it changes, until Ctrl-C.

Each line says why it was printed: "initial", "notified" (woken by notify),
"changed" (the word no longer held the last value printed, without a notify).

  --count N     stop after N notifications or changes
  --timeout MS  stop when nothing happens for MS milliseconds

--json prints one line per event: {event, value, offset, time}.`,
  options: { count: { type: 'string' }, timeout: { type: 'string' } },
  operands: { min: 2, max: 2 },
  async run({ positionals: [name, offsetText], values, json }) {
    const offset = parseCount(offsetText, 'OFFSET')
    if (offset % 4 !== 0) throw usageError(`OFFSET must be a multiple of 4 (a 32-bit word), not ${offset}`)
    const count = typeof values.count === 'string' ? parseCount(values.count, '--count') : Infinity
    const timeout = typeof values.timeout === 'string' ? parseCount(values.timeout, '--timeout') : Infinity
    using shm = openForWaiting(name)
    const view = shm.attach()
    const words = new Int32Array(view.buffer, view.byteOffset, view.length >> 2)
    const index = offset / 4
    if (index >= words.length) {
      throw usageError(`OFFSET ${offset} is past the last word of ${shm.osName} (${shm.size} bytes)`)
    }
    const stop = new AbortController()
    const onSignal = (): void => stop.abort()
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
    const print = (event: string, value: number): void => {
      if (json) printJson({ event, value, offset, time: new Date().toISOString() })
      else printLine(`${event.padEnd(8)}  ${value} (0x${(value >>> 0).toString(16).padStart(8, '0')})`)
    }
    try {
      let value = Atomics.load(words, index)
      print('initial', value)
      for (let seen = 0; seen < count; seen += 1) {
        const outcome = await waitAsync(words, index, value, timeout, { signal: stop.signal, ref: true })
        if (outcome === 'timed-out') break
        value = Atomics.load(words, index)
        print(outcome === 'ok' ? 'notified' : 'changed', value)
      }
    } catch (error) {
      if ((error as { code?: unknown }).code !== 'ABORT_ERR') throw error
    } finally {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    }
  },
}

/** Read-write where allowed (macOS maps no read-only views), else read-only. */
function openForWaiting(name: string): SharedMemory {
  try {
    return SharedMemory.open(name, 0)
  } catch (error) {
    if ((error as { code?: unknown }).code !== 'EACCES') throw error
    return SharedMemory.open(name, 0, { readOnly: true })
  }
}
