'use strict'
// Shared memory in an Electron app: the main process, a utility process and
// a renderer that loads the addon itself (no preload), each with its own view
// of one segment. See README.md for what is zero-copy where.
//
//   npx electron examples/electron/main.js   # a window shows what each side wrote
//   node examples/electron/main.js           # the same exchange, no window
//
// In Electron >= 21 (V8 memory cage) attach() gives an in-heap view on Linux
// and macOS: still zero-copy. Where SharedMemory.zeroCopy is 'copy' (Windows,
// or --jitless), attach() throws ERR_SHM_EXTERNAL_BUFFERS and this example
// falls back to read()/write(), which copy.

const { fork } = require('node:child_process')
const path = require('node:path')
const { SharedMemory } = require('named-shm') // this repository (package self-reference)

const SIZE = 4096
/** Where the utility process writes its message, and the renderer its own. */
const UTILITY_AT = 0
const RENDERER_AT = 1024

/**
 * A zero-copy view where the runtime gives one, else null: attach() throws
 * ERR_SHM_EXTERNAL_BUFFERS where SharedMemory.zeroCopy is 'copy'.
 */
function attachOrNull(shm) {
  try {
    return shm.attach()
  } catch (error) {
    if (error.code === 'ERR_SHM_EXTERNAL_BUFFERS') return null
    throw error
  }
}

/** Reads the NUL-terminated text at `offset`, through the view or by copying. */
function textAt(shm, view, offset) {
  const bytes = view ? view.subarray(offset, offset + 1024) : shm.read(offset, 1024)
  const end = bytes.indexOf(0)
  return bytes.toString('utf8', 0, end === -1 ? bytes.length : end)
}

/** Creates the segment, lets `start(name)` write into it, returns what it wrote. */
async function exchange(start) {
  const name = `named-shm-electron-${process.pid}`
  const shm = SharedMemory.open(name, SIZE, { create: true, exclusive: true })
  try {
    const view = attachOrNull(shm)
    console.log(
      view
        ? `main: attach() gave a zero-copy view (${SharedMemory.zeroCopy})`
        : 'main: external buffers are forbidden here (ERR_SHM_EXTERNAL_BUFFERS); using read()',
    )
    await start(name)
    return { name, osName: shm.osName, text: textAt(shm, view, UTILITY_AT), shm, view }
  } catch (error) {
    shm.close()
    SharedMemory.delete(name)
    throw error
  }
}

/** Electron: a utility process writes, then a renderer with the addon loaded reads and writes. */
async function runElectron() {
  const { app, BrowserWindow, ipcMain, utilityProcess } = require('electron')
  await app.whenReady()
  const run = await exchange(
    (name) =>
      new Promise((resolve, reject) => {
        const child = utilityProcess.fork(path.join(__dirname, 'utility.js'), [name])
        child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`utility process exited with ${code}`))))
      }),
  )
  console.log(`main read from the segment: ${run.text}`)
  // No preload: this renderer has Node integration and loads the addon
  // itself, so it gets a view of its own (zero-copy where zeroCopy is not
  // 'copy'). A sandboxed renderer cannot load native addons at all: it would
  // get the bytes over IPC, a copy.
  const window = new BrowserWindow({
    width: 560,
    height: 260,
    webPreferences: { nodeIntegration: true, contextIsolation: false, sandbox: false },
  })
  ipcMain.once('renderer-wrote', () => {
    console.log(`main read what the renderer wrote: ${textAt(run.shm, run.view, RENDERER_AT)}`)
  })
  await window.loadFile(path.join(__dirname, 'index.html'), { query: { name: run.name } })
  app.on('window-all-closed', () => {
    run.shm.close()
    SharedMemory.delete(run.name)
    app.quit()
  })
}

/** Plain Node: a forked child stands in for the utility process. */
async function runNode() {
  const run = await exchange(
    (name) =>
      new Promise((resolve, reject) => {
        const child = fork(path.join(__dirname, 'utility.js'), [name], { stdio: 'inherit' })
        child.once('error', reject)
        child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`producer exited with ${code}`))))
      }),
  )
  console.log(`main read from the segment: ${run.text}`)
  run.shm.close()
  SharedMemory.delete(run.name)
  console.log(`segment ${run.osName} deleted`)
}

// `process.type` is 'browser' in Electron's main process only.
const main = process.type === 'browser' ? runElectron : runNode
main().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
