// Leaks: 100,000 open / attach / write / detach / close cycles in a
// child process (fixtures/leaks.mjs) leave its descriptors, mappings and RSS
// where they started.

import { join } from 'node:path'

import test from 'ava'

import { deleteAtEnd, jsonLines, runNode, uniqueName } from './helpers'

interface Usage {
  fds: number
  maps: number
  shmMaps: number
  reservedGiB: number
  rss: number
}

test('100,000 open/attach/write/detach/close cycles leave fds, mappings and RSS where they started', async (t) => {
  const name = uniqueName('leaks')
  deleteAtEnd(t, name)
  const child = await runNode(['--expose-gc', join(__dirname, 'fixtures', 'leaks.mjs'), name, '100000'])
  t.is(child.signal, null, child.stderr)
  t.is(child.code, 0, child.stderr)
  const [result] = jsonLines<{ cycles: number; ms: number; before: Usage; after: Usage; last: number; rssSeriesMiB: number[] }>(child.stdout)
  const growth = (result.after.rss - result.before.rss) / 2 ** 20
  t.log(
    `${result.cycles} cycles in ${result.ms} ms; fds ${result.before.fds} -> ${result.after.fds}, ` +
      `maps ${result.before.maps} -> ${result.after.maps} (segment ${result.before.shmMaps} -> ${result.after.shmMaps}, ` +
      `reserved ${result.before.reservedGiB} -> ${result.after.reservedGiB} GiB), RSS ${(result.before.rss / 2 ** 20).toFixed(1)} -> ` +
      `${(result.after.rss / 2 ** 20).toFixed(1)} MiB (every 10,000: ${result.rssSeriesMiB.join(' ')})`,
  )
  t.is(result.last, 99_999, 'every cycle wrote through its view')
  t.is(result.after.fds, result.before.fds)
  t.is(result.after.shmMaps, result.before.shmMaps)
  t.is(result.after.reservedGiB, result.before.reservedGiB, 'no WebAssembly memory outlives the collector')
  // V8's own heap pages (256 KiB mappings at scattered addresses) come and go
  // with the collector and with how much code the runtime has compiled, so the
  // process's total may drift by a few; a mapping leaked per cycle would add
  // 100,000. The segment's mappings and reserved address space above are exact.
  t.true(
    result.after.maps - result.before.maps <= 16,
    `the process's mappings grew from ${result.before.maps} to ${result.after.maps}`,
  )
  t.true(Math.abs(growth) <= 10, `RSS moved by ${growth.toFixed(1)} MiB`)
})
