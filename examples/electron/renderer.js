'use strict'
// The renderer, without a preload: the window has Node integration, so it
// loads the addon and attaches the segment like any process (an in-heap view
// in Electron on Linux and macOS). Sandboxed renderers cannot do this; they
// get bytes from the main process over IPC instead, which copies.

const { ipcRenderer } = require('electron')
const { SharedMemory } = require('named-shm')

const name = new URLSearchParams(location.search).get('name')
const shm = SharedMemory.open(name, 0)
let view = null
try {
  view = shm.attach()
} catch (error) {
  if (error.code !== 'ERR_SHM_EXTERNAL_BUFFERS') throw error
}
const bytes = view ?? shm.read()
document.getElementById('mode').textContent = `zeroCopy: ${SharedMemory.zeroCopy}`
document.getElementById('text').textContent = bytes.toString('utf8', 0, bytes.indexOf(0))
const reply = `hello from renderer ${process.pid}\0`
if (view) view.write(reply, 1024)
else shm.write(reply, 1024)
ipcRenderer.send('renderer-wrote')
window.addEventListener('beforeunload', () => shm.close())
