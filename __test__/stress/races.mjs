// Races (stress): 8 processes × 2,000 rounds of open-or-create /
// attach / verify / detach / close on a few shared names while a ninth
// deletes them at random.
//
//   npm run test:stress          (node __test__/stress/races.mjs)
//   node races.mjs [workers] [rounds]
//
// Fails (exit 1, with every finding) when a process dies, an opener sees a
// segment smaller than its creator made it (or is refused with ERR_SHM_SIZE),
// a new segment is not zero-filled, or anything is left in /dev/shm.
//
// The check: every name has one fixed size, so any open must report exactly
// that size. The first process to attach a segment claims it by storing a
// ticket (from a shared counter) in its header; all writes to a segment are
// a pattern derived from its ticket, so every byte is 0 or pattern(ticket,
// position). A process that just created a segment read the counter before
// creating, so the ticket it finds must be 0 or newer: an older ticket would
// be data from a previous segment.

import { Children, gather, library, random, removeSegments, verdict } from './children.mjs'

const { SharedMemory } = library

const SIZES = [777, 3 * 4096 + 5, 65536 + 7, 1 << 20]
const HEADER = 16 // bytes: Int32 ticket, then padding
const TIME_LIMIT_MS = 5 * 60 * 1000

const namesOf = (prefix) => SIZES.map((_, i) => `${prefix}${i}`)
const clockOf = (prefix) => `${prefix}clock`
const pattern = (ticket, position) => ((ticket * 31 + position * 7) % 255) + 1

// ---- parent ---------------------------------------------------------------

async function main() {
  const workers = Number(process.argv[2] ?? 8)
  const rounds = Number(process.argv[3] ?? 2000)
  const prefix = `race-${process.pid}-`
  const started = Date.now()
  const clockShm = SharedMemory.open(clockOf(prefix), 4096, { create: true, exclusive: true })
  const clock = new Int32Array(clockShm.attach().buffer, 0, 2)
  const failures = []
  const children = new Children(import.meta.url)
  children.limit(TIME_LIMIT_MS, failures, `time limit of ${TIME_LIMIT_MS / 1000} s exceeded; killing the children`)

  const deleter = children.run('deleter', ['deleter', prefix])
  const results = await Promise.all(
    Array.from({ length: workers }, (_, id) => children.run(`worker ${id}`, ['worker', prefix, String(id), String(rounds)])),
  )
  Atomics.store(clock, 1, 1) // tell the deleter to stop
  results.push(await deleter)
  children.settled()
  const totals = gather(results, failures)

  // The workers leave their segments; remove them, then nothing may remain.
  clockShm.close()
  removeSegments([...namesOf(prefix), clockOf(prefix)], prefix, failures)

  const seconds = ((Date.now() - started) / 1000).toFixed(1)
  console.log(`races: ${workers} workers × ${rounds} rounds + 1 deleter in ${seconds} s`)
  verdict('races', totals, failures, 'no process died, every opener saw the full size, new segments were zero-filled, nothing left')
}

// ---- worker ---------------------------------------------------------------

function worker(prefix, id, rounds) {
  const names = namesOf(prefix)
  const clockShm = SharedMemory.open(clockOf(prefix), 0)
  const clock = new Int32Array(clockShm.attach().buffer, 0, 2)
  const failures = []
  const counts = { rounds: 0, created: 0, openedOrCreated: 0, opened: 0, vanished: 0, claimed: 0, bytesChecked: 0 }
  const fail = (message) => {
    if (failures.length < 20) failures.push(message)
  }

  for (let round = 0; round < rounds && failures.length < 20; round += 1) {
    counts.rounds += 1
    const which = random(names.length)
    const name = names[which]
    const size = SIZES[which]
    const kind = random(10)
    const before = Atomics.load(clock, 0)
    let shm
    let created = false
    try {
      if (kind < 4) {
        shm = SharedMemory.open(name, size, { create: true }) // the library's open-or-create
        counts.openedOrCreated += 1
      } else if (kind < 7) {
        try {
          shm = SharedMemory.open(name, size, { create: true, exclusive: true })
          created = true
          counts.created += 1
        } catch (error) {
          if (error.code !== 'EEXIST') throw error
          shm = SharedMemory.open(name, 0) // someone else's: its own size
          counts.opened += 1
        }
      } else {
        shm = SharedMemory.open(name, random(2) === 0 ? 0 : size)
        counts.opened += 1
      }
    } catch (error) {
      // Only a plain open may find the name gone (the deleter); open-or-create
      // never may, and ERR_SHM_SIZE would mean a half-made or short segment.
      if (error.code === 'ENOENT' && kind >= 4) counts.vanished += 1
      else fail(`round ${round}: open ${name} (kind ${kind}) threw ${error.code}: ${error.message}`)
      continue
    }
    try {
      if (shm.size !== size) fail(`round ${round}: ${name} opened with ${shm.size} bytes; its creator made ${size}`)
      const view = shm.attach()
      if (view.length !== size) fail(`round ${round}: ${name} attached ${view.length} bytes, not ${size}`)
      const header = new Int32Array(view.buffer, 0, HEADER / 4)
      const found = Atomics.load(header, 0)
      if (created && found !== 0 && found <= before) {
        fail(`round ${round}: new segment ${name} holds ticket ${found}, older than ${before}: not zero-filled`)
      }
      if (found === 0) {
        const ticket = Atomics.add(clock, 0, 1) + 1
        if (Atomics.compareExchange(header, 0, 0, ticket) === 0) counts.claimed += 1
      }
      const ticket = Atomics.load(header, 0)
      // Creators check every byte; others a sample and the last one.
      const check = (position) => {
        const value = view[position]
        if (value !== 0 && value !== pattern(ticket, position)) {
          fail(`round ${round}: ${name} byte ${position} is ${value}, neither 0 nor ${pattern(ticket, position)} (ticket ${ticket})`)
          return false
        }
        return true
      }
      if (created) {
        for (let position = HEADER; position < size && check(position); position += 1);
        counts.bytesChecked += size - HEADER
      } else {
        for (let k = 0; k < 16; k += 1) check(HEADER + random(size - HEADER))
        check(size - 1)
        counts.bytesChecked += 17
      }
      for (let k = 0; k < 4; k += 1) {
        const position = HEADER + random(size - HEADER)
        view[position] = pattern(ticket, position)
      }
      shm.detach(view)
      if (view.length !== 0) fail(`round ${round}: a detached view still has ${view.length} bytes`)
    } catch (error) {
      fail(`round ${round}: ${name} threw ${error.code}: ${error.message}`)
    } finally {
      shm.close()
    }
  }
  clockShm.close()
  console.log(JSON.stringify({ id, counts, failures }))
}

// ---- deleter --------------------------------------------------------------

async function deleter(prefix) {
  const names = namesOf(prefix)
  const clockShm = SharedMemory.open(clockOf(prefix), 0)
  const clock = new Int32Array(clockShm.attach().buffer, 0, 2)
  const counts = { deleted: 0, missing: 0 }
  const failures = []
  while (Atomics.load(clock, 1) === 0) {
    try {
      SharedMemory.delete(names[random(names.length)])
      counts.deleted += 1
    } catch (error) {
      if (error.code === 'ENOENT') counts.missing += 1
      else failures.push(`delete threw ${error.code}: ${error.message}`)
    }
    if (random(4) === 0) await new Promise((resolve) => setTimeout(resolve, random(3)))
  }
  clockShm.close()
  console.log(JSON.stringify({ counts, failures }))
}

const [role, prefix, ...rest] = process.argv.slice(2)
if (role === 'worker') worker(prefix, Number(rest[0]), Number(rest[1]))
else if (role === 'deleter') await deleter(prefix)
else await main()
