// Another user: `nobody` against segments root made with mode
// 0o600 and 0o644. The package is copied to a world-readable temporary
// directory, since the checkout may sit where nobody cannot enter.

import { randomBytes } from 'node:crypto'
import { chmodSync, cpSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test, { type ExecutionContext } from 'ava'

import { SharedMemory } from '../index'
import { PACKAGE_ROOT, isRoot, jsonLines, runProcess, scratch } from './helpers'

/** A copy of what the nobody child loads, removed when the test ends. */
function packageForNobody(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'named-shm-nobody-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  chmodSync(dir, 0o755)
  const files = ['index.js', 'binding.js', 'lib', ...readdirSync(PACKAGE_ROOT).filter((f) => f.endsWith('.node'))]
  for (const file of files) cpSync(join(PACKAGE_ROOT, file), join(dir, file), { recursive: true })
  cpSync(join(__dirname, 'fixtures', 'nobody.mjs'), join(dir, 'nobody.mjs'))
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    chmodSync(join(entry.parentPath ?? entry.path, entry.name), entry.isDirectory() ? 0o755 : 0o644)
  }
  return dir
}

async function asNobody(t: ExecutionContext, mode: string, name: string) {
  const dir = packageForNobody(t)
  const child = await runProcess('runuser', ['-u', 'nobody', '--', process.execPath, join(dir, 'nobody.mjs'), mode, name], {
    env: { NAMED_SHM_ROOT: dir },
  })
  t.is(child.signal, null, child.stderr)
  t.is(child.code, 0, child.stderr)
  return jsonLines(child.stdout)[0]
}

test('nobody cannot open a 0o600 segment at all: EACCES', async (t) => {
  if (!isRoot()) {
    t.log('skipped: runuser -u nobody needs root (CI runs as root)')
    t.pass()
    return
  }
  const shm = scratch(t, 4096, { mode: 0o600 })
  const pattern = randomBytes(4096)
  shm.write(pattern)
  t.is(statSync(`/dev/shm${shm.osName}`).mode & 0o777, 0o600)
  const result = await asNobody(t, 'private', shm.name)
  t.deepEqual(result, {
    uid: 65534,
    openReadWrite: 'EACCES',
    openOrCreate: 'EACCES',
    nsprOpen: 'EACCES',
    createExclusive: 'EEXIST',
    delete: 'EPERM', // /dev/shm is sticky
    openReadOnly: 'EACCES',
  })
  t.true(shm.read().equals(pattern), 'not a byte changed')
})

test('nobody can open a 0o644 segment read-only and cannot change a single byte of it', async (t) => {
  if (!isRoot()) {
    t.log('skipped: runuser -u nobody needs root (CI runs as root)')
    t.pass()
    return
  }
  const shm = scratch(t, 3 * 4096 + 100, { mode: 0o644 })
  // `mode` is masked by the umask, as fs.open does; this test needs 0o644 itself.
  const path = `/dev/shm${shm.osName}`
  t.is(statSync(path).mode & 0o777, 0o644 & ~process.umask())
  chmodSync(path, 0o644)
  const pattern = randomBytes(shm.size)
  shm.write(pattern)
  const view = shm.attach()
  const result = await asNobody(t, 'shared', shm.name)
  t.deepEqual(result, {
    uid: 65534,
    openReadWrite: 'EACCES',
    openOrCreate: 'EACCES',
    nsprOpen: 'EACCES',
    createExclusive: 'EEXIST',
    delete: 'EPERM',
    openReadOnly: 'ok',
    size: shm.size,
    write: 'ERR_SHM_READ_ONLY',
    writeString: 'ERR_SHM_READ_ONLY',
    attach: 'ok',
    attachReadWrite: 'ok',
    nsprAttach: 'ok',
    privateWrites: true,
    segmentUnchanged: true,
  })
  // From the owner's side: every byte as it was, through a copy and a live view.
  t.true(shm.read().equals(pattern))
  t.true(view.equals(pattern))
  shm.detach(view)
})

test('a name another user took first: open-or-create refuses it with ERR_SHM_FOREIGN_OWNER; open without create shows its owner and mode', async (t) => {
  if (!isRoot()) {
    t.log('skipped: runuser -u nobody needs root (CI runs as root)')
    t.pass()
    return
  }
  const name = `named-shm-squat-${randomBytes(6).toString('hex')}`
  t.teardown(() => rmSync(`/dev/shm/${name}`, { force: true }))
  const squatter = await asNobody(t, 'squat', name)
  t.is(squatter.squat, 'ok')
  const nobodyUid = squatter.uid as number
  const error = t.throws(() => SharedMemory.open(name, 4096, { create: true, mode: 0o600 }), { code: 'ERR_SHM_FOREIGN_OWNER' })
  t.regex(error!.message, new RegExp(`belongs to another user \\(uid ${nobodyUid}, mode 0o666\\)`))
  // Deliberate sharing still works, and says whose segment it is.
  const shared = SharedMemory.open(name, 0)
  t.teardown(() => shared.close())
  t.is(shared.owner, nobodyUid)
  t.is(shared.mode, 0o666)
  t.is(shared.read(0, 8).toString(), 'squatted')
  // Our own segments report us.
  const own = scratch(t, 64, { mode: 0o640 })
  t.is(own.owner, 0)
  t.is(own.mode, statSync(`/dev/shm${own.osName}`).mode & 0o777)
})

test('a read-only create whose mode forbids reading fails with EACCES and leaves no name behind', async (t) => {
  if (!isRoot()) {
    t.log('skipped: runuser -u nobody needs root (CI runs as root)')
    t.pass()
    return
  }
  const name = `named-shm-unreadable-${randomBytes(6).toString('hex')}`
  t.teardown(() => rmSync(`/dev/shm/${name}`, { force: true }))
  const result = await asNobody(t, 'unreadable', name)
  t.is(result.createReadOnly, 'EACCES')
  t.false(result.leftBehind)
  t.is(result.retry, 'ok')
  t.is(result.cleanup, 'ok')
})
