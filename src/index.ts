// named-shm: named shared memory for Node.js, NSPR's API.

export { SharedMemory, MAX_SIZE } from './shared-memory'
export type { OpenOptions, AttachOptions, NameOptions } from './shared-memory'
export {
  SHM_CREATE,
  SHM_EXCL,
  SHM_READONLY,
  openSharedMemory,
  attachSharedMemory,
  detachSharedMemory,
  closeSharedMemory,
  deleteSharedMemory,
} from './nspr'
export type { SharedMemoryError, LibraryErrorCode } from './errors'
export { wait, waitAsync, notify, SharedMutex } from './sync'
export type { WaitResult, LockResult, TryLockResult, WaitOptions, AsyncWaitOptions, SharedMutexOptions } from './sync'
export { Channel } from './channel'
export type { ChannelOptions, ChannelWaitOptions } from './channel'
