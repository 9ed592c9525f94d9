// What another user can put at a name instead of a segment: each open says
// what it found with a coded error.

import { mkdirSync, rmdirSync, unlinkSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'

import test from 'ava'

import { SharedMemory } from '../index'
import { uniqueName } from './helpers'

const pathOf = (name: string) => `/dev/shm/${name}`

test('a socket at the name is ENXIO, not UNKNOWN', async (t) => {
  const name = uniqueName('socket')
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(pathOf(name), resolve))
  t.teardown(() => server.close())
  for (const readOnly of [true, false]) {
    const error = t.throws(() => SharedMemory.open(name, 0, { readOnly }), { code: 'ENXIO' })
    t.is((error as { syscall?: string })?.syscall, 'shm_open')
  }
})

test('a directory at the name is EISDIR, read-only or not', (t) => {
  const name = uniqueName('directory')
  mkdirSync(pathOf(name))
  t.teardown(() => rmdirSync(pathOf(name)))
  for (const readOnly of [true, false]) {
    t.throws(() => SharedMemory.open(name, 0, { readOnly }), { code: 'EISDIR' })
    t.throws(() => SharedMemory.open(name, 64, { create: true, readOnly }), { code: 'EISDIR' })
  }
})

test('an empty file at the name is ERR_SHM_SIZE, and the message does not ask for the size just given', (t) => {
  const name = uniqueName('empty')
  writeFileSync(pathOf(name), '', { mode: 0o600 })
  t.teardown(() => unlinkSync(pathOf(name)))
  const error = t.throws(() => SharedMemory.open(name, 64, { create: true }), { code: 'ERR_SHM_SIZE' })
  t.regex(error!.message, /is empty \(0 bytes\)/)
  t.notRegex(error!.message, /pass a size/)
})
