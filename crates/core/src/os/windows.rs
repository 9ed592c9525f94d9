//! Windows: named file mappings backed by the paging file
//! (CreateFileMappingW with `INVALID_HANDLE_VALUE`). A mapping lives while a
//! handle or view is open and has no name to remove, so `unlink` does nothing,
//! as in NSPR. Creation is atomic: the size is fixed when the name appears.

use std::ffi::c_void;
use std::ptr;

use windows_sys::Win32::Foundation::{
  CloseHandle, GetLastError, ERROR_ALREADY_EXISTS, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::System::Memory::{
  CreateFileMappingW, MapViewOfFile, OpenFileMappingW, UnmapViewOfFile, VirtualQuery,
  FILE_MAP_COPY, FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION,
  MEMORY_MAPPED_VIEW_ADDRESS, PAGE_READWRITE, SEC_COMMIT,
};

use crate::error::{windows_error, Result};
use crate::mapping::Access;

/// An open file-mapping object, closed on drop.
#[derive(Debug)]
pub(crate) struct Handle(HANDLE);

// SAFETY: a kernel handle may be used and closed from any thread.
unsafe impl Send for Handle {}
// SAFETY: as above; the handle is never mutated after creation.
unsafe impl Sync for Handle {}

impl Drop for Handle {
  fn drop(&mut self) {
    // SAFETY: we own the handle and close it once.
    unsafe { CloseHandle(self.0) };
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
  Ok(Handle(handle))
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
  if unsafe { GetLastError() } == ERROR_ALREADY_EXISTS {
    drop(Handle(handle));
    return Err(windows_error(ERROR_ALREADY_EXISTS, "CreateFileMappingW"));
  }
  Ok(Handle(handle))
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
  let view = unsafe { MapViewOfFile(handle.0, desired, 0, 0, len) };
  if view.Value.is_null() {
    return Err(last_error("MapViewOfFile"));
  }
  Ok(view.Value.cast())
}

/// Unmaps what [`map`] returned.
///
/// # Safety
/// `ptr` comes from one [`map`] call, unmapped once, no longer used.
pub(crate) unsafe fn unmap(ptr: *mut u8, _len: usize) {
  // SAFETY: the caller's contract.
  unsafe { UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS { Value: ptr.cast() }) };
}

/// Windows has no persistent names: a mapping ends with its last handle.
pub(crate) fn unlink(_os_name: &str) -> Result<()> {
  Ok(())
}
