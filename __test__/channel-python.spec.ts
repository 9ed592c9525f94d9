// The Python receiver of examples/channel-python sleeps the way a Node
// receiver does (docs/channel-layout.md): counted in receiver_sleepers, on
// the futex word data_seq, so that an idle receiver costs no CPU and a Node
// sender's wake reaches it. Linux only, as the example is.

import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

import test from 'ava'

import { Channel, SharedMemory } from '../index'
import { type ChildResult, deleteAtEnd, uniqueName } from './helpers'

const CONSUMER = join(__dirname, '..', 'examples', 'channel-python', 'consumer.py')
/** Header offset of `receiver_sleepers`: how many receivers sleep on `data_seq`. */
const RECEIVER_SLEEPERS = 76

/** CPU time (clock ticks, user + system) and voluntary context switches of process `pid` so far. */
function usage(pid: number): { ticks: number; switches: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name, which is in parentheses and may hold spaces: utime and stime are the 12th and 13th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return { ticks: Number(fields[11]) + Number(fields[12]), switches: Number(/^voluntary_ctxt_switches:\s+(\d+)$/m.exec(status)![1]) }
}

if (process.platform === 'linux') {
  test('the Python receiver sleeps on the futex while the channel is empty, and a Node send wakes it', async (t) => {
    const name = uniqueName('channel-python')
    const channel = Channel.open(name, { create: true })
    deleteAtEnd(t, name)
    t.teardown(() => channel.close())
    const header = SharedMemory.open(name, 0)
    t.teardown(() => header.close())

    const python = spawn('python3', [CONSUMER, name], { stdio: ['ignore', 'pipe', 'pipe'] })
    t.teardown(() => python.kill('SIGKILL'))
    let stdout = ''
    let stderr = ''
    python.stdout.on('data', (chunk) => (stdout += chunk))
    python.stderr.on('data', (chunk) => (stderr += chunk))
    const done = new Promise<ChildResult>((resolve, reject) => {
      python.on('error', reject)
      python.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
    })

    // It counts itself a sleeper before it sleeps.
    const sleepers = () => header.read(RECEIVER_SLEEPERS, 4).readUInt32LE(0)
    for (let tries = 0; sleepers() !== 1 && python.exitCode === null && tries < 3000; tries += 1) await sleep(10)
    t.is(sleepers(), 1, `the receiver never counted itself asleep: ${stderr}`)

    // An idle second. A receiver that polled every 0.5 ms (this example
    // before it slept) took 4 ticks (37 ms of CPU) and 1,654 context
    // switches here; one asleep on the futex wakes only for its 1 s timeout.
    const before = usage(python.pid!)
    await sleep(1000)
    const after = usage(python.pid!)
    const idle = { ticks: after.ticks - before.ticks, switches: after.switches - before.switches }
    t.log('the Python receiver over an idle second:', idle)
    t.true(idle.ticks <= 1, `${idle.ticks} clock ticks of CPU while idle`)
    t.true(idle.switches <= 5, `${idle.switches} voluntary context switches while idle`)
    t.is(sleepers(), 1, 'still asleep')

    // The send finds it counted, bumps data_seq and wakes it; close ends the stream.
    channel.send('hello after an idle second')
    channel.close()
    const result = await done
    t.is(result.code, 0, result.stderr)
    t.is(result.stdout, 'hello after an idle second\nreceived 1\n')
    t.is(sleepers(), 0, 'the receiver counted itself out')
  })
}
