//! Windows: `wait` and `wake` that cross processes, without polling.
//!
//! `WaitOnAddress` wakes only threads of its own process, so a word of a
//! segment is waited on through kernel objects every process can open by
//! name: per segment a small shared table of who sleeps on which word, and
//! per word a semaphore (names and protocol: `wake_table.rs`). A `notify`
//! that finds no sleeper in the table makes no system call.
//!
//! The backend learns which segment a word belongs to from this process's
//! views: `map` registers each view with its segment's [`SegmentWake`], and
//! a word's offset is its distance from the view's base (views always start
//! at offset 0). A word in no view (the waiter threads' own control words)
//! is private to this process and uses `WaitOnAddress`, which suffices there.

use std::collections::BTreeMap;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::ptr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use windows_sys::Win32::Foundation::{
  GetLastError, ERROR_FILE_NOT_FOUND, ERROR_TIMEOUT, HANDLE, INVALID_HANDLE_VALUE, WAIT_OBJECT_0,
  WAIT_TIMEOUT,
};
use windows_sys::Win32::System::Memory::{
  CreateFileMappingW, MapViewOfFile, UnmapViewOfFile, FILE_MAP_READ, FILE_MAP_WRITE,
  MEMORY_MAPPED_VIEW_ADDRESS, PAGE_READWRITE, SEC_COMMIT,
};
use windows_sys::Win32::System::Threading::{
  CreateSemaphoreW, OpenSemaphoreW, ReleaseSemaphore, WaitForSingleObject, WaitOnAddress,
  WakeByAddressAll, WakeByAddressSingle, INFINITE, SEMAPHORE_MODIFY_STATE,
};

use super::Wake;
use crate::error::{too_many_sleepers, windows_error, Error, Result};
use crate::wake_table::{Left, WakeNames, WakeTable, SLOTS, TABLE_BYTES};

/// How long a sleeper that a notifier chose, but that stopped first, waits
/// for the semaphore unit on its way (the notifier releases it microseconds
/// later, unless it died in between).
const GRANT_GRACE_MS: u32 = 1000;

fn wide(text: &str) -> Vec<u16> {
  text.encode_utf16().chain(Some(0)).collect()
}

fn last_error(syscall: &'static str) -> Error {
  // SAFETY: reads this thread's last-error value.
  windows_error(unsafe { GetLastError() }, syscall)
}

/// Takes ownership of a handle a Win32 call returned (null: it failed).
fn owned(raw: HANDLE, syscall: &'static str) -> Result<OwnedHandle> {
  if raw.is_null() {
    return Err(last_error(syscall));
  }
  // SAFETY: a fresh, valid handle that nothing else owns.
  Ok(unsafe { OwnedHandle::from_raw_handle(raw) })
}

/// This process's view of one segment's table of sleepers.
#[derive(Debug)]
struct TableView {
  base: *mut AtomicU64,
  /// Keeps the named table alive while mapped; closed after the unmap.
  _mapping: OwnedHandle,
}

// SAFETY: shared memory without thread affinity, accessed only atomically.
unsafe impl Send for TableView {}
// SAFETY: as above.
unsafe impl Sync for TableView {}

impl TableView {
  /// Opens the segment's table, creating it (zeroed) if no process has yet.
  fn open(names: &WakeNames) -> Result<TableView> {
    let name = wide(names.table());
    // SAFETY: no security attributes; `name` is NUL-terminated and outlives the call.
    let raw = unsafe {
      CreateFileMappingW(
        INVALID_HANDLE_VALUE,
        ptr::null(),
        PAGE_READWRITE | SEC_COMMIT,
        0,
        TABLE_BYTES as u32,
        name.as_ptr(),
      )
    };
    let mapping = owned(raw, "CreateFileMappingW")?;
    // SAFETY: a new view at an address the system picks overlaps nothing
    // Rust owns. A same-named object smaller than the table fails here.
    let view = unsafe {
      MapViewOfFile(
        mapping.as_raw_handle(),
        FILE_MAP_READ | FILE_MAP_WRITE,
        0,
        0,
        TABLE_BYTES,
      )
    };
    if view.Value.is_null() {
      return Err(last_error("MapViewOfFile"));
    }
    Ok(TableView {
      base: view.Value.cast(),
      _mapping: mapping,
    })
  }

  fn table(&self) -> WakeTable<'_> {
    // SAFETY: the view holds TABLE_BYTES = SLOTS * 8 bytes, page-aligned,
    // mapped while `self` lives; every access to it is atomic.
    WakeTable::new(unsafe { std::slice::from_raw_parts(self.base, SLOTS) })
  }
}

impl Drop for TableView {
  fn drop(&mut self) {
    // SAFETY: the view `open` made, unmapped once; no `WakeTable` borrowed
    // from `self` outlives it.
    unsafe {
      UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
        Value: self.base.cast(),
      })
    };
  }
}

/// The wake-up objects of one segment, shared by its handle and its views.
#[derive(Debug)]
pub(crate) struct SegmentWake {
  names: WakeNames,
  /// Opened on the first `wait` or `wake` on one of the segment's words.
  table: Mutex<Option<Arc<TableView>>>,
}

impl SegmentWake {
  pub(crate) fn new(os_name: &str) -> Arc<SegmentWake> {
    Arc::new(SegmentWake {
      names: WakeNames::for_segment(os_name),
      table: Mutex::new(None),
    })
  }

  fn table(&self) -> Result<Arc<TableView>> {
    let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(table) = table.as_ref() {
      return Ok(Arc::clone(table));
    }
    let opened = Arc::new(TableView::open(&self.names)?);
    *table = Some(Arc::clone(&opened));
    Ok(opened)
  }
}

/// `base -> (len, segment)` for every view of this process.
static VIEWS: Mutex<BTreeMap<usize, (usize, Arc<SegmentWake>)>> = Mutex::new(BTreeMap::new());

fn views() -> MutexGuard<'static, BTreeMap<usize, (usize, Arc<SegmentWake>)>> {
  // Each edit is one call: the map stays consistent even after a panic.
  VIEWS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records a new view of `segment` (called by `map`).
pub(crate) fn register(base: *mut u8, len: usize, segment: &Arc<SegmentWake>) {
  views().insert(base as usize, (len, Arc::clone(segment)));
}

/// Forgets a view (called by `unmap`).
pub(crate) fn unregister(base: *mut u8) {
  views().remove(&(base as usize));
}

/// The segment and offset of `word`, if it lies in one of our views.
fn locate(word: &AtomicU32) -> Option<(Arc<SegmentWake>, u64)> {
  let addr = word.as_ptr() as usize;
  let views = views();
  let (&base, (len, segment)) = views.range(..=addr).next_back()?;
  let offset = addr - base;
  (offset + 4 <= *len).then(|| (Arc::clone(segment), offset as u64))
}

/// `timeout` in whole milliseconds, rounded up so that a wait never ends
/// early, and whether it had to be capped below `INFINITE`.
fn millis(timeout: Option<Duration>) -> (u32, bool) {
  match timeout {
    None => (INFINITE, false),
    Some(timeout) => {
      let millis = timeout.as_nanos().div_ceil(1_000_000);
      match u32::try_from(millis) {
        Ok(millis) if millis < INFINITE => (millis, false),
        _ => (INFINITE - 1, true),
      }
    }
  }
}

/// Sleeps while `word` holds `expected`, at most `timeout`.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Result<Wake> {
  let Some((segment, offset)) = locate(word) else {
    return wait_in_process(word, expected, timeout);
  };
  let table = segment.table()?;
  let name = wide(&segment.names.semaphore(offset));
  // Open (or create) the semaphore before announcing ourselves: a notifier
  // that counts us then finds it. Units beyond i32::MAX cannot be pending.
  // SAFETY: no security attributes; `name` is NUL-terminated and outlives the call.
  let raw = unsafe { CreateSemaphoreW(ptr::null(), 0, i32::MAX, name.as_ptr()) };
  let semaphore = owned(raw, "CreateSemaphoreW")?;
  if table.table().enter(offset).is_err() {
    return Err(too_many_sleepers(SLOTS, "WaitForSingleObject"));
  }
  let stop = |otherwise: Wake| match table.table().leave(offset) {
    Left::Withdrawn => otherwise,
    Left::Granted => {
      // A notifier counted us: take its unit so no later sleeper wakes for
      // nothing, and report the wake-up it counted.
      // SAFETY: a live semaphore handle.
      unsafe { WaitForSingleObject(semaphore.as_raw_handle(), GRANT_GRACE_MS) };
      Wake::Woken
    }
  };
  if word.load(Ordering::SeqCst) != expected {
    return Ok(stop(Wake::Changed));
  }
  let (millis, capped) = millis(timeout);
  // SAFETY: a live semaphore handle.
  match unsafe { WaitForSingleObject(semaphore.as_raw_handle(), millis) } {
    WAIT_OBJECT_0 => Ok(Wake::Woken),
    WAIT_TIMEOUT if capped => Ok(stop(Wake::Interrupted)),
    WAIT_TIMEOUT => Ok(stop(Wake::TimedOut)),
    _ => {
      let error = last_error("WaitForSingleObject");
      stop(Wake::Interrupted);
      Err(error)
    }
  }
}

/// Wakes up to `count` sleepers on `word` (`u32::MAX`: all) in every
/// process; returns how many it woke.
pub(crate) fn wake(word: &AtomicU32, count: u32) -> Result<usize> {
  let Some((segment, offset)) = locate(word) else {
    wake_in_process(word, count);
    return Ok(0);
  };
  let table = segment.table()?;
  let woken = table.table().take(offset, count);
  if woken == 0 {
    return Ok(0);
  }
  let name = wide(&segment.names.semaphore(offset));
  // SAFETY: `name` is NUL-terminated and outlives the call.
  let raw = unsafe { OpenSemaphoreW(SEMAPHORE_MODIFY_STATE, 0, name.as_ptr()) };
  // SAFETY: reads this thread's last-error value, set by OpenSemaphoreW.
  if raw.is_null() && unsafe { GetLastError() } == ERROR_FILE_NOT_FOUND {
    // Every sleeper holds the semaphore open: with none left, those counted
    // were threads of processes that died asleep.
    return Ok(0);
  }
  let semaphore = owned(raw, "OpenSemaphoreW")?;
  // `woken` is at most SLOTS * 2^24 sleepers, well within an i32.
  // SAFETY: a live semaphore handle; no previous count wanted.
  if unsafe { ReleaseSemaphore(semaphore.as_raw_handle(), woken as i32, ptr::null_mut()) } == 0 {
    return Err(last_error("ReleaseSemaphore"));
  }
  Ok(woken as usize)
}

/// A word private to this process: `WaitOnAddress` is enough.
fn wait_in_process(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Result<Wake> {
  let (millis, capped) = millis(timeout);
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
  match unsafe { GetLastError() } {
    ERROR_TIMEOUT if capped => Ok(Wake::Interrupted),
    ERROR_TIMEOUT => Ok(Wake::TimedOut),
    error => Err(windows_error(error, "WaitOnAddress")),
  }
}

fn wake_in_process(word: &AtomicU32, count: u32) {
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
}
