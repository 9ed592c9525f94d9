// NSPR's shape of the same API (prshm.h): flags instead of options.

import { invalidArgType, invalidArgValue } from './errors'
import { SharedMemory } from './shared-memory'
import { validateInteger } from './validate'

/** `PR_SHM_CREATE`: create the segment if it does not exist. */
export const SHM_CREATE = 0x1
/** `PR_SHM_EXCL`: with `SHM_CREATE`, fail if it exists. */
export const SHM_EXCL = 0x2
/** `PR_SHM_READONLY`: attach read-only. */
export const SHM_READONLY = 0x1

function validateFlags(flags: unknown, known: number): asserts flags is number {
  validateInteger(flags, 'flags', 0, 0xffffffff)
  if ((flags & ~known) !== 0) {
    throw invalidArgValue('flags', `has unknown bits 0x${(flags & ~known).toString(16)}`, flags)
  }
}

function validateHandle(shm: unknown): asserts shm is SharedMemory {
  if (!(shm instanceof SharedMemory)) throw invalidArgType('shm', 'an instance of SharedMemory', shm)
}

/** `PR_OpenSharedMemory(name, size, flags, mode)`. */
export function openSharedMemory(name: string, size: number, flags = 0, mode = 0o600): SharedMemory {
  validateFlags(flags, SHM_CREATE | SHM_EXCL)
  return SharedMemory.open(name, size, {
    create: (flags & SHM_CREATE) !== 0,
    exclusive: (flags & SHM_EXCL) !== 0,
    mode,
  })
}

/** `PR_AttachSharedMemory(shm, flags)`: `SHM_READONLY` maps read-only. */
export function attachSharedMemory(shm: SharedMemory, flags = 0): Buffer {
  validateHandle(shm)
  validateFlags(flags, SHM_READONLY)
  return (flags & SHM_READONLY) !== 0 ? shm.attach({ readOnly: true }) : shm.attach()
}

/** `PR_DetachSharedMemory(shm, addr)`. */
export function detachSharedMemory(shm: SharedMemory, view: ArrayBufferView | ArrayBuffer): void {
  validateHandle(shm)
  shm.detach(view)
}

/** `PR_CloseSharedMemory(shm)`. */
export function closeSharedMemory(shm: SharedMemory): void {
  validateHandle(shm)
  shm.close()
}

/** `PR_DeleteSharedMemory(name)`. */
export function deleteSharedMemory(name: string): void {
  SharedMemory.delete(name)
}
