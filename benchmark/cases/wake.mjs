// Waking another process: the ping-pong of ../pingpong.mjs (named-shm
// wait/notify against a C futex, worker_threads Atomics.wait, a Unix socket
// and process.send), as a case of this suite. Round trip in µs; ratio = / C.

import { main } from '../pingpong.mjs'

export const title = 'Wake: ping-pong round trip between two processes'
export const unit = 'µs'
export const better = 'lower'

export async function run({ smoke }) {
  const rounds = smoke ? 200 : 20000
  const measured = await main(rounds)
  const rows = measured.map((row) => ({
    group: 'round trip',
    key: row.key,
    label: row.label,
    reference: row.key === 'c',
    ...(row.error ? { error: row.error } : { median: row.p50, p99: row.p99 }),
  }))
  const spin = rows.find((row) => row.key === 'spin' && !row.error)
  const goals = spin ? [{ what: 'named-shm wait/notify p50 µs', ratio: spin.median, goal: '<= 2', ok: spin.median <= 2 }] : []
  return { rows, goals }
}
