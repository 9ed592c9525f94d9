// The ESM entry. It re-exports the CommonJS module rather than loading a
// second copy, so `import` and `require` share one instance of the library and
// of its native state. `createRequire` rather than `import './index.js'`:
// Deno treats a .js file outside node_modules as ESM. __test__/package.spec.ts
// checks that every export of index.js is named here.
import { createRequire } from 'node:module'

const library = createRequire(import.meta.url)('./index.js')

export const {
  SharedMemory,
  MAX_SIZE,
  SHM_CREATE,
  SHM_EXCL,
  SHM_READONLY,
  openSharedMemory,
  attachSharedMemory,
  detachSharedMemory,
  closeSharedMemory,
  deleteSharedMemory,
  wait,
  waitAsync,
  notify,
  SharedMutex,
  Channel,
} = library
