//! One attachment of a segment: a range of this process's address space.

use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::error::{Error, Result};
use crate::os;

/// How a mapping may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
  /// Reads and writes are shared with every process attached to the segment.
  ReadWrite,
  /// Reads only; the OS faults on writes. For code that never writes (the
  /// copying `read`), never for memory JavaScript can write to.
  ReadOnly,
  /// Reads see the segment; a write makes a private copy of its page, which
  /// the segment and other processes never see (`MAP_PRIVATE`,
  /// `FILE_MAP_COPY`). Read-only views use it so that a stray write from
  /// JavaScript cannot crash the process.
  CopyOnWrite,
}

/// A mapped range of a segment, unmapped on drop.
///
/// `Send + Sync`: it is plain memory shared with other processes anyway; the
/// owner decides when nothing can reach it any more and calls
/// [`Mapping::unmap`] or drops it.
#[derive(Debug)]
pub struct Mapping {
  ptr: AtomicPtr<u8>,
  len: usize,
  access: Access,
}

// SAFETY: the mapping is a range of shared memory with no thread affinity; all
// access goes through raw pointers whose validity `unmap`'s contract governs.
unsafe impl Send for Mapping {}
// SAFETY: as above; `ptr` is atomic so `unmap` through `&self` is race-free.
unsafe impl Sync for Mapping {}

/// `(start, len)` of every live mapping in this process. Two mappings of one
/// segment are two addresses for the same memory, so a caller's buffer that
/// lies in any mapping may alias the bytes a copy overwrites, which neither
/// `copy_nonoverlapping` nor `memmove` can see; such copies are staged.
static LIVE: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<(usize, usize)>> {
  // The list stays consistent even if a holder panicked: each edit is one call.
  LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether `[addr, addr + len)` overlaps any live mapping of this process.
fn in_some_mapping(addr: *const u8, len: usize) -> bool {
  let addr = addr as usize;
  len > 0
    && live()
      .iter()
      .any(|&(start, size)| addr < start.saturating_add(size) && start < addr.saturating_add(len))
}

impl Mapping {
  pub(crate) fn new(ptr: *mut u8, len: usize, access: Access) -> Mapping {
    live().push((ptr as usize, len));
    Mapping {
      ptr: AtomicPtr::new(ptr),
      len,
      access,
    }
  }

  /// The first byte, page-aligned; null once unmapped.
  pub fn as_ptr(&self) -> *mut u8 {
    self.ptr.load(Ordering::Acquire)
  }

  /// Length in bytes, as asked for (the OS rounds the mapping up to a page).
  pub fn len(&self) -> usize {
    self.len
  }

  /// Whether the mapping has no bytes (never true for a live mapping).
  pub fn is_empty(&self) -> bool {
    self.len == 0
  }

  /// How the mapping may be used.
  pub fn access(&self) -> Access {
    self.access
  }

  /// Whether [`Mapping::unmap`] has run.
  pub fn is_unmapped(&self) -> bool {
    self.as_ptr().is_null()
  }

  /// Whether `[addr, addr + len)` lies inside this live mapping.
  pub fn contains(&self, addr: usize, len: usize) -> bool {
    let start = self.as_ptr() as usize;
    start != 0
      && addr >= start
      && addr
        .checked_add(len)
        .is_some_and(|end| end <= start + self.len)
  }

  /// Copies `dst.len()` bytes starting at `offset` into `dst`.
  ///
  /// # Errors
  /// [`Error::InvalidArgument`] when the range leaves the mapping or it is unmapped.
  pub fn read_at(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
    let src = self.range(offset, dst.len())?;
    if in_some_mapping(dst.as_ptr(), dst.len()) {
      // `dst` may be these very bytes through another mapping: copy them out first.
      let mut staged = vec![0u8; dst.len()];
      // SAFETY: as below, into a buffer of our own.
      unsafe { ptr::copy_nonoverlapping(src, staged.as_mut_ptr(), staged.len()) };
      dst.copy_from_slice(&staged);
      return Ok(());
    }
    // SAFETY: `range` checked that the bytes lie in the live mapping; `dst` is
    // in no mapping, so it is distinct memory. Other processes may write
    // meanwhile: shared memory gives no snapshot, as documented.
    unsafe { ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
    Ok(())
  }

  /// Copies `len` bytes starting at `offset` into a new vector.
  ///
  /// # Errors
  /// As [`Mapping::read_at`], and `ENOMEM` when this process cannot allocate
  /// the copy (a huge segment): an allocation failure must not abort.
  pub fn read_to_vec(&self, offset: usize, len: usize) -> Result<Vec<u8>> {
    let src = self.range(offset, len)?;
    let mut bytes = Vec::new();
    bytes
      .try_reserve_exact(len)
      .map_err(|_| Error::out_of_memory(len as u64))?;
    // SAFETY: `range` checked that the source lies in the live mapping; the
    // vector owns room for `len` bytes, all written before `set_len`.
    unsafe {
      ptr::copy_nonoverlapping(src, bytes.as_mut_ptr(), len);
      bytes.set_len(len);
    }
    Ok(bytes)
  }

  /// Copies `src` into the mapping at `offset`.
  ///
  /// # Errors
  /// [`Error::ReadOnly`] for a read-only mapping, [`Error::InvalidArgument`]
  /// when the range leaves the mapping or it is unmapped.
  pub fn write_at(&self, offset: usize, src: &[u8]) -> Result<()> {
    if self.access != Access::ReadWrite {
      return Err(Error::ReadOnly);
    }
    let dst = self.range(offset, src.len())?;
    let staged;
    let src = if in_some_mapping(src.as_ptr(), src.len()) {
      // `src` may be these very bytes through another mapping: copy them out first.
      staged = src.to_vec();
      &staged[..]
    } else {
      src
    };
    // SAFETY: as in `read_at`; the mapping is writable and shared, and `src`
    // is now memory that no mapping reaches.
    unsafe { ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
    Ok(())
  }

  fn range(&self, offset: usize, len: usize) -> Result<*mut u8> {
    let base = self.as_ptr();
    let fits = offset.checked_add(len).is_some_and(|end| end <= self.len);
    if base.is_null() || !fits {
      return Err(Error::InvalidArgument(format!(
        "The range {offset}..{} is outside the mapping of {} bytes",
        offset.saturating_add(len),
        self.len
      )));
    }
    // SAFETY: `offset <= len` of a live mapping, so the result is in bounds.
    Ok(unsafe { base.add(offset) })
  }

  /// Unmaps now. Later calls, and the drop, do nothing.
  ///
  /// # Safety
  /// Nothing may use memory from [`Mapping::as_ptr`] afterwards: callers
  /// first make every view of it unreachable (the binding detaches the
  /// JavaScript `ArrayBuffer`).
  pub unsafe fn unmap(&self) {
    let ptr = self.ptr.swap(ptr::null_mut(), Ordering::AcqRel);
    if !ptr.is_null() {
      let mut live = live();
      if let Some(index) = live.iter().position(|&(start, _)| start == ptr as usize) {
        live.swap_remove(index);
      }
      drop(live);
      // SAFETY: `ptr`/`len` came from `os::map` and were unmapped by no one:
      // the swap hands them to exactly one caller.
      unsafe { os::unmap(ptr, self.len) };
    }
  }
}

impl Drop for Mapping {
  fn drop(&mut self) {
    // SAFETY: whoever drops the last owner can no longer reach the memory.
    unsafe { self.unmap() };
  }
}
