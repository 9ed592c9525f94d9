// A full /dev/shm (`reserve`): each case runs a child in its
// own mount namespace with a 16 MiB tmpfs on /dev/shm, which vanishes with it.

import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

import test from 'ava'

import { isRoot, jsonLines, runProcess, scratch, uniqueName } from './helpers'

const FIXTURE = join(__dirname, 'fixtures', 'enospc.mjs')

/** Runs the fixture in a private mount namespace over a 16 MiB /dev/shm. */
function inSmallShm(mode: string, name: string) {
  const script = `mount -t tmpfs -o size=16m tmpfs /dev/shm && exec "$0" "$@"`
  return runProcess('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, process.execPath, FIXTURE, mode, name])
}

function shmMounts(): number {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((line) => line.split(' ')[4] === '/dev/shm').length
}

test('creating 32 MiB in a 16 MiB /dev/shm fails with ENOSPC saying how much was asked and is free', async (t) => {
  if (!isRoot()) {
    t.log('skipped: unshare -m and mount need root (CI runs as root)')
    t.pass()
    return
  }
  const mounts = shmMounts()
  const name = uniqueName('enospc')
  const result = await inSmallShm('reserve', name)
  t.is(result.signal, null, result.stderr)
  t.is(result.code, 0, result.stderr)
  const [space, failure, after] = jsonLines(result.stdout)
  t.deepEqual(space, { total: 16 << 20, free: 16 << 20 })
  t.is(failure.code, 'ENOSPC')
  t.is(failure.errno, -28)
  t.is(failure.syscall, 'fallocate')
  t.regex(failure.message as string, new RegExp(`^ENOSPC: no space left on device, fallocate '/${name}': `))
  t.regex(failure.message as string, /asked for 32 MiB \(33554432 bytes\) but \/dev\/shm has 16 MiB \(16777216 bytes\) free of 16 MiB/)
  t.regex(failure.message as string, /--shm-size=32m or more/)
  // Nothing is left of the failed segment: no name, no pages.
  t.deepEqual(after, { entries: [], freeAfter: 16 << 20, smaller: true })
  t.is(shmMounts(), mounts, 'the tmpfs went with the namespace')
  t.false(readdirSync('/dev/shm').includes(name))
})

test('with reserve: false creating succeeds; writing past the free space is lost but kills nothing, and write() says ENOSPC', async (t) => {
  if (!isRoot()) {
    t.log('skipped: unshare -m and mount need root (CI runs as root)')
    t.pass()
    return
  }
  const mounts = shmMounts()
  const name = uniqueName('sigbus')
  const result = await inSmallShm('no-reserve', name)
  t.is(result.signal, null, result.stderr)
  t.is(result.code, 0, result.stderr)
  const lines = jsonLines(result.stdout)
  t.deepEqual(lines[1], { created: true, size: 32 << 20 })
  t.deepEqual(lines[2], { wrote: 8 << 20 }, 'the pages that fit were written')
  t.deepEqual(lines[3], { survived: true })
  t.deepEqual(lines[4], { write: { code: 'ENOSPC', syscall: 'mmap' } })
  // This process is alive and its own segments work.
  const shm = scratch(t, 4096)
  shm.write('alive')
  t.is(shm.read(0, 5).toString(), 'alive')
  t.is(shmMounts(), mounts, 'the tmpfs went with the namespace')
  t.false(readdirSync('/dev/shm').includes(name))
})
