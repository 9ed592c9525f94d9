//! Windows: named file mappings backed by the paging file
//! (CreateFileMappingW with `INVALID_HANDLE_VALUE`). A mapping lives while a
//! handle or view is open and has no name to remove, so `unlink` does nothing,
//! as in NSPR. Creation is atomic: the size is fixed when the name appears.
//!
//! A mapping created for an `init` is created with an empty DACL, which
//! grants nobody anything: the creator's own handle keeps the access it was
//! created with, and every `OpenFileMappingW` fails with access denied.
//! [`publish`] then gives it the DACL it would have had (the token's
//! default). Openers that are denied wait (at most [`INIT_GRACE`]) for that.
//! If `init` fails or its creator dies, the creator's handle was the only
//! one, so the mapping is gone with it.

use std::ffi::c_void;
use std::ptr;

use windows_sys::Win32::Foundation::{
  CloseHandle, GetLastError, ERROR_ACCESS_DENIED, ERROR_ALREADY_EXISTS, ERROR_FILE_NOT_FOUND,
  HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Security::{
  GetTokenInformation, InitializeAcl, InitializeSecurityDescriptor, SetKernelObjectSecurity,
  SetSecurityDescriptorDacl, TokenDefaultDacl, ACL, ACL_REVISION, DACL_SECURITY_INFORMATION,
  SECURITY_ATTRIBUTES, SECURITY_DESCRIPTOR, TOKEN_DEFAULT_DACL, TOKEN_QUERY,
};
use windows_sys::Win32::System::Memory::{
  CreateFileMappingW, MapViewOfFile, OpenFileMappingW, UnmapViewOfFile, VirtualQuery,
  FILE_MAP_COPY, FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION,
  MEMORY_MAPPED_VIEW_ADDRESS, PAGE_READWRITE, SEC_COMMIT,
};

use super::gate::{poll_until, Initializing, INIT_GRACE};
use super::CreateOptions;
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

/// Opens an existing mapping (OpenFileMappingW); one created for an `init`
/// only once that `init` has returned.
pub(crate) fn open(os_name: &str, read_only: bool) -> Result<Handle> {
  let access = if read_only {
    FILE_MAP_READ
  } else {
    FILE_MAP_READ | FILE_MAP_WRITE
  };
  let name = wide(os_name);
  let try_open = || {
    // SAFETY: `name` is NUL-terminated and outlives the call.
    let handle = unsafe { OpenFileMappingW(access, 0, name.as_ptr()) };
    if handle.is_null() {
      // SAFETY: reads this thread's last-error value, set by the call above.
      Err(unsafe { GetLastError() })
    } else {
      Ok(Handle(handle))
    }
  };
  match try_open() {
    Ok(handle) => Ok(handle),
    Err(ERROR_ACCESS_DENIED) if Initializing::contains(os_name) => {
      // This process's own `init` opening its name: not published yet.
      Err(windows_error(ERROR_FILE_NOT_FOUND, "OpenFileMappingW"))
    }
    // Denied: maybe an `init` still runs. It cannot be told apart from a
    // mapping this user may not open, which answers so after the grace.
    Err(ERROR_ACCESS_DENIED) => poll_until(INIT_GRACE, || match try_open() {
      Err(ERROR_ACCESS_DENIED) => None,
      other => Some(other),
    })
    .unwrap_or(Err(ERROR_ACCESS_DENIED))
    .map_err(|code| windows_error(code, "OpenFileMappingW")),
    Err(code) => Err(windows_error(code, "OpenFileMappingW")),
  }
}

/// A created mapping; with `for_init`, still closed to every other opener
/// until [`publish`].
#[derive(Debug)]
pub(crate) struct Unnamed {
  handle: Handle,
  initializing: Option<Initializing>,
}

impl Unnamed {
  /// The creator's handle (full access).
  pub(crate) fn handle(&self) -> &Handle {
    &self.handle
  }

  /// The handle of the published mapping.
  pub(crate) fn into_handle(self) -> Handle {
    self.handle
  }
}

/// Creates a mapping of `size` zero bytes. `SEC_COMMIT` charges the whole
/// size against the commit limit now, so `reserve` is always on here; `mode`
/// has no Windows meaning (the default DACL applies). With `for_init`, the
/// mapping starts with an empty DACL (see the module notes).
pub(crate) fn create_unnamed(os_name: &str, size: u64, options: &CreateOptions) -> Result<Unnamed> {
  let name = wide(os_name);
  let initializing = options.for_init.then(|| Initializing::new(os_name));
  let mut descriptor = SecurityDescriptor::new();
  let closed = if options.for_init {
    descriptor.deny_all()?;
    descriptor.attributes()
  } else {
    ptr::null()
  };
  // SAFETY: `closed` is null or points into `descriptor`, alive for the
  // call; `name` is NUL-terminated and outlives it.
  let handle = unsafe {
    CreateFileMappingW(
      INVALID_HANDLE_VALUE,
      closed,
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
  Ok(Unnamed {
    handle: Handle(handle),
    initializing,
  })
}

/// Opens a mapping made for an `init` to the users the token's default DACL
/// admits, as if it had been created with no security attributes.
pub(crate) fn publish(unnamed: &Unnamed, _os_name: &str) -> Result<()> {
  if unnamed.initializing.is_none() {
    return Ok(());
  }
  let default_dacl = DefaultDacl::of_this_process()?;
  let mut descriptor = SecurityDescriptor::new();
  descriptor.set_dacl(default_dacl.acl())?;
  // SAFETY: a live handle created with full access (WRITE_DAC included);
  // the descriptor and the ACL it points to outlive the call.
  let ok = unsafe {
    SetKernelObjectSecurity(
      unnamed.handle.0,
      DACL_SECURITY_INFORMATION,
      descriptor.as_ptr(),
    )
  };
  if ok == 0 {
    return Err(last_error("SetKernelObjectSecurity"));
  }
  Ok(())
}

/// An absolute security descriptor and the attributes pointing at it.
struct SecurityDescriptor {
  descriptor: Box<SECURITY_DESCRIPTOR>,
  empty: Box<ACL>,
  attributes: SECURITY_ATTRIBUTES,
}

impl SecurityDescriptor {
  fn new() -> SecurityDescriptor {
    SecurityDescriptor {
      descriptor: Box::default(),
      empty: Box::default(),
      attributes: SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: ptr::null_mut(),
        bInheritHandle: 0,
      },
    }
  }

  fn as_ptr(&mut self) -> *mut c_void {
    ptr::addr_of_mut!(*self.descriptor).cast()
  }

  /// Makes the DACL `acl` (a present DACL: an empty one denies everyone).
  fn set_dacl(&mut self, acl: *const ACL) -> Result<()> {
    const SECURITY_DESCRIPTOR_REVISION: u32 = 1;
    let descriptor = self.as_ptr();
    // SAFETY: `descriptor` is a writable SECURITY_DESCRIPTOR; `acl` is a
    // valid ACL the caller keeps alive as long as the descriptor is used.
    unsafe {
      if InitializeSecurityDescriptor(descriptor, SECURITY_DESCRIPTOR_REVISION) == 0 {
        return Err(last_error("InitializeSecurityDescriptor"));
      }
      if SetSecurityDescriptorDacl(descriptor, 1, acl, 0) == 0 {
        return Err(last_error("SetSecurityDescriptorDacl"));
      }
    }
    Ok(())
  }

  /// A DACL with no entries: nobody may open the object.
  fn deny_all(&mut self) -> Result<()> {
    let empty = ptr::addr_of_mut!(*self.empty);
    // SAFETY: `empty` is a writable ACL header of the size given.
    if unsafe { InitializeAcl(empty, std::mem::size_of::<ACL>() as u32, ACL_REVISION) } == 0 {
      return Err(last_error("InitializeAcl"));
    }
    self.set_dacl(empty)
  }

  /// Attributes naming this descriptor, for a create call.
  fn attributes(&mut self) -> *const SECURITY_ATTRIBUTES {
    self.attributes.lpSecurityDescriptor = self.as_ptr();
    &self.attributes
  }
}

/// The default DACL of this process's token (`TokenDefaultDacl`).
struct DefaultDacl {
  /// A `TOKEN_DEFAULT_DACL` followed by the ACL it points to; u64s for alignment.
  buffer: Vec<u64>,
}

impl DefaultDacl {
  fn of_this_process() -> Result<DefaultDacl> {
    let mut token = ptr::null_mut();
    // SAFETY: the pseudo-handle of this process; `token` is a valid out-pointer.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
      return Err(last_error("OpenProcessToken"));
    }
    let token = Handle(token);
    let mut needed = 0u32;
    // SAFETY: asking for the size only (null buffer of length 0).
    unsafe { GetTokenInformation(token.0, TokenDefaultDacl, ptr::null_mut(), 0, &mut needed) };
    let mut buffer = vec![0u64; (needed as usize).div_ceil(8).max(1)];
    // SAFETY: `buffer` holds at least `needed` writable bytes.
    let ok = unsafe {
      GetTokenInformation(
        token.0,
        TokenDefaultDacl,
        buffer.as_mut_ptr().cast(),
        (buffer.len() * 8) as u32,
        &mut needed,
      )
    };
    if ok == 0 {
      return Err(last_error("GetTokenInformation"));
    }
    Ok(DefaultDacl { buffer })
  }

  fn acl(&self) -> *const ACL {
    // SAFETY: the buffer starts with the TOKEN_DEFAULT_DACL the OS wrote.
    unsafe { (*self.buffer.as_ptr().cast::<TOKEN_DEFAULT_DACL>()).DefaultDacl }
  }
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

// ---- Waiting on a word ----
//
// WaitOnAddress wakes only threads of the same process, so it cannot carry a
// wake-up from another process. The fallback is bounded polling: wait in
// slices of `POLL_SLICE` with WaitOnAddress (so a notify from this process
// still wakes at once) and look at the word after each slice. Another
// process's notify is therefore seen within one slice, which the system
// timer rounds up to its tick (about 1 to 16 ms).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use windows_sys::Win32::Foundation::{
  ERROR_INVALID_PARAMETER, ERROR_TIMEOUT, FILETIME, STILL_ACTIVE,
};
use windows_sys::Win32::System::Threading::{
  GetCurrentProcess, GetCurrentThread, GetCurrentThreadId, GetExitCodeThread, GetThreadTimes,
  OpenProcessToken, OpenThread, WaitOnAddress, WakeByAddressAll, WakeByAddressSingle,
  THREAD_QUERY_LIMITED_INFORMATION,
};

use super::{Liveness, Wake};

const POLL_SLICE: Duration = Duration::from_millis(1);

/// Sleeps while `word` holds `expected`, at most `timeout`, in slices.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Result<Wake> {
  let slice = timeout.map_or(POLL_SLICE, |timeout| timeout.min(POLL_SLICE));
  let millis = u32::try_from(slice.as_millis()).unwrap_or(u32::MAX);
  // SAFETY: `word` is a live, aligned 4-byte word (the caller holds it) and
  // `expected` a local of the same size.
  let woken = unsafe {
    WaitOnAddress(
      word.as_ptr().cast(),
      (&expected as *const u32).cast(),
      4,
      millis,
    )
  };
  if word.load(Ordering::SeqCst) != expected {
    return Ok(Wake::Changed);
  }
  if woken != 0 {
    return Ok(Wake::Woken);
  }
  // SAFETY: reads this thread's last-error value, set by WaitOnAddress.
  let error = unsafe { windows_sys::Win32::Foundation::GetLastError() };
  if error != ERROR_TIMEOUT {
    return Err(windows_error(error, "WaitOnAddress"));
  }
  match timeout {
    Some(timeout) if timeout <= slice => Ok(Wake::TimedOut),
    _ => Ok(Wake::Interrupted),
  }
}

/// Wakes waiters of this process on `word` (other processes poll). Windows
/// does not say how many it woke: this returns 0.
pub(crate) fn wake(word: &AtomicU32, count: u32) -> Result<usize> {
  let addr = word.as_ptr().cast();
  // Beyond a handful, waking one by one costs more than waking all.
  if count > 64 {
    // SAFETY: `addr` is a live word; waking nobody is harmless.
    unsafe { WakeByAddressAll(addr) };
  } else {
    for _ in 0..count {
      // SAFETY: as above.
      unsafe { WakeByAddressSingle(addr) };
    }
  }
  Ok(0)
}

// ---- Who holds a lock ----
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
  let handle = Handle(thread);
  let mut code = 0u32;
  // SAFETY: `handle.0` is a live thread handle; `code` is writable.
  let queried = unsafe { GetExitCodeThread(handle.0, &mut code) } != 0;
  if queried && code != STILL_ACTIVE as u32 {
    return Liveness::Dead;
  }
  match creation_stamp(handle.0) {
    Some(created) if created != stamp => Liveness::Dead,
    _ => Liveness::Alive,
  }
}
