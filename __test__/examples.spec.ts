// Every example runs to exit code 0, says what it promises, and leaves no segment.
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'

import test from 'ava'

import { SharedMemory } from '../index'
import { IN_HEAP, PACKAGE_ROOT, runNode } from './helpers'

const example = (file: string) => join(PACKAGE_ROOT, 'examples', file)

/** The segment an example announced in `pattern` no longer exists. */
function assertDeleted(t: import('ava').ExecutionContext, stdout: string, pattern: RegExp): void {
  const match = pattern.exec(stdout)
  if (!match) {
    t.fail(`no segment name in:\n${stdout}`)
    return
  }
  t.throws(() => SharedMemory.open(match[1], 0), { code: 'ENOENT' })
}

test('cluster demo: 3 workers see each other\'s slices through one segment', async (t) => {
  const run = await runNode([example('cluster-demo.js')])
  t.is(run.code, 0, run.stderr)
  t.is(run.signal, null)
  t.true(run.stdout.includes('primary created it and wrote its header in init'), run.stdout)
  for (let worker = 1; worker <= 3; worker += 1) {
    const pattern = `a${worker}000000 a${worker}000001 a${worker}000002`
    t.regex(run.stdout, new RegExp(`worker ${worker} \\(pid \\d+\\) filled slice ${worker}: ${pattern} …`))
    t.true(run.stdout.includes(`primary saw slice ${worker}: ${pattern} … 262144/262144 words all as expected`))
    for (let other = 1; other <= 3; other += 1) {
      if (other === worker) continue
      const seen = `a${other}000000 a${other}000001 a${other}000002 … 262144/262144 words all as expected`
      t.true(run.stdout.includes(`worker ${worker} saw slice ${other}: ${seen}`), run.stdout)
    }
  }
  t.regex(run.stdout, /through shared memory: 3\.0 MiB written, 6\.0 MiB read by other workers \(9437184 bytes\), none copied/)
  t.regex(run.stdout, /through IPC: nothing; phases were signalled with wait\/notify on words of the segment \(3 starts, 6 done reports\)/)
  t.regex(run.stdout, /workers exited: 0, 0, 0/)
  assertDeleted(t, run.stdout, /cleaned up: \/(named-shm-demo-\d+) deleted/)
})

test('worker_threads example: 4 threads count exactly through their own mappings', async (t) => {
  const run = await runNode([example('worker-threads.js')])
  t.is(run.code, 0, run.stderr)
  t.regex(run.stdout, /counter: 400000 \(expected 400000\)/)
  for (let thread = 1; thread <= 4; thread += 1) {
    t.true(run.stdout.includes(`record ${thread}: thread ${thread} added 100000`), run.stdout)
  }
  t.regex(run.stdout, /threads exited: 0, 0, 0, 0/)
  assertDeleted(t, run.stdout, /cleaned up: \/(named-shm-threads-\d+) deleted/)
})

test('Electron example under plain Node: attach() is zero-copy', async (t) => {
  const run = await runNode([example('electron/main.js')])
  t.is(run.code, 0, run.stderr)
  t.regex(run.stdout, new RegExp(`^main: attach\\(\\) gave a zero-copy view \\(${IN_HEAP ? 'in-heap' : 'external'}\\)$`, 'm'))
  t.regex(run.stdout, /^main read from the segment: hello from child \d+$/m)
  assertDeleted(t, run.stdout, /^segment \/(named-shm-electron-\d+) deleted$/m)
})

test('Electron example falls back to read()/write() where no view is possible (zeroCopy: copy)', async (t) => {
  const preload = join(__dirname, 'fixtures', 'no-external-buffers.js')
  const run = await runNode(['-r', preload, example('electron/main.js')])
  t.is(run.code, 0, run.stderr)
  t.regex(run.stdout, /^main: external buffers are forbidden here \(ERR_SHM_EXTERNAL_BUFFERS\); using read\(\)$/m)
  t.regex(run.stdout, /^main read from the segment: hello from child \d+$/m)
  // The parent and the forked child both took the fallback.
  t.is(run.stderr.match(/attach refused \(simulated\)/g)?.length, 2, run.stderr)
})

test('Python peer: Node and Python each read what the other wrote into one segment', async (t) => {
  const probe = spawnSync('python3', ['-c', 'import multiprocessing.shared_memory'])
  if ((probe.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
    t.log('skipped: python3 is not installed')
    t.pass()
    return
  }
  const run = await runNode([example('python-peer/peer.js')])
  t.is(run.code, 0, run.stderr)
  t.is(run.stderr, '', 'no resource_tracker warnings')
  const wrote = /^node wrote into \/named-shm-python-\d+: (hello from node \d+)$/m.exec(run.stdout)
  t.truthy(wrote, run.stdout)
  t.true(run.stdout.includes(`python read what node wrote: ${wrote![1]}\n`), run.stdout)
  t.regex(run.stdout, new RegExp(`^node read what python wrote: hello from python \\d+, who read '${wrote![1]}'$`, 'm'))
  assertDeleted(t, run.stdout, /^cleaned up: \/(named-shm-python-\d+) deleted$/m)
})
