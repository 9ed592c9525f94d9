// What the OS says about segments, read where Linux shows it: the files in
// /dev/shm, and /proc/<pid>/maps for the processes that map each one. macOS
// and Windows have no such directory: their names cannot be listed.

import { lstatSync, readdirSync, readFileSync, type Stats } from 'node:fs'
import { join } from 'node:path'

import { SharedMemory } from '../index'
import { CliError, UNSUPPORTED } from './command'
import { octalMode } from './numbers'

/** Where Linux keeps POSIX shared memory (shm_overview(7)). */
export const SHM_DIRECTORY = '/dev/shm'

export interface MappingProcess {
  pid: number
  /** The process's command name (`/proc/<pid>/comm`). */
  command: string
}

export interface SegmentEntry {
  /** The name to give `SharedMemory.open` and the other commands. */
  name: string
  osName: string
  /** The file behind it (Linux). */
  path: string
  size: number
  /** Permission bits, octal (`0600`). */
  mode: string
  uid: number
  /** The owner's user name, or the uid when it has none. */
  owner: string
  /** When it was created (birth time where the filesystem keeps it, else last change). */
  created: string
  ageSeconds: number
  /** Processes whose maps show the segment (among those this user may read). */
  processes: MappingProcess[]
}

/** Segments and the processes mapping them, with how many processes could not be looked into. */
export interface Listing {
  segments: SegmentEntry[]
  /** Processes whose `/proc/<pid>/maps` this user may not read (run as root to see them). */
  unreadableProcesses: number
}

/** Why this platform cannot list, or null on Linux. */
export function listingUnsupported(): string | null {
  if (process.platform === 'linux') return null
  if (process.platform === 'darwin') return 'macOS cannot list shared memory: shm_open names are not visible in any directory'
  if (process.platform === 'win32') return 'Windows cannot list shared memory: file mappings live in the object manager, not in a directory'
  return `listing shared memory is not supported on ${process.platform}`
}

export function requireListing(): void {
  const why = listingUnsupported()
  if (why !== null) throw new CliError(UNSUPPORTED, why)
}

/** Every segment in /dev/shm (regular files only), sorted by name. */
export function listSegments(): Listing {
  const maps = readMaps()
  const users = userNames()
  const segments: SegmentEntry[] = []
  for (const entry of readdirSync(SHM_DIRECTORY, { withFileTypes: true })) {
    if (!entry.isFile()) continue
    const path = join(SHM_DIRECTORY, entry.name)
    let stats: Stats
    try {
      stats = lstatSync(path)
    } catch {
      continue // deleted while we looked
    }
    segments.push(describe(entry.name, path, stats, users, maps.processes))
  }
  segments.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  return { segments, unreadableProcesses: maps.unreadable }
}

/** One segment by the name a program opens it with. */
export function statSegment(name: string): Listing {
  const osName = SharedMemory.osNameOf(name)
  const path = SHM_DIRECTORY + osName
  let stats: Stats
  try {
    stats = lstatSync(path)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'UNKNOWN'
    throw new CliError(code, code === 'ENOENT' ? `No segment named '${osName}' (${path} does not exist)` : `${path}: ${(error as Error).message}`)
  }
  if (!stats.isFile()) throw new CliError('EINVAL', `${path} is not a shared memory segment (not a regular file)`)
  const maps = readMaps()
  return { segments: [describe(osName.slice(1), path, stats, userNames(), maps.processes)], unreadableProcesses: maps.unreadable }
}

function describe(name: string, path: string, stats: Stats, users: Map<number, string>, mappers: Map<string, MappingProcess[]>): SegmentEntry {
  // tmpfs keeps a birth time on recent kernels; elsewhere Node reports 0.
  const createdMs = stats.birthtimeMs > 0 ? stats.birthtimeMs : stats.ctimeMs
  return {
    name,
    osName: `/${name}`,
    path,
    size: stats.size,
    mode: octalMode(stats.mode),
    uid: stats.uid,
    owner: users.get(stats.uid) ?? String(stats.uid),
    created: new Date(createdMs).toISOString(),
    ageSeconds: Math.max(0, Math.floor((Date.now() - createdMs) / 1000)),
    processes: mappers.get(path) ?? [],
  }
}

/** For each file in /dev/shm, the processes that map it; and how many maps were unreadable. */
function readMaps(): { processes: Map<string, MappingProcess[]>; unreadable: number } {
  const processes = new Map<string, MappingProcess[]>()
  let unreadable = 0
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue
    let maps: string
    try {
      maps = readFileSync(`/proc/${entry}/maps`, 'utf8')
    } catch (error) {
      // ENOENT/ESRCH: the process ended while we looked; it maps nothing now.
      const code = (error as NodeJS.ErrnoException).code
      if (code === 'EACCES' || code === 'EPERM') unreadable += 1
      continue
    }
    const pid = Number(entry)
    const seen = new Set<string>()
    for (const line of maps.split('\n')) {
      const at = line.indexOf(`${SHM_DIRECTORY}/`)
      if (at < 0) continue
      // A segment deleted while mapped shows as "path (deleted)": no longer listed.
      const path = line.slice(at)
      if (seen.has(path)) continue
      seen.add(path)
      let list = processes.get(path)
      if (list === undefined) processes.set(path, (list = []))
      list.push({ pid, command: commandOf(entry) })
    }
  }
  return { processes, unreadable }
}

function commandOf(pid: string): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim()
  } catch {
    return '?'
  }
}

/** uid → user name, from /etc/passwd (empty where it cannot be read). */
function userNames(): Map<number, string> {
  const names = new Map<number, string>()
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const [user, , uid] = line.split(':')
      if (user && uid !== undefined && /^[0-9]+$/.test(uid) && !names.has(Number(uid))) names.set(Number(uid), user)
    }
  } catch {
    // No /etc/passwd (a minimal container): owners show as uids.
  }
  return names
}
