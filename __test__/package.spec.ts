// The package as a consumer gets it: `npm pack` the root and this platform's
// npm/ package (with the built addon in it, as CI's publish job does), install
// both tarballs offline into a fresh project, and use it from there.
import { execFile } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

import test from 'ava'

import { PACKAGE_ROOT, deleteAtEnd, uniqueName } from './helpers'

const run = promisify(execFile)
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
// Windows runs npm.cmd only through a shell.
const shell = process.platform === 'win32'

/** The environment without the `npm_*` settings of the `npm test` around us. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.toLowerCase().startsWith('npm_')))
}

async function pack(directory: string, destination: string): Promise<{ filename: string; files: string[] }> {
  const { stdout } = await run(npm, ['pack', '--json', '--pack-destination', destination], {
    cwd: directory,
    env: cleanEnv(),
    shell,
  })
  const [result] = JSON.parse(stdout) as [{ filename: string; files: { path: string }[] }]
  return { filename: join(destination, result.filename), files: result.files.map((file) => file.path) }
}

/** This platform's npm/ directory, e.g. `linux-x64-gnu`, whose addon `npm run build` made. */
function platformDirectory(): string {
  const candidates = readdirSync(join(PACKAGE_ROOT, 'npm')).filter(
    (name) =>
      name.startsWith(`${process.platform}-${process.arch}`) &&
      existsSync(join(PACKAGE_ROOT, `named-shm.${name}.node`)),
  )
  if (candidates.length !== 1) throw new Error(`expected one built addon for this platform, found: ${candidates.join(', ')}`)
  return candidates[0]
}

const CONSUMER = `
const assert = require('node:assert')
const { SharedMemory, openSharedMemory, SHM_CREATE, SHM_EXCL } = require('named-shm')
const name = process.argv[1]
const shm = openSharedMemory(name, 4096, SHM_CREATE | SHM_EXCL)
const view = shm.attach()
view.write('packed', 0)
const other = SharedMemory.open(name, 0)
assert.strictEqual(other.read(0, 6).toString(), 'packed')
shm.detach(view)
// Detached: length 0, or over a SharedArrayBuffer (Node 22.23+, 24.16+) zeros.
assert.ok(view.length === 0 || view.every((byte) => byte === 0))
other.close()
shm.close()
SharedMemory.delete(name)
console.log(JSON.stringify({
  main: require.resolve('named-shm'),
  addon: require.resolve(require('named-shm/package.json').name + '-' + process.argv[2]),
  size: shm.size,
  closed: shm.closed,
}))
`

const TYPES = `
import { SharedMemory, type OpenOptions } from 'named-shm'
const options: OpenOptions = { create: true, mode: 0o600 }
const shm: SharedMemory = SharedMemory.open('typed', 1, options)
const view: Buffer = shm.attach()
shm.detach(view)
shm.close()
`

test('npm pack → offline install into a fresh project → require, attach, close', async (t) => {
  const scratch = mkdtempSync(join(tmpdir(), 'named-shm-pack-'))
  t.teardown(() => rmSync(scratch, { recursive: true, force: true }))
  const tarballs = join(scratch, 'tarballs')
  mkdirSync(tarballs)

  // The root package: what `files` ships, and nothing else.
  const root = await pack(PACKAGE_ROOT, tarballs)
  for (const file of ['package.json', 'README.md', 'index.js', 'index.d.ts', 'binding.js', 'binding.d.ts', 'lib/index.js', 'lib/index.d.ts', 'lib/shared-memory.js']) {
    t.true(root.files.includes(file), `${file} missing from ${root.files.join(', ')}`)
  }
  for (const file of root.files) {
    t.false(/^(src|crates|__test__|examples|npm|target|node_modules)\/|\.node$/.test(file), `${file} should not be packed`)
  }

  // This platform's package, with the addon copied in.
  const platform = platformDirectory()
  const platformCopy = join(scratch, platform)
  mkdirSync(platformCopy)
  for (const file of ['package.json', 'README.md']) copyFileSync(join(PACKAGE_ROOT, 'npm', platform, file), join(platformCopy, file))
  copyFileSync(join(PACKAGE_ROOT, `named-shm.${platform}.node`), join(platformCopy, `named-shm.${platform}.node`))
  const addon = await pack(platformCopy, tarballs)
  t.deepEqual(addon.files.sort(), ['README.md', `named-shm.${platform}.node`, 'package.json'])

  const project = join(scratch, 'project')
  mkdirSync(project)
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }))
  await run(npm, ['install', '--offline', '--no-audit', '--no-fund', root.filename, addon.filename], {
    cwd: project,
    env: cleanEnv(),
    shell,
  })
  const installed = join(project, 'node_modules', 'named-shm')
  t.false(readdirSync(installed).some((file) => file.endsWith('.node')), 'the root package must not carry an addon')

  const name = uniqueName('packed')
  deleteAtEnd(t, name)
  const { stdout } = await run(process.execPath, ['-e', CONSUMER, name, platform], { cwd: project })
  const result = JSON.parse(stdout) as { main: string; addon: string; size: number; closed: boolean }
  t.is(result.main, join(installed, 'index.js'))
  t.is(result.addon, join(project, 'node_modules', `named-shm-${platform}`, `named-shm.${platform}.node`))
  t.is(result.size, 4096)
  t.true(result.closed)

  // The shipped typings compile for a TypeScript consumer.
  writeFileSync(join(project, 'consumer.ts'), TYPES)
  const tsc = join(PACKAGE_ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
  const typeRoots = join(PACKAGE_ROOT, 'node_modules', '@types')
  await t.notThrowsAsync(
    run(process.execPath, [tsc, '--noEmit', '--strict', '--module', 'node16', '--moduleResolution', 'node16', '--typeRoots', typeRoots, '--types', 'node', 'consumer.ts'], { cwd: project }),
  )

  // The cluster demo, as a consumer would copy it, runs against the installed package.
  copyFileSync(join(PACKAGE_ROOT, 'examples', 'cluster-demo.js'), join(project, 'cluster-demo.js'))
  const demo = await run(process.execPath, ['cluster-demo.js'], { cwd: project })
  t.regex(demo.stdout, /workers exited: 0, 0, 0/)
  t.regex(demo.stdout, /cleaned up: \/named-shm-demo-\d+ deleted/)
})
