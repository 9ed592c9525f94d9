// Other Node shared-memory packages measured side by side, installed on
// demand into a cache folder outside the repo (never a dependency of ours).

import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'

const CACHE = join(tmpdir(), 'named-shm-bench-peers')

/**
 * A folder holding this very Node's headers (`include/node`), for node-gyp's
 * `nodedir` (it cannot download headers here): the install prefix of the
 * running binary, the platform package that the `node` npm package installs
 * beside it, or /usr; undefined when none matches `process.version`.
 */
function nodeHeaders() {
  const prefix = dirname(dirname(process.execPath))
  const candidates = [prefix, join(prefix, 'node_modules', `node-${process.platform}-${process.arch}`), '/usr']
  const [major, minor, patch] = process.versions.node.split('.')
  const declares = (text, part, value) => new RegExp(`#define NODE_${part}_VERSION ${value}\\b`).test(text)
  return candidates.find((candidate) => {
    try {
      const text = readFileSync(join(candidate, 'include', 'node', 'node_version.h'), 'utf8')
      return declares(text, 'MAJOR', major) && declares(text, 'MINOR', minor) && declares(text, 'PATCH', patch)
    } catch {
      return false
    }
  })
}

/**
 * `shm-typed-array` (a node-gyp addon), built against the running Node's
 * headers (see nodeHeaders), one build per Node ABI. Smoke runs use it only if a
 * real run already installed it. Throws with the reason when unavailable.
 */
export function shmTypedArray({ install }) {
  const directory = join(CACHE, `node-${process.versions.modules}`)
  const entry = join(directory, 'node_modules', 'shm-typed-array')
  if (!existsSync(join(entry, 'build', 'Release', 'shm.node'))) {
    if (!install) throw new Error('not installed (smoke runs install nothing; npm run bench does)')
    mkdirSync(directory, { recursive: true })
    const env = { ...process.env }
    const headers = nodeHeaders()
    if (headers !== undefined) env.npm_config_nodedir = headers
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
