// How views live and die under this Node and every extra binary listed in
// NAMED_SHM_NODES (.ci/run fetches Node 22 and 24): SharedArrayBuffers where
// the runtime makes external ones, ArrayBuffers elsewhere. Each promise the
// never-crash rule makes about view lifetimes runs in a child process of
// each runtime: detach, views dropped without detach, process.exit() with
// views live, worker threads terminated with views live, and no full GC
// per attach of a large segment.

import { existsSync } from 'node:fs'
import { join } from 'node:path'

import test from 'ava'

import { PACKAGE_ROOT, runNode, scratch } from './helpers'

const extra = (process.env.NAMED_SHM_NODES ?? '').split(':').filter(Boolean)
const runtimes = [process.execPath, ...extra]
const fixture = join(PACKAGE_ROOT, '__test__', 'fixtures', 'view-lifetimes.js')

// These promises are about external views: the children make them even when
// the suite runs as Electron would (NAMED_SHM_FORCE_IN_HEAP=1, in-heap views,
// whose lifetimes in-heap.spec.ts proves).
const external = { NAMED_SHM_FORCE_IN_HEAP: '0' }

async function scenario(node: string, name: string, which: string): Promise<Record<string, any>[]> {
  const child = await runNode(['--expose-gc', fixture, which, name], { node, env: external })
  if (child.signal !== null || child.code !== 0) throw new Error(`${which}: ${child.signal ?? child.code}\n${child.stderr}`)
  return child.stdout.trim().split('\n').map((line) => JSON.parse(line))
}

/** The kind of view a Node version makes: external SharedArrayBuffers since 22.23 and 24.16. */
function expectedKind(version: string): string | undefined {
  const [major, minor] = version.slice(1).split('.').map(Number)
  if (major < 22) return 'ArrayBuffer'
  if ((major === 22 && minor >= 23) || (major === 24 && minor >= 16) || major >= 26) return 'SharedArrayBuffer'
  return undefined // 22.0-22.22, 23, 24.0-24.15, 25: either, as the runtime offers
}

for (const node of runtimes) {
  test(`detach: length 0 (ArrayBuffer) or zeros (SharedArrayBuffer), never the segment (${node})`, async (t) => {
    t.true(existsSync(node), `${node} does not exist`)
    const shm = scratch(t, 8192)
    const [detached, closed] = await scenario(node, shm.name, 'detach')
    t.log(detached)
    const kind = expectedKind(detached.node)
    if (kind !== undefined) t.is(detached.kind, kind)
    if (detached.kind === 'SharedArrayBuffer') {
      t.is(detached.lengthAfter, 8192)
      t.is(detached.wordsLengthAfter, 4)
      t.true(detached.zeros)
      t.true(closed.siblingZerosAfterClose)
      t.is(closed.siblingLengthAfterClose, 8192)
    } else {
      t.is(detached.kind, 'ArrayBuffer')
      t.is(detached.lengthAfter, 0)
      t.is(detached.wordsLengthAfter, 0)
      t.is(closed.siblingLengthAfterClose, 0)
    }
    t.is(detached.secondDetach, 'ERR_SHM_NOT_ATTACHED')
    t.deepEqual(detached.sibling, [42, 0, 43], 'the other view still sees the segment, not the write through the detached one')
    t.deepEqual(detached.read, [42, 0])
    t.deepEqual([...shm.read(0, 2)], [42, 0])
  })

  test(`views dropped without detach are unmapped by the garbage collector (${node})`, async (t) => {
    const shm = scratch(t, 1 << 20)
    const [result] = await scenario(node, shm.name, 'dropped')
    t.log(result)
    t.is(result.attached, result.before + 64)
    t.true(result.released, `${result.after} segment mappings left of ${result.before}`)
  })

  test(`detached views dropped give their address ranges back (${node})`, async (t) => {
    const shm = scratch(t, 16 << 20, { reserve: false })
    const [result] = await scenario(node, shm.name, 'detached-dropped')
    t.log(result)
    t.true(result.released, `${result.after} MiB of address space, ${result.before} MiB before`)
  })

  test(`process.exit() with views live, detached and in a worker exits cleanly (${node})`, async (t) => {
    const shm = scratch(t, 1 << 20)
    const [result] = await scenario(node, shm.name, 'exit')
    t.true(result.exiting)
  })

  test(`a worker terminated with views live leaves the buffer it posted readable (${node})`, async (t) => {
    const shm = scratch(t, 1 << 20)
    const [result] = await scenario(node, shm.name, 'worker')
    t.log(result)
    t.is(result.length, 1 << 20)
    t.is(result.first, 5)
    t.is(shm.read(0, 1)[0], 5)
  })

  test(`attach + detach of 256 MiB: no full GC where views are SharedArrayBuffers (${node})`, async (t) => {
    const shm = scratch(t, 256 << 20, { reserve: false })
    const [result] = await scenario(node, shm.name, 'gc-count')
    t.log(result)
    if (result.kind === 'SharedArrayBuffer') t.is(result.full, 0)
    else t.is(expectedKind(result.node) ?? 'ArrayBuffer', 'ArrayBuffer', 'only runtimes without external SharedArrayBuffers pay GCs')
  })
}
