'use strict'
// Runs in the sandboxed renderer: no native modules here, only what the main
// process sends over IPC.
const { contextBridge, ipcRenderer } = require('electron')

contextBridge.exposeInMainWorld('segment', {
  onText: (callback) => ipcRenderer.on('segment-text', (_event, text) => callback(text)),
})
