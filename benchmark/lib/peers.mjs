// Other Node shared-memory packages measured side by side, installed on
// demand into a cache folder outside the repo (never a dependency of ours).

import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const CACHE = join(tmpdir(), 'named-shm-bench-peers')

/**
 * `shm-typed-array` (a node-gyp addon), built against this Node's headers in
 * /usr (node-gyp cannot download headers here). Smoke runs use it only if a
 * real run already installed it. Throws with the reason when unavailable.
 */
export function shmTypedArray({ install }) {
  const directory = join(CACHE, `node-${process.versions.modules}`)
  const entry = join(directory, 'node_modules', 'shm-typed-array')
  if (!existsSync(join(entry, 'build', 'Release', 'shm.node'))) {
    if (!install) throw new Error('not installed (smoke runs install nothing; npm run bench does)')
    mkdirSync(directory, { recursive: true })
    const env = { ...process.env }
    if (existsSync('/usr/include/node/node.h')) env.npm_config_nodedir = '/usr'
    try {
      execFileSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--prefix', directory, 'shm-typed-array'], {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
    } catch (error) {
      throw new Error(`npm install shm-typed-array failed: ${String(error.stderr ?? error).trim().split('\n').slice(-2).join(' / ')}`)
    }
  }
  return createRequire(join(directory, 'index.js'))('shm-typed-array')
}
