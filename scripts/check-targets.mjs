#!/usr/bin/env node
// `npm run check:targets`: every target the package ships (package.json's
// `napi.targets`) compiles here without a warning, in debug and release, and
// the release addon really links for the targets this machine can link
// (with zig, through cargo-zigbuild), so that a missing symbol or a wrong
// signature fails here rather than in a release job.
//
// - The Rust standard library of each target is installed on demand
//   (`rustup target add`).
// - cargo-zigbuild and zig come from PyPI at pinned versions, into a virtual
//   environment under target/ (kept between runs, like the build cache).
// - Every step shares the workspace's target/ directory; steps run one after
//   another (two in parallel only fight over the same CPUs).
//
// Targets whose addon cannot be linked here, and why, are in UNLINKABLE.

import { execFileSync, spawnSync } from 'node:child_process'
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync } from 'node:fs'
import { join, delimiter } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const targets = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).napi.targets

/** PyPI packages for linking, pinned: a new zig may change what links. */
const ZIG_TOOLS = ['cargo-zigbuild==0.24.1', 'ziglang==0.15.2']
const toolsDir = join(root, 'target', 'check-targets', 'zig-tools')

/**
 * Targets compiled but not linked here, with the reason (measured on Linux x64
 * with the tools above; CI links and tests each of them on its own system).
 */
const UNLINKABLE = {
  'x86_64-pc-windows-msvc':
    'the MSVC ABI needs link.exe-compatible import libraries and the MSVC C runtime (msvcrt.lib, ' +
    'vcruntime.lib, ucrt.lib); zig ships only MinGW ones, and cargo-xwin fetches them from ' +
    "Microsoft's servers, which this machine cannot reach",
  'aarch64-pc-windows-msvc': 'as x86_64-pc-windows-msvc',
}

/** Targets linked by another step of `.ci/run`, not again here. */
const LINKED_ELSEWHERE = {
  'x86_64-unknown-linux-gnu': 'the host: linked natively by `npm run build:release` (`.ci/run`)',
}

/** What each target's linked addon must be: file name and header. */
function expectedBinary(target) {
  const [arch] = target.split('-')
  if (target.includes('apple-darwin')) {
    return { file: 'libnamed_shm_node.dylib', format: 'Mach-O', arch }
  }
  if (target.includes('windows')) return { file: 'named_shm_node.dll', format: 'PE', arch }
  return { file: 'libnamed_shm_node.so', format: 'ELF', arch }
}

/** Format and CPU of a linked binary, read from its header. */
function binaryKind(path) {
  const header = Buffer.alloc(4096)
  const fd = openSync(path, 'r')
  try {
    readSync(fd, header, 0, header.length, 0)
  } finally {
    closeSync(fd)
  }
  if (header.readUInt32LE(0) === 0xfeedfacf) {
    const cpu = { 0x0100000c: 'aarch64', 0x01000007: 'x86_64' }[header.readUInt32LE(4)]
    return { format: 'Mach-O', arch: cpu ?? 'unknown' }
  }
  if (header.readUInt32BE(0) === 0x7f454c46) {
    const cpu = { 62: 'x86_64', 183: 'aarch64' }[header.readUInt16LE(18)]
    return { format: 'ELF', arch: cpu ?? 'unknown' }
  }
  if (header.toString('latin1', 0, 2) === 'MZ') {
    const pe = header.readUInt32LE(0x3c)
    const cpu = { 0x8664: 'x86_64', 0xaa64: 'aarch64' }[header.readUInt16LE(pe + 4)]
    return { format: 'PE', arch: cpu ?? 'unknown' }
  }
  return { format: 'unknown', arch: 'unknown' }
}

/**
 * Undefined symbols of a Mach-O binary that no library provides: napi-build
 * links macOS addons with `-undefined dynamic_lookup`, so a misspelt or
 * missing function links anyway and fails only when macOS loads the addon.
 * With napi's `dyn-symbols` even Node's own functions are looked up at run
 * time, so every import must come from a library (libSystem).
 */
function unboundMachOSymbols(path) {
  const file = readFileSync(path)
  const DYNAMIC_LOOKUP = 0xfe
  const LC_SYMTAB = 0x2
  let offset = 32
  let symtab
  for (let i = 0; i < file.readUInt32LE(16); i += 1) {
    if (file.readUInt32LE(offset) === LC_SYMTAB) {
      symtab = { symoff: file.readUInt32LE(offset + 8), nsyms: file.readUInt32LE(offset + 12), stroff: file.readUInt32LE(offset + 16) }
    }
    offset += file.readUInt32LE(offset + 4)
  }
  if (!symtab) return ['(no symbol table)']
  const unbound = []
  for (let i = 0; i < symtab.nsyms; i += 1) {
    const entry = symtab.symoff + 16 * i
    const type = file[entry + 4]
    const ordinal = file.readUInt16LE(entry + 6) >> 8
    const undefinedExternal = (type & 0x0e) === 0 && (type & 0x01) === 1
    if (undefinedExternal && (ordinal === 0 || ordinal === DYNAMIC_LOOKUP)) {
      const name = file.readUInt32LE(entry)
      unbound.push(file.toString('latin1', symtab.stroff + name, file.indexOf(0, symtab.stroff + name)))
    }
  }
  return unbound
}

/** Environment for building `target`. */
function targetEnv(target) {
  // musl's default of a static C runtime forbids a cdylib; napi builds turn it off too.
  if (target.includes('musl')) {
    const variable = `CARGO_TARGET_${target.toUpperCase().replaceAll('-', '_')}_RUSTFLAGS`
    return { [variable]: '-C target-feature=-crt-static' }
  }
  // rustc asks `xcrun` for the macOS SDK and warns when there is none; zig
  // links against its own copy of libSystem's stubs, and an SDKROOT that
  // exists (and is empty) says so to rustc without a warning.
  if (target.includes('apple-darwin') && process.platform !== 'darwin') {
    const sdk = join(root, 'target', 'check-targets', 'no-sdk')
    mkdirSync(sdk, { recursive: true })
    return { SDKROOT: sdk }
  }
  return {}
}

const timings = []

/** Runs a command, timing it; returns its stderr; exits on failure. */
function run(label, command, args, env = {}) {
  const start = process.hrtime.bigint()
  process.stdout.write(`\n== ${label}\n`)
  const result = spawnSync(command, args, {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'pipe'],
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  })
  process.stderr.write(result.stderr ?? '')
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  timings.push([label, seconds])
  if (result.error) throw result.error
  if (result.status !== 0) {
    console.error(`check:targets: ${label} failed (exit ${result.status})`)
    process.exit(1)
  }
  return result.stderr ?? ''
}

function installStandardLibraries() {
  const installed = execFileSync('rustup', ['target', 'list', '--installed'], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
  const missing = targets.filter((t) => !installed.includes(t))
  if (missing.length > 0) run(`rustup target add ${missing.join(' ')}`, 'rustup', ['target', 'add', ...missing])
}

function lint() {
  for (const target of targets) {
    for (const release of [false, true]) {
      const profile = release ? ['--release'] : []
      run(
        `clippy ${target}${release ? ' --release' : ''}`,
        'cargo',
        ['clippy', '--workspace', '--target', target, ...profile, '--', '-D', 'warnings'],
        targetEnv(target),
      )
    }
  }
}

/** The zig tools' bin directory, installed on first use. */
function zigTools() {
  const bin = join(toolsDir, process.platform === 'win32' ? 'Scripts' : 'bin')
  const stamp = join(toolsDir, ZIG_TOOLS.join(' '))
  if (!existsSync(stamp)) {
    run('python3 -m venv (zig tools)', 'python3', ['-m', 'venv', '--clear', toolsDir])
    run(`pip install ${ZIG_TOOLS.join(' ')}`, join(bin, 'pip'), [
      'install',
      '--quiet',
      '--disable-pip-version-check',
      ...ZIG_TOOLS,
    ])
    run('stamp', 'touch', [stamp])
  }
  return bin
}

function link() {
  const bin = zigTools()
  const path = `${bin}${delimiter}${process.env.PATH}`
  for (const target of targets.filter((t) => !(t in UNLINKABLE) && !(t in LINKED_ELSEWHERE))) {
    const stderr = run(
      `link ${target} (cargo zigbuild --release)`,
      'cargo',
      ['zigbuild', '--release', '-p', 'named-shm-node', '--target', target],
      { ...targetEnv(target), PATH: path },
    )
    const warnings = stderr.split('\n').filter((line) => /^warning\b/.test(line))
    if (warnings.length > 0) {
      console.error(`check:targets: linking ${target} warned:\n${warnings.join('\n')}`)
      process.exit(1)
    }
    const expected = expectedBinary(target)
    const file = join(root, 'target', target, 'release', expected.file)
    const kind = binaryKind(file)
    if (kind.format !== expected.format || kind.arch !== expected.arch) {
      console.error(`check:targets: ${file} is ${kind.format} ${kind.arch}, not ${expected.format} ${expected.arch}`)
      process.exit(1)
    }
    if (kind.format === 'Mach-O') {
      const unbound = unboundMachOSymbols(file)
      if (unbound.length > 0) {
        console.error(`check:targets: ${file} imports symbols no library provides: ${unbound.join(', ')}`)
        process.exit(1)
      }
    }
    console.log(`linked: ${file} (${kind.format} ${kind.arch})`)
  }
}

const start = process.hrtime.bigint()
installStandardLibraries()
lint()
link()
const total = Number(process.hrtime.bigint() - start) / 1e9
console.log('\ncheck:targets timings:')
for (const [label, seconds] of timings) console.log(`  ${seconds.toFixed(1).padStart(7)} s  ${label}`)
console.log(`  ${total.toFixed(1).padStart(7)} s  total`)
for (const [target, why] of Object.entries(LINKED_ELSEWHERE)) console.log(`not linked by this script: ${target}: ${why}`)
for (const [target, why] of Object.entries(UNLINKABLE)) console.log(`not linked here: ${target}: ${why}`)
