// Round trips to a peer process through a Unix socket or process.send, set up
// and timed the same way by every case that measures against them.

import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const now = process.hrtime.bigint

/** Times `count` calls of `trip(i)` after `warmup` untimed ones: nanoseconds each (numbers). */
export async function timeTrips(count, warmup, trip) {
  const times = []
  for (let i = 0; i < count + warmup; i += 1) {
    const start = now()
    await trip(i)
    if (i >= warmup) times.push(Number(now() - start))
  }
  return times
}

/** The next `event` of `emitter`: listened for before the send that causes it. */
export function next(emitter, event) {
  return new Promise((resolve) => emitter.once(event, resolve))
}

/**
 * Listens on a Unix socket in a fresh temporary directory, starts the peer
 * that connects to it (`spawnPeer(path)` returns its ChildProcess), and
 * resolves with what `use(socket)` resolves with, on the accepted connection.
 * Then ends the connection, waits for the peer to exit and removes it all.
 */
export async function withSocketPeer(spawnPeer, use) {
  const dir = mkdtempSync(join(tmpdir(), 'named-shm-bench-'))
  const path = join(dir, 'socket')
  try {
    const server = net.createServer()
    await new Promise((resolve) => server.listen(path, resolve))
    const accepted = next(server, 'connection')
    const peer = spawnPeer(path)
    const exited = once(peer, 'exit')
    const socket = await accepted
    const result = await use(socket)
    socket.end()
    await exited
    server.close()
    return result
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Tells a forked peer that answers `process.send` it is done, and waits for it to exit. */
export async function endForkedPeer(peer) {
  const exited = once(peer, 'exit')
  peer.send('done')
  await exited
}
