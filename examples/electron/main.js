'use strict'
// Shared memory in an Electron app's main process, with a fallback for
// runtimes that forbid external buffers (Electron >= 21, see README.md).
//
//   npx electron examples/electron/main.js   # a window shows what the child wrote
//   node examples/electron/main.js           # the same without a window
//
// A child process writes a message into a named segment; the main process
// reads it and hands it to a sandboxed renderer over IPC, since sandboxed
// renderers cannot load native modules.

const { fork } = require('node:child_process')
const path = require('node:path')
const { SharedMemory } = require('named-shm') // this repository (package self-reference)

const SIZE = 4096

/**
 * A zero-copy view where the runtime allows one, else null: in Electron >= 21
 * attach() throws ERR_SHM_EXTERNAL_BUFFERS and read()/write() must be used.
 */
function attachOrNull(shm) {
  try {
    return shm.attach()
  } catch (error) {
    if (error.code === 'ERR_SHM_EXTERNAL_BUFFERS') return null
    throw error
  }
}

/** The child: writes one message into the segment named on its command line. */
function runProducer(name) {
  const shm = SharedMemory.open(name, 0)
  const message = `hello from child ${process.pid}`
  const view = attachOrNull(shm)
  if (view) view.write(message)
  else shm.write(message)
  shm.close()
}

/** Creates a segment, lets a child write into it, deletes it; returns what the child wrote. */
async function exchange() {
  const name = `named-shm-electron-${process.pid}`
  const shm = SharedMemory.open(name, SIZE, { create: true, exclusive: true })
  try {
    const view = attachOrNull(shm)
    console.log(view ? 'main: attach() gave a zero-copy view' : 'main: external buffers are forbidden here (ERR_SHM_EXTERNAL_BUFFERS); using read()')
    const child = fork(__filename, ['--producer', name], { stdio: 'inherit' })
    const code = await new Promise((resolve, reject) => {
      child.once('error', reject)
      child.once('exit', resolve)
    })
    if (code !== 0) throw new Error(`producer exited with ${code}`)
    const bytes = view ?? shm.read()
    return { osName: shm.osName, text: bytes.toString('utf8', 0, bytes.indexOf(0)) }
  } finally {
    shm.close()
    SharedMemory.delete(name)
  }
}

async function runElectron() {
  const { app, BrowserWindow } = require('electron')
  await app.whenReady()
  const { text } = await exchange()
  const window = new BrowserWindow({
    width: 480,
    height: 200,
    webPreferences: { preload: path.join(__dirname, 'preload.js'), sandbox: true, contextIsolation: true },
  })
  window.webContents.once('did-finish-load', () => window.webContents.send('segment-text', text))
  await window.loadFile(path.join(__dirname, 'index.html'))
  app.on('window-all-closed', () => app.quit())
}

async function runNode() {
  const { osName, text } = await exchange()
  console.log(`main read from the segment: ${text}`)
  console.log(`segment ${osName} deleted`)
}

const producer = process.argv.indexOf('--producer')
if (producer !== -1) {
  runProducer(process.argv[producer + 1])
} else {
  // `process.type` is 'browser' in Electron's main process only.
  const run = process.type === 'browser' ? runElectron : runNode
  run().catch((error) => {
    console.error(error)
    process.exitCode = 1
  })
}
