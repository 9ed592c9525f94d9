//! Windows: named file mappings backed by the paging file
//! (CreateFileMappingW with `INVALID_HANDLE_VALUE`). A mapping lives while a
//! handle or view is open and has no name to remove, so `unlink` does nothing,
//! as in NSPR. Creation is atomic: the size is fixed when the name appears.

use std::ffi::c_void;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::ptr;
use std::sync::Arc;

use windows_sys::Win32::Foundation::{
  GetLastError, ERROR_ALREADY_EXISTS, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::System::Memory::{
  CreateFileMappingW, MapViewOfFile, OpenFileMappingW, UnmapViewOfFile, VirtualQuery,
  FILE_MAP_COPY, FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION,
  MEMORY_MAPPED_VIEW_ADDRESS, PAGE_READWRITE, SEC_COMMIT,
};

use super::windows_wake::{self, SegmentWake};
use crate::error::{windows_error, Result};
use crate::mapping::Access;

/// An open file-mapping object, closed on drop, and the wake-up objects of
/// its segment (see `windows_wake.rs`), which its views share.
#[derive(Debug)]
pub(crate) struct Handle {
  mapping: OwnedHandle,
  wake: Arc<SegmentWake>,
}

impl Handle {
  fn new(raw: HANDLE, os_name: &str) -> Handle {
    Handle {
      // SAFETY: a fresh, valid handle that nothing else owns.
      mapping: unsafe { OwnedHandle::from_raw_handle(raw) },
      wake: SegmentWake::new(os_name),
    }
  }
}

fn wide(text: &str) -> Vec<u16> {
  text.encode_utf16().chain(Some(0)).collect()
}

fn last_error(syscall: &'static str) -> crate::error::Error {
  // SAFETY: reads this thread's last-error value.
  windows_error(unsafe { GetLastError() }, syscall)
}

/// Opens an existing mapping (OpenFileMappingW).
pub(crate) fn open(os_name: &str, read_only: bool) -> Result<Handle> {
  let access = if read_only {
    FILE_MAP_READ
  } else {
    FILE_MAP_READ | FILE_MAP_WRITE
  };
  let name = wide(os_name);
  // SAFETY: `name` is NUL-terminated and outlives the call.
  let handle = unsafe { OpenFileMappingW(access, 0, name.as_ptr()) };
  if handle.is_null() {
    return Err(last_error("OpenFileMappingW"));
  }
  Ok(Handle::new(handle, os_name))
}

/// Creates a mapping of `size` zero bytes. `SEC_COMMIT` charges the whole
/// size against the commit limit now, so `reserve` is always on here; `mode`
/// has no Windows meaning (the default DACL applies).
pub(crate) fn create(os_name: &str, size: u64, _mode: u32, _reserve: bool) -> Result<Handle> {
  let name = wide(os_name);
  // SAFETY: no security attributes; `name` is NUL-terminated and outlives the call.
  let handle = unsafe {
    CreateFileMappingW(
      INVALID_HANDLE_VALUE,
      ptr::null(),
      PAGE_READWRITE | SEC_COMMIT,
      (size >> 32) as u32,
      size as u32,
      name.as_ptr(),
    )
  };
  if handle.is_null() {
    return Err(last_error("CreateFileMappingW"));
  }
  // SAFETY: reads this thread's last-error value, set by the call above.
  let existed = unsafe { GetLastError() } == ERROR_ALREADY_EXISTS;
  let handle = Handle::new(handle, os_name);
  if existed {
    return Err(windows_error(ERROR_ALREADY_EXISTS, "CreateFileMappingW"));
  }
  Ok(handle)
}

/// The mapping's size, rounded up to whole pages: Windows documents no call
/// that gives the exact size of a section.
pub(crate) fn size_of(handle: &Handle) -> Result<u64> {
  let view = map(handle, 0, Access::ReadOnly)?;
  let mut info: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
  // SAFETY: `view` is a live view; `info` is a writable struct of the size given.
  let written = unsafe {
    VirtualQuery(
      view.cast::<c_void>(),
      &mut info,
      std::mem::size_of::<MEMORY_BASIC_INFORMATION>(),
    )
  };
  let size = info.RegionSize as u64;
  // SAFETY: unmapping the view made above, used by nothing else.
  unsafe { unmap(view, 0) };
  if written == 0 {
    return Err(last_error("VirtualQuery"));
  }
  Ok(size)
}

/// Maps `len` bytes (0: the whole mapping) from offset 0 (MapViewOfFile).
pub(crate) fn map(handle: &Handle, len: usize, access: Access) -> Result<*mut u8> {
  let desired = match access {
    Access::ReadWrite => FILE_MAP_READ | FILE_MAP_WRITE,
    Access::ReadOnly => FILE_MAP_READ,
    Access::CopyOnWrite => FILE_MAP_COPY,
  };
  // SAFETY: a new view at an address the system picks overlaps nothing Rust owns.
  let view = unsafe { MapViewOfFile(handle.mapping.as_raw_handle(), desired, 0, 0, len) };
  if view.Value.is_null() {
    return Err(last_error("MapViewOfFile"));
  }
  let base = view.Value.cast();
  // A view of known length may hold words to wait on (`size_of`'s
  // whole-mapping view is gone again at once).
  if len > 0 {
    windows_wake::register(base, len, &handle.wake);
  }
  Ok(base)
}

/// Unmaps what [`map`] returned.
///
/// # Safety
/// `ptr` comes from one [`map`] call, unmapped once, no longer used.
pub(crate) unsafe fn unmap(ptr: *mut u8, _len: usize) {
  windows_wake::unregister(ptr);
  // SAFETY: the caller's contract.
  unsafe { UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS { Value: ptr.cast() }) };
}

/// Windows has no persistent names: a mapping ends with its last handle.
pub(crate) fn unlink(_os_name: &str) -> Result<()> {
  Ok(())
}

// ---- Who holds a lock ----

use windows_sys::Win32::Foundation::{ERROR_INVALID_PARAMETER, FILETIME, STILL_ACTIVE};
use windows_sys::Win32::System::Threading::{
  GetCurrentThread, GetCurrentThreadId, GetExitCodeThread, GetThreadTimes, OpenThread,
  THREAD_QUERY_LIMITED_INFORMATION,
};

use super::Liveness;
//
// The owner is a thread id (they are system-wide on Windows) plus the low
// half of the thread's creation time, which tells a recycled id apart.

const ID_MASK: u32 = (1 << 30) - 1;

fn creation_stamp(thread: HANDLE) -> Option<u32> {
  let zero = FILETIME {
    dwLowDateTime: 0,
    dwHighDateTime: 0,
  };
  let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
  // SAFETY: `thread` is a live handle with query access; the four out-pointers are valid.
  let ok = unsafe { GetThreadTimes(thread, &mut created, &mut exited, &mut kernel, &mut user) };
  (ok != 0).then_some(created.dwLowDateTime)
}

/// This thread's id and stamp.
pub(crate) fn thread_identity() -> (u32, u32) {
  // SAFETY: no arguments; GetCurrentThread returns a pseudo-handle that needs no closing.
  let (id, thread) = unsafe { (GetCurrentThreadId(), GetCurrentThread()) };
  (id & ID_MASK, creation_stamp(thread).unwrap_or(0))
}

/// Whether the thread `(id, stamp)` still runs.
pub(crate) fn liveness(id: u32, stamp: u32) -> Liveness {
  // SAFETY: opening a thread by id with query rights only.
  let thread = unsafe { OpenThread(THREAD_QUERY_LIMITED_INFORMATION, 0, id) };
  if thread.is_null() {
    // SAFETY: reads this thread's last-error value, set by OpenThread.
    return match unsafe { windows_sys::Win32::Foundation::GetLastError() } {
      ERROR_INVALID_PARAMETER => Liveness::Dead,
      // Access denied and the like: it exists.
      _ => Liveness::Alive,
    };
  }
  // SAFETY: a fresh, valid handle that nothing else owns.
  let thread = unsafe { OwnedHandle::from_raw_handle(thread) };
  let mut code = 0u32;
  // SAFETY: a live thread handle; `code` is writable.
  let queried = unsafe { GetExitCodeThread(thread.as_raw_handle(), &mut code) } != 0;
  if queried && code != STILL_ACTIVE as u32 {
    return Liveness::Dead;
  }
  match creation_stamp(thread.as_raw_handle()) {
    Some(created) if created != stamp => Liveness::Dead,
    _ => Liveness::Alive,
  }
}
