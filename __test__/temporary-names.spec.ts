// Where /proc is missing, a creator names its segment by its descriptor
// (Linux 6.10+, or with CAP_DAC_READ_SEARCH) or else through a temporary
// name; another user who guesses those names must not be able to make
// every create fail with a false EEXIST. (The temporary-name path itself is
// forced in a unit test of crates/core/src/os/linux.rs.)

import { join } from 'node:path'

import test from 'ava'

import { isRoot, PACKAGE_ROOT, runProcess, uniqueName } from './helpers'

test('without /proc, temporary names cannot be taken ahead of the creator', async (t) => {
  if (!isRoot()) {
    t.log('skipped: unshare -m and mount need root (CI runs as root)')
    t.pass()
    return
  }
  // A private mount namespace with /proc hidden and a /dev/shm of its own.
  const script = 'mount -t tmpfs -o size=16m tmpfs /dev/shm && mount -t tmpfs none /proc && exec "$0" "$@"'
  const fixture = join(__dirname, 'fixtures', 'no-proc.js')
  const result = await runProcess('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, process.execPath, fixture, uniqueName('no-proc')], {
    env: { NAMED_SHM_ROOT: PACKAGE_ROOT },
  })
  t.is(result.signal, null, result.stderr)
  t.is(result.code, 0, result.stderr)
  t.deepEqual(JSON.parse(result.stdout), { proc: false, created: 'made' })
})
