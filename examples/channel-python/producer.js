// A Node producer for consumer.py: creates the channel, starts the Python
// receiver, sends it a few thousand messages (more than the ring holds, so
// the sender sleeps and Python wakes it), closes, and waits for Python.
//
//   node examples/channel-python/producer.js
'use strict'

const { spawn } = require('node:child_process')
const { join } = require('node:path')

const { Channel } = require(process.env.NAMED_SHM_ROOT ?? '../..')

const name = `named-shm-example-channel-${process.pid}`
const channel = Channel.open(name, { create: true, capacity: 4096 })
const python = spawn(process.env.PYTHON ?? 'python3', [join(__dirname, 'consumer.py'), name], { stdio: ['ignore', 'pipe', 'inherit'] })
let output = ''
python.stdout.on('data', (chunk) => (output += chunk))

;(async () => {
  for (let i = 0; i < 5000; i++) await channel.sendAsync(`message ${i} from node`)
  channel.close()
  const code = await new Promise((resolve) => python.on('close', resolve))
  Channel.delete(name)
  const lines = output.trim().split('\n')
  console.log(lines.slice(0, 2).join('\n'), '\n...\n' + lines.slice(-2).join('\n'))
  process.exitCode = code
})()
