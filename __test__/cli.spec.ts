// The named-shm CLI (bin/named-shm.js) against real segments: every command,
// its --json form, and its errors (one line on stderr, a non-zero status).

import { spawn } from 'node:child_process'
import { join } from 'node:path'

import test, { type ExecutionContext } from 'ava'

import { notify, SharedMemory } from '../index'
import { type ChildResult, deleteAtEnd, jsonLines, PACKAGE_ROOT, scratch, uniqueName } from './helpers'

const CLI = join(PACKAGE_ROOT, 'bin', 'named-shm.js')

/** Runs the CLI to its end, with `input` on stdin. */
function cli(args: string[], input: string | Buffer = '', env: NodeJS.ProcessEnv = process.env): Promise<ChildResult & { stdoutBytes: Buffer }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env })
    const out: Buffer[] = []
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk))
    child.stderr.on('data', (chunk) => (stderr += chunk))
    child.on('error', reject)
    child.on('close', (code, signal) => {
      const stdoutBytes = Buffer.concat(out)
      resolve({ code, signal, stdout: stdoutBytes.toString('utf8'), stdoutBytes, stderr })
    })
    child.stdin.end(input)
  })
}

const linux = process.platform === 'linux'

/** Registers a test on the platforms whose behaviour it describes. */
function testWhere(platforms: boolean, title: string, body: (t: ExecutionContext) => Promise<void>): void {
  if (platforms) test(title, body)
}

/** As testWhere, alone: a child that another test of this file forks shares this process's mappings until it execs, so `ls` would list it too. */
function testAloneWhere(platforms: boolean, title: string, body: (t: ExecutionContext) => Promise<void>): void {
  if (platforms) test.serial(title, body)
}

// macOS and Windows have no directory of segments: ls says so, stat knows the size only.
testWhere(!linux, 'ls is ERR_CLI_UNSUPPORTED and stat gives name and size where names cannot be listed', async (t) => {
  const shm = scratch(t, 4096)
  const ls = await cli(['ls', '--json'])
  t.is(ls.code, 1)
  t.like(JSON.parse(ls.stderr), { error: { code: 'ERR_CLI_UNSUPPORTED' } })
  const stat = await cli(['stat', shm.name, '--json'])
  t.is(stat.code, 0, stat.stderr)
  t.deepEqual(JSON.parse(stat.stdout), { name: shm.osName.replace(/^\//, ''), osName: shm.osName, size: shm.size })
})

testAloneWhere(linux, 'create makes a zero-filled segment with the given mode; stat and ls describe it', async (t) => {
  const name = uniqueName('cli-create')
  deleteAtEnd(t, name)
  const created = await cli(['create', name, '64K', '--mode', '640', '--json'])
  t.is(created.code, 0, created.stderr)
  const entry = JSON.parse(created.stdout)
  t.like(entry, { name, osName: `/${name}`, path: `/dev/shm/${name}`, size: 65536, uid: process.getuid!() })
  t.is(entry.mode, (0o640 & ~process.umask()).toString(8).padStart(4, '0'))

  // The segment exists for the library, zero-filled, at that size.
  using shm = SharedMemory.open(name, 0)
  t.is(shm.size, 65536)
  t.true(shm.read().equals(Buffer.alloc(65536)))
  const view = shm.attach() // this test process now maps it

  const stat = await cli(['stat', name, '--json'])
  t.is(stat.code, 0, stat.stderr)
  const described = JSON.parse(stat.stdout)
  t.like(described, { name, size: 65536, mode: entry.mode })
  t.true(described.processes.some((p: { pid: number; command: string }) => p.pid === process.pid && p.command.length > 0), stat.stdout)
  t.true(Date.parse(described.created) <= Date.now())
  t.true(described.ageSeconds >= 0 && described.ageSeconds < 600)

  const ls = await cli(['ls', '--json'])
  t.is(ls.code, 0, ls.stderr)
  const listing = JSON.parse(ls.stdout) as { segments: { name: string; processes: { pid: number }[] }[]; unreadableProcesses: number }
  const listed = listing.segments.find((segment) => segment.name === name)
  t.truthy(listed, ls.stdout)
  t.deepEqual(listed!.processes.map((p) => p.pid), [process.pid])
  t.is(typeof listing.unreadableProcesses, 'number')

  const human = await cli(['ls'])
  t.is(human.code, 0, human.stderr)
  t.regex(human.stdout, /^NAME +SIZE +MODE +OWNER +AGE +PROCESSES$/m)
  t.regex(human.stdout, new RegExp(`^${name} +64 KiB +${entry.mode} +\\S+ +\\d+s +${process.pid} \\(`, 'm'))

  shm.detach(view)
  shm.close() // the handle may map the segment for read() and write() too
  const unmapped = JSON.parse((await cli(['stat', name, '--json'])).stdout)
  t.deepEqual(unmapped.processes, [])
})

test('create refuses a taken name (EEXIST) and bad sizes and modes (usage, status 2)', async (t) => {
  const shm = scratch(t, 4096)
  const taken = await cli(['create', shm.name, '4096'])
  t.is(taken.code, 1)
  t.regex(taken.stderr, /^named-shm: .*EEXIST.* \[EEXIST\]\n$/)
  const json = await cli(['create', shm.name, '4096', '--json'])
  t.is(json.code, 1)
  t.is(json.stdout, '')
  t.like(JSON.parse(json.stderr), { error: { code: 'EEXIST', syscall: 'shm_open' } })
  t.is(typeof JSON.parse(json.stderr).error.errno, 'number')

  for (const args of [['create', 'x', 'ten'], ['create', 'x', '1', '--mode', '999'], ['create', 'x'], ['create', 'x', '1', '--bogus']]) {
    const result = await cli(args)
    t.is(result.code, 2, args.join(' '))
    t.regex(result.stderr, /\[ERR_CLI_USAGE\]\nUsage: named-shm create NAME SIZE/, args.join(' '))
  }
  const zero = await cli(['create', uniqueName('zero'), '0'])
  t.is(zero.code, 1)
  t.regex(zero.stderr, /\[ERR_OUT_OF_RANGE\]/)
})

test('write copies stdin at an offset and cat gives it back, raw and as JSON', async (t) => {
  const shm = scratch(t, 4096)
  const payload = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff))
  const written = await cli(['write', shm.name, '--offset', '100', '--json'], payload)
  t.is(written.code, 0, written.stderr)
  t.deepEqual(JSON.parse(written.stdout), { name: shm.name, osName: shm.osName, offset: 100, written: 300, woken: null })
  t.true(shm.read(100, 300).equals(payload))

  const raw = await cli(['cat', shm.name])
  t.is(raw.code, 0, raw.stderr)
  t.true(raw.stdoutBytes.equals(shm.read()))
  const slice = await cli(['cat', shm.name, '--offset', '100', '--length', '300'])
  t.true(slice.stdoutBytes.equals(payload))
  const json = await cli(['cat', shm.name, '--offset', '100', '--length', '300', '--json'])
  t.deepEqual(JSON.parse(json.stdout), { name: shm.name, osName: shm.osName, offset: 100, length: 300, base64: payload.toString('base64') })

  const human = await cli(['write', shm.name], 'hi')
  t.is(human.stdout, `wrote 2 bytes to ${shm.osName} at offset 0\n`)
  t.is(shm.read(0, 2).toString(), 'hi')
})

test('write refuses what does not fit, writing nothing; cat refuses a range past the end', async (t) => {
  const shm = scratch(t, 64)
  const tooLong = await cli(['write', shm.name, '--offset', '60'], 'hello')
  t.is(tooLong.code, 1)
  t.regex(tooLong.stderr, /\[ERR_OUT_OF_RANGE\]\n$/)
  t.true(shm.read().equals(Buffer.alloc(64)), 'nothing was written')
  const past = await cli(['cat', shm.name, '--offset', '60', '--length', '5'])
  t.is(past.code, 1)
  t.is(past.stdout, '')
  t.regex(past.stderr, /\[ERR_OUT_OF_RANGE\]\n$/)
  const missing = await cli(['cat', uniqueName('missing')])
  t.is(missing.code, 1)
  t.regex(missing.stderr, /\[ENOENT\]\n$/)
})

test('rm removes every name it can, reports each failure, and --force ignores missing ones', async (t) => {
  const names = [uniqueName('rm-a'), uniqueName('rm-b')]
  for (const name of names) {
    deleteAtEnd(t, name)
    SharedMemory.open(name, 16, { create: true }).close()
  }
  const missing = uniqueName('rm-missing')
  const result = await cli(['rm', names[0], missing, names[1], '--json'])
  t.is(result.code, 1)
  t.deepEqual(JSON.parse(result.stdout), { removed: names.map((name) => `/${name}`) })
  const errors = result.stderr.trim().split('\n').map((line) => JSON.parse(line))
  t.is(errors.length, 1)
  t.like(errors[0], { error: { code: 'ENOENT', syscall: 'shm_unlink' } })
  for (const name of names) t.throws(() => SharedMemory.open(name, 0), { code: 'ENOENT' })

  const forced = await cli(['rm', '-f', missing])
  t.is(forced.code, 0, forced.stderr)
  t.is(forced.stdout, '')
  t.is(forced.stderr, '')
})

test('watch prints the word, then each change a notify announces, and stops after --count', async (t) => {
  const shm = scratch(t, 64)
  const view = shm.attach()
  const words = new Int32Array(view.buffer, view.byteOffset, 16)
  words[2] = 7
  const child = spawn(process.execPath, [CLI, 'watch', shm.name, '8', '--count', '2', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stderr.on('data', (chunk) => (stderr += chunk))
  child.stdout.on('data', (chunk) => (stdout += chunk))
  const lines = (): Record<string, unknown>[] => jsonLines(stdout)
  const until = async (count: number): Promise<void> => {
    while (lines().length < count) await new Promise((resolve) => setTimeout(resolve, 5))
  }
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))

  await until(1)
  t.like(lines()[0], { event: 'initial', value: 7, offset: 8 })
  // Store, then notify once: a watcher already waiting is woken ("notified");
  // one not yet waiting finds the word changed ("changed"). Either way, one line.
  Atomics.store(words, 2, -5)
  notify(words, 2)
  await until(2)
  t.like(lines()[1], { value: -5, offset: 8 })
  t.true(['notified', 'changed'].includes(lines()[1].event as string))
  Atomics.store(words, 2, 0x7fffffff)
  notify(words, 2)
  t.is(await exited, 0, stderr)
  t.is(lines().length, 3, stdout)
  t.like(lines()[2], { value: 0x7fffffff, offset: 8 })
  t.false(Number.isNaN(Date.parse(lines()[2].time as string)))
})

test('watch --timeout ends quietly; a misaligned or outside OFFSET is a usage error', async (t) => {
  const shm = scratch(t, 64)
  const quiet = await cli(['watch', shm.name, '0', '--timeout', '50'])
  t.is(quiet.code, 0, quiet.stderr)
  t.is(quiet.stdout, 'initial   0 (0x00000000)\n')
  for (const offset of ['6', '64']) {
    const bad = await cli(['watch', shm.name, offset])
    t.is(bad.code, 2)
    t.regex(bad.stderr, /OFFSET .* \[ERR_CLI_USAGE\]/)
  }
})

test('write --notify wakes a watcher', async (t) => {
  const shm = scratch(t, 64)
  const child = spawn(process.execPath, [CLI, 'watch', shm.name, '0', '--count', '1'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  child.stdout.on('data', (chunk) => (stdout += chunk))
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  while (!stdout.includes('initial')) await new Promise((resolve) => setTimeout(resolve, 10))
  // The bytes 01 00 00 00 at offset 0: the word becomes 1, and the watcher is woken.
  const written = await cli(['write', shm.name, '--notify', '0', '--json'], Buffer.from([1, 0, 0, 0]))
  t.is(written.code, 0, written.stderr)
  t.is(await exited, 0)
  t.regex(stdout, /^initial +0 \(0x00000000\)\n(notified|changed) +1 \(0x00000001\)\n$/)
})

test('--help for the CLI and each command; unknown commands and options are usage errors', async (t) => {
  const overview = await cli(['--help'])
  t.is(overview.code, 0)
  for (const command of ['ls', 'stat', 'create', 'rm', 'cat', 'write', 'watch']) {
    t.regex(overview.stdout, new RegExp(`^  ${command} +\\S`, 'm'))
    const help = await cli([command, '--help'])
    t.is(help.code, 0, command)
    t.true(help.stdout.startsWith(`Usage: named-shm ${command}`), help.stdout)
    t.is((await cli(['help', command])).stdout, help.stdout)
  }
  t.regex(overview.stdout, /macOS and Windows/)
  t.regex((await cli(['ls', '--help'])).stdout, /macOS .*\n?.*Windows/)

  const unknown = await cli(['frobnicate'])
  t.is(unknown.code, 2)
  t.is(unknown.stderr, "named-shm: unknown command 'frobnicate'; run named-shm --help for the list [ERR_CLI_USAGE]\n")
  const option = await cli(['ls', '--all', '--json'])
  t.is(option.code, 2)
  t.like(JSON.parse(option.stderr), { error: { code: 'ERR_CLI_USAGE' } })
  t.is((await cli(['--version'])).stdout, `${require('../package.json').version}\n`)
  const jsonFirst = await cli(['--json', 'ls'])
  t.is(jsonFirst.code, 0, jsonFirst.stderr)
  t.true(Array.isArray(JSON.parse(jsonFirst.stdout).segments))
})

test('without a loadable addon the CLI says so in one line and exits 1', async (t) => {
  // The napi-rs loader takes the addon from this path when it is set.
  const result = await cli(['ls'], '', { ...process.env, NAPI_RS_NATIVE_LIBRARY_PATH: '/nonexistent/named-shm.node' })
  t.is(result.code, 1)
  t.is(result.stdout, '')
  t.regex(result.stderr, /^named-shm: cannot load the library: .+ \[\S+\]\n$/)
})
