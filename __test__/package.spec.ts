// The package as a consumer gets it: `npm pack` the root and every npm/
// package (this platform's with the built addon in it, as CI's publish job
// does), install the root and this platform's tarballs offline into a fresh
// project with no cargo or rustc on PATH, and use it from there: require,
// import, strict TypeScript, the CLI, the examples, and the same under every
// runtime the README's runtime table lists.
import { execFile, spawnSync } from 'node:child_process'
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { promisify } from 'node:util'

import test from 'ava'

import { SharedMemory } from '../index'
import { deleteAtEnd, PACKAGE_ROOT, uniqueName } from './helpers'
import { measureRuntime, RUNTIME_CHECKS, readmeRuntimeTable, runtimesUnderTest } from './runtime-matrix'

const run = promisify(execFile)
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
// Windows runs npm.cmd only through a shell.
const shell = process.platform === 'win32'
const packageJson = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as {
  name: string
  version: string
  napi: { targets: string[] }
}

/** PATH without any directory that holds cargo or rustc: what a user without Rust has. */
function pathWithoutRust(): string {
  const tools = process.platform === 'win32' ? ['cargo.exe', 'rustc.exe'] : ['cargo', 'rustc']
  return (process.env.PATH ?? '')
    .split(delimiter)
    .filter((dir) => dir !== '' && !tools.some((tool) => existsSync(join(dir, tool))))
    .join(delimiter)
}

/** The environment of a user without Rust, without the `npm_*` settings of the `npm test` around us. */
function consumerEnv(): NodeJS.ProcessEnv {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !key.toLowerCase().startsWith('npm_') && key !== 'NAMED_SHM_ROOT'),
  )
  return { ...env, PATH: pathWithoutRust() }
}

async function pack(directory: string, destination: string, dryRun = false): Promise<{ filename: string; files: string[] }> {
  const args = ['pack', '--json', ...(dryRun ? ['--dry-run'] : ['--pack-destination', destination])]
  const { stdout } = await run(npm, args, { cwd: directory, env: consumerEnv(), shell })
  const [result] = JSON.parse(stdout) as [{ filename: string; files: { path: string }[] }]
  return { filename: join(destination, result.filename), files: result.files.map((file) => file.path).sort() }
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

interface Installed {
  scratch: string
  project: string
  platform: string
  rootFiles: string[]
  addonFiles: string[]
}

// Packs and installs once; every test below uses the same fresh project.
let installing: Promise<Installed> | undefined
function installed(): Promise<Installed> {
  installing ??= install()
  return installing
}

async function install(): Promise<Installed> {
  const scratch = mkdtempSync(join(tmpdir(), 'named-shm-pack-'))
  const tarballs = join(scratch, 'tarballs')
  mkdirSync(tarballs)
  const root = await pack(PACKAGE_ROOT, tarballs)

  // This platform's package, with the addon copied in (what `napi artifacts` does in CI).
  const platform = platformDirectory()
  const platformCopy = join(scratch, platform)
  cpSync(join(PACKAGE_ROOT, 'npm', platform), platformCopy, { recursive: true })
  copyFileSync(join(PACKAGE_ROOT, `named-shm.${platform}.node`), join(platformCopy, `named-shm.${platform}.node`))
  const addon = await pack(platformCopy, tarballs)

  const project = join(scratch, 'project')
  mkdirSync(project)
  // "type": "commonjs" is Node's default, spelled out: Deno takes a .js file
  // (the CommonJS examples) for ESM without it.
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'commonjs' }))
  await run(npm, ['install', '--offline', '--no-audit', '--no-fund', root.filename, addon.filename], {
    cwd: project,
    env: consumerEnv(),
    shell,
  })
  for (const example of ['cluster-demo.js', 'worker-threads.js']) {
    copyFileSync(join(PACKAGE_ROOT, 'examples', example), join(project, example))
  }
  await compileConsumer(project)
  return { scratch, project, platform, rootFiles: root.files, addonFiles: addon.files }
}

const tsc = join(PACKAGE_ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
const typeRoots = join(PACKAGE_ROOT, 'node_modules', '@types')

/** Strict tsc over the whole-API consumer, as CommonJS (.cts) and as ESM (.mts), emitting .cjs and .mjs. */
async function compileConsumer(project: string): Promise<void> {
  const source = readFileSync(join(__dirname, 'fixtures', 'consumer', 'api.ts'), 'utf8')
  writeFileSync(join(project, 'consumer.cts'), source)
  writeFileSync(join(project, 'consumer.mts'), source)
  const flags = ['--strict', '--module', 'node16', '--moduleResolution', 'node16', '--target', 'es2022', '--lib', 'es2022,esnext.disposable']
  await run(process.execPath, [tsc, ...flags, '--typeRoots', typeRoots, '--types', 'node', 'consumer.cts', 'consumer.mts'], { cwd: project })
}

test.after.always(async () => {
  if (installing === undefined) return
  try {
    rmSync((await installing).scratch, { recursive: true, force: true })
  } catch {
    // The install itself failed; its test reports why.
  }
})

test('npm pack ships exactly what a consumer needs, in every package', async (t) => {
  const { rootFiles, addonFiles, platform } = await installed()
  const allowed = /^(package\.json|README\.md|LICENSE|index\.(js|d\.ts|mjs|d\.mts)|binding\.(js|d\.ts)|bin\/named-shm\.js|lib\/.+\.(js|d\.ts))$/
  for (const file of rootFiles) t.regex(file, allowed, `${file} should not be packed`)
  t.false(rootFiles.some((file) => /^lib\/cli\/.*\.d\.ts$/.test(file)), 'the CLI is no API: no typings')
  for (const file of ['LICENSE', 'README.md', 'index.js', 'index.d.ts', 'index.mjs', 'index.d.mts', 'binding.js', 'binding.d.ts', 'bin/named-shm.js', 'lib/index.js', 'lib/index.d.ts', 'lib/cli/main.js']) {
    t.true(rootFiles.includes(file), `${file} missing from ${rootFiles.join(', ')}`)
  }
  t.deepEqual(addonFiles, ['LICENSE', 'README.md', `named-shm.${platform}.node`, 'package.json'])

  // The other platforms' packages, as committed (their addon comes at release).
  const directories = readdirSync(join(PACKAGE_ROOT, 'npm'))
  const packed = await Promise.all(directories.map((directory) => pack(join(PACKAGE_ROOT, 'npm', directory), '', true)))
  for (const [index, directory] of directories.entries()) {
    const { files } = packed[index]
    const expected = ['LICENSE', 'README.md', 'package.json']
    t.deepEqual(files.filter((file) => file !== `named-shm.${directory}.node`), expected, directory)
    const manifest = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'npm', directory, 'package.json'), 'utf8'))
    t.deepEqual(manifest.files, [`named-shm.${directory}.node`], directory)
    t.is(manifest.version, packageJson.version, directory)
    t.is(manifest.license, 'MIT', directory)
    t.is(manifest.repository.directory, `npm/${directory}`)
    t.is(readFileSync(join(PACKAGE_ROOT, 'npm', directory, 'LICENSE'), 'utf8'), readFileSync(join(PACKAGE_ROOT, 'LICENSE'), 'utf8'))
  }
})

test('the root package.json has what npm publish --provenance needs, and npm publish --dry-run corrects nothing', async (t) => {
  const manifest = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8'))
  t.regex(manifest.repository.url, /^git\+https:\/\/github\.com\/[^/]+\/[^/]+\.git$/)
  for (const field of ['homepage', 'author', 'license', 'description']) t.is(typeof manifest[field], 'string', field)
  t.is(typeof manifest.bugs.url, 'string')
  t.is(manifest.bin['named-shm'], 'bin/named-shm.js')
  t.true(existsSync(join(PACKAGE_ROOT, 'LICENSE')) && existsSync(join(PACKAGE_ROOT, 'CHANGELOG.md')))
  t.regex(readFileSync(join(PACKAGE_ROOT, 'CHANGELOG.md'), 'utf8'), new RegExp(`^## \\[(Unreleased|${packageJson.version.replace(/\./g, '\\.')})\\]`, 'm'))
  // npm rewrites (and warns about) fields it finds malformed; there must be none.
  const { stdout, stderr } = await run(npm, ['publish', '--dry-run'], { cwd: PACKAGE_ROOT, env: consumerEnv(), shell })
  t.regex(stdout, new RegExp(`^\\+ ${packageJson.name}@${packageJson.version.replace(/\./g, '\\.')}$`, 'm'))
  t.notRegex(stderr, /auto-corrected|invalid|errors? in your package\.json/i, stderr)
})

test('napi pre-publish fills optionalDependencies with every platform package at this version', async (t) => {
  // On a copy: package.json and npm/ with an addon in every platform package
  // (this platform's real one, stand-ins for the others, as `napi artifacts` leaves them).
  const scratch = mkdtempSync(join(tmpdir(), 'named-shm-prepublish-'))
  t.teardown(() => rmSync(scratch, { recursive: true, force: true }))
  copyFileSync(join(PACKAGE_ROOT, 'package.json'), join(scratch, 'package.json'))
  cpSync(join(PACKAGE_ROOT, 'npm'), join(scratch, 'npm'), { recursive: true })
  const napi = join(PACKAGE_ROOT, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js')
  // Asynchronously: a blocked event loop would hold up this file's other tests.
  const prepublish = async (extra: string[]): Promise<{ status: number; stdout: string; stderr: string }> => {
    try {
      const { stdout, stderr } = await run(process.execPath, [napi, 'pre-publish', '-t', 'npm', '--no-gh-release', ...extra], { cwd: scratch, env: consumerEnv() })
      return { status: 0, stdout, stderr }
    } catch (error) {
      const failed = error as { code?: number; stdout?: string; stderr?: string }
      return { status: typeof failed.code === 'number' ? failed.code : -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' }
    }
  }

  const incomplete = await prepublish(['--dry-run'])
  t.not(incomplete.status, 0, 'a dry run refuses packages without their addon')
  t.regex(incomplete.stdout + incomplete.stderr, /incomplete: missing named-shm\.[a-z0-9-]+\.node/)

  const platform = platformDirectory()
  for (const directory of readdirSync(join(scratch, 'npm'))) {
    const addon = join(scratch, 'npm', directory, `named-shm.${directory}.node`)
    if (directory === platform) copyFileSync(join(PACKAGE_ROOT, `named-shm.${platform}.node`), addon)
    else writeFileSync(addon, 'stand-in')
  }
  const dryRun = await prepublish(['--dry-run'])
  t.is(dryRun.status, 0, dryRun.stdout + dryRun.stderr)
  t.is(JSON.parse(readFileSync(join(scratch, 'package.json'), 'utf8')).optionalDependencies, undefined, 'a dry run writes nothing')

  // The release step itself, minus the `npm publish` of each package.
  const release = await prepublish(['--skip-optional-publish'])
  t.is(release.status, 0, release.stdout + release.stderr)
  const expected = Object.fromEntries(
    readdirSync(join(PACKAGE_ROOT, 'npm')).map((directory) => [`${packageJson.name}-${directory}`, packageJson.version]),
  )
  t.is(Object.keys(expected).length, packageJson.napi.targets.length)
  t.deepEqual(JSON.parse(readFileSync(join(scratch, 'package.json'), 'utf8')).optionalDependencies, expected)
})

test('installed without Rust: require() loads the addon from the platform package', async (t) => {
  const { project, platform } = await installed()
  const env = consumerEnv()
  for (const tool of ['cargo', 'rustc']) t.is(spawnSync(tool, ['--version'], { env }).error?.message.includes('ENOENT'), true, `${tool} is not on PATH`)
  const installedRoot = join(project, 'node_modules', 'named-shm')
  t.false(readdirSync(installedRoot).some((file) => file.endsWith('.node')), 'the root package must not carry an addon')

  const script = `
    const named = require('named-shm')
    console.log(JSON.stringify({
      main: require.resolve('named-shm'),
      addon: require.resolve('named-shm-${platform}'),
      exports: Object.keys(named).sort(),
    }))`
  const { stdout } = await run(process.execPath, ['-e', script], { cwd: project, env })
  const result = JSON.parse(stdout) as { main: string; addon: string; exports: string[] }
  t.is(result.main, join(installedRoot, 'index.js'))
  t.is(result.addon, join(project, 'node_modules', `named-shm-${platform}`, `named-shm.${platform}.node`))
  t.deepEqual(result.exports, Object.keys(require('../index')).sort())
})

test('import gives the same exports and the same instance as require (no dual-package hazard)', async (t) => {
  const { project } = await installed()
  const script = `
    import * as esm from 'named-shm'
    import { SharedMemory, wait } from 'named-shm'
    import { createRequire } from 'node:module'
    const cjs = createRequire(import.meta.url)('named-shm')
    const names = Object.keys(esm).sort()
    console.log(JSON.stringify({
      esm: names,
      cjs: Object.keys(cjs).sort(),
      same: names.filter((name) => esm[name] === cjs[name]),
      named: SharedMemory === cjs.SharedMemory && wait === cjs.wait,
      resolved: import.meta.resolve('named-shm'),
    }))`
  writeFileSync(join(project, 'esm-check.mjs'), script)
  const { stdout } = await run(process.execPath, ['esm-check.mjs'], { cwd: project, env: consumerEnv() })
  const result = JSON.parse(stdout) as { esm: string[]; cjs: string[]; same: string[]; named: boolean; resolved: string }
  t.deepEqual(result.esm, result.cjs, 'index.mjs names every export of index.js')
  t.deepEqual(result.same, result.cjs, 'each ESM export is the very CommonJS object')
  t.true(result.named)
  t.true(result.resolved.endsWith('/node_modules/named-shm/index.mjs'))
})

test('strict tsc over a consumer of the whole API with `using` (require and import), which then runs', async (t) => {
  const { project } = await installed()
  const source = readFileSync(join(__dirname, 'fixtures', 'consumer', 'api.ts'), 'utf8')
  const imported = /import \{([^}]+)\} from 'named-shm'/.exec(source)![1]
  for (const name of Object.keys(require('../index'))) {
    t.regex(imported, new RegExp(`\\b${name}\\b`), `the consumer fixture does not use the export ${name}`)
  }
  for (const file of ['consumer.cjs', 'consumer.mjs']) {
    t.true(statSync(join(project, file)).size > 0)
    const name = uniqueName('consumer')
    deleteAtEnd(t, name)
    const { stdout } = await run(process.execPath, [file, name], { cwd: project, env: consumerEnv() })
    t.deepEqual(JSON.parse(stdout), {
      osName: SharedMemory.osNameOf(name),
      size: 4096,
      closedInside: false,
      exclusiveWithoutCreate: 'ERR_INVALID_ARG_VALUE',
      afterDelete: 'ENOENT',
    }, file)
  }
})

test('every CLI command of the installed package, through npx and node_modules/.bin', async (t) => {
  const { project } = await installed()
  const env = consumerEnv()
  const bin = join(project, 'node_modules', '.bin', process.platform === 'win32' ? 'named-shm.cmd' : 'named-shm')
  const cli = async (args: string[], input?: string) => {
    const child = execFile(bin, args, { cwd: project, env, shell, encoding: 'utf8' })
    if (input !== undefined) child.stdin!.end(input)
    else child.stdin!.end()
    return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      let stdout = ''
      let stderr = ''
      child.stdout!.on('data', (chunk) => (stdout += chunk))
      child.stderr!.on('data', (chunk) => (stderr += chunk))
      child.on('close', (code) => resolve({ code, stdout, stderr }))
    })
  }
  const help = await run(npm, ['exec', '--offline', '--', 'named-shm', '--help'], { cwd: project, env, shell })
  t.regex(help.stdout, /^Usage: named-shm COMMAND/)

  const name = uniqueName('packed-cli')
  deleteAtEnd(t, name)
  t.like(JSON.parse((await cli(['create', name, '1K', '--json'])).stdout), { name, size: 1024 })
  t.is((await cli(['write', name, '--offset', '4'], 'packed')).code, 0)
  t.is((await cli(['cat', name, '--offset', '4', '--length', '6'])).stdout, 'packed')
  t.like(JSON.parse((await cli(['stat', name, '--json'])).stdout), { name, size: 1024 })
  const listing = JSON.parse((await cli(['ls', '--json'])).stdout) as { segments: { name: string }[] }
  t.true(listing.segments.some((segment) => segment.name === name))
  const watched = await cli(['watch', name, '4', '--timeout', '10', '--json'])
  t.like(JSON.parse(watched.stdout), { event: 'initial', value: Buffer.from('pack').readInt32LE(0), offset: 4 })
  t.deepEqual(JSON.parse((await cli(['rm', name, '--json'])).stdout), { removed: [`/${name}`] })
  const gone = await cli(['stat', name])
  t.is(gone.code, 1)
  t.regex(gone.stderr, /\[ENOENT\]\n$/)
})

// One test per runtime: the README's runtime table says what passes where,
// and must say what was measured here.
for (const runtime of runtimesUnderTest()) {
  test(`runtime ${runtime.label}: ${RUNTIME_CHECKS.map((check) => check.column).join(', ')} as the README says`, async (t) => {
    const { project } = await installed()
    // In the in-heap pass Node and Deno run every check with in-heap views
    // (the Electron emulation). Bun runs as users run it: JavaScriptCore's
    // WebAssembly memories cannot carry a segment, so under the emulation its
    // zeroCopy is 'copy' and the consumers and examples, which attach(), stop.
    const { NAMED_SHM_FORCE_IN_HEAP: emulation, ...plain } = consumerEnv()
    const env = runtime.kind === 'bun' || emulation === undefined ? plain : { ...plain, NAMED_SHM_FORCE_IN_HEAP: emulation }
    const results = await measureRuntime(runtime, project, env)
    t.log(`${runtime.label} (${runtime.version}):`, results.map((result) => `${result.check}: ${result.passed ? 'yes' : `no (${result.detail})`}`).join('; '))
    const table = readmeRuntimeTable(readFileSync(join(PACKAGE_ROOT, 'README.md'), 'utf8'))
    const row = table.get(runtime.row)
    t.truthy(row, `README runtime table has no row '${runtime.row}'`)
    t.deepEqual(
      Object.fromEntries(results.map((result) => [result.check, result.passed])),
      row,
      `README row '${runtime.row}' must match what ${runtime.version} does`,
    )
    if (runtime.kind === 'node') t.true(results.every((result) => result.passed), 'Node passes everything')
  })
}
