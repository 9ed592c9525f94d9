// Behaviour that differs between Node versions, run under this Node and under
// every extra binary listed in NAMED_SHM_NODES (colon-separated paths; .ci/run
// fetches Node 22 and 24 for it).

import { existsSync } from 'node:fs'

import test from 'ava'

import { runNode, scratch, PACKAGE_ROOT } from './helpers'
import { join } from 'node:path'

const extra = (process.env.NAMED_SHM_NODES ?? '').split(':').filter(Boolean)
const runtimes = [process.execPath, ...extra]

for (const node of runtimes) {
  test(`memory moved out of an attached buffer stays readable after close (${node})`, async (t) => {
    t.true(existsSync(node), `${node} does not exist`)
    const shm = scratch(t, 4096)
    // About external views: made even when the suite runs in-heap (NAMED_SHM_FORCE_IN_HEAP=1).
    const child = await runNode([join(PACKAGE_ROOT, '__test__', 'fixtures', 'transfer-then-close.js'), shm.name], {
      node,
      env: { NAMED_SHM_FORCE_IN_HEAP: '0' },
    })
    t.is(child.signal, null, child.stderr)
    t.is(child.code, 0, child.stderr)
    const report = JSON.parse(child.stdout)
    t.log(report)
    if (report.how === 'transfer') {
      // The library's buffer was detached by the move; the new one keeps the
      // mapping alive past close() and still reads the segment's byte.
      t.is(report.originalLengthAfterMove, 0)
      t.is(report.firstByte, 7)
    } else if (report.how === 'shared') {
      // A SharedArrayBuffer is not moved but shared: close() turned the
      // memory of both into zero pages, and the view keeps its length.
      t.is(report.originalLengthAfterMove, 4096)
      t.is(report.firstByte, 0)
    } else if (report.how === 'structuredClone') {
      // Node 20 copies an untransferable buffer instead of moving it.
      t.is(report.originalLengthAfterMove, 4096)
      t.is(report.firstByte, 7)
    } else {
      t.regex(report.how, /^refused: DataCloneError$/)
    }
    t.is(shm.read(0, 1)[0], 7)
  })
}
