//! The address ranges of our mappings, readable from a signal handler.
//!
//! The registry (registry.rs) sits behind a lock, which a signal handler must
//! never take: the thread it interrupted may hold it. So the registry also
//! writes each range into a slot of this table, which is only atomics in
//! memory that is never freed. The SIGBUS handler (os/sigbus.rs) finds the
//! slot of a faulting address here and marks it; the mapping reads the mark.
//!
//! Slots are claimed and released only under the registry's write lock;
//! readers need no lock.

use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

/// Slots per chunk; chunks are allocated as the table grows, never freed.
const CHUNK: usize = 1024;
/// At most `CHUNKS * CHUNK` (4 Mi) mappings at once, far above any
/// `vm.max_map_count` a process can use.
const CHUNKS: usize = 4096;

struct Slot {
  /// The first byte; 0 while the slot is free.
  start: AtomicUsize,
  len: AtomicUsize,
  /// Some page of the range faulted past the end of its segment.
  faulted: AtomicBool,
}

type Chunk = [Slot; CHUNK];

static TABLE: [AtomicPtr<Chunk>; CHUNKS] = [const { AtomicPtr::new(ptr::null_mut()) }; CHUNKS];

fn chunk(index: usize) -> Option<&'static Chunk> {
  let chunk = TABLE.get(index)?.load(Ordering::Acquire);
  // SAFETY: a non-null chunk pointer came from `Box::leak` and is never freed.
  (!chunk.is_null()).then(|| unsafe { &*chunk })
}

fn slot(index: usize) -> Option<&'static Slot> {
  chunk(index / CHUNK).map(|chunk| &chunk[index % CHUNK])
}

/// Writes `[start, start + len)` into the free slot `index` (allocating its
/// chunk if need be). Registry write lock held.
pub(crate) fn claim(index: usize, start: usize, len: usize) -> bool {
  let Some(entry) = TABLE.get(index / CHUNK) else {
    return false;
  };
  if entry.load(Ordering::Acquire).is_null() {
    let fresh: Box<Chunk> = Box::new(std::array::from_fn(|_| Slot {
      start: AtomicUsize::new(0),
      len: AtomicUsize::new(0),
      faulted: AtomicBool::new(false),
    }));
    entry.store(Box::leak(fresh), Ordering::Release);
  }
  let Some(slot) = slot(index) else {
    return false;
  };
  slot.faulted.store(false, Ordering::Relaxed);
  slot.len.store(len, Ordering::Relaxed);
  // Release: a reader that sees `start` sees `len` too.
  slot.start.store(start, Ordering::Release);
  true
}

/// Frees slot `index`, before its range is unmapped. Registry write lock held.
pub(crate) fn release(index: usize) {
  if let Some(slot) = slot(index) {
    slot.start.store(0, Ordering::Release);
  }
}

/// The slot whose range holds `addr`, and that range. Signal-safe: atomic
/// loads only, no lock, no allocation.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // only Linux has the handler
pub(crate) fn find(addr: usize) -> Option<(usize, usize, usize)> {
  for chunk_index in 0..CHUNKS {
    let chunk = chunk(chunk_index)?;
    for (offset, slot) in chunk.iter().enumerate() {
      let start = slot.start.load(Ordering::Acquire);
      if start == 0 || addr < start {
        continue;
      }
      let len = slot.len.load(Ordering::Relaxed);
      // A slot released and claimed again meanwhile: `len` may be another
      // range's, so check that `start` still holds.
      if addr - start < len && slot.start.load(Ordering::Acquire) == start {
        return Some((chunk_index * CHUNK + offset, start, len));
      }
    }
  }
  None
}

/// How many faults past a segment's end this process has covered, ever: a
/// word that code copying without the library's calls (the JavaScript copy
/// view of a handle) reads before and after a copy, to learn that the copy
/// met a shrunk segment and must be redone by a call that reports it.
static FAULTS: AtomicU32 = AtomicU32::new(0);

/// The counter of covered faults (see [`FAULTS`]); it only grows.
pub fn fault_count() -> &'static AtomicU32 {
  &FAULTS
}

/// Marks slot `index` as having faulted (signal-safe).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn mark_faulted(index: usize) {
  if let Some(slot) = slot(index) {
    slot.faulted.store(true, Ordering::Release);
  }
  FAULTS.fetch_add(1, Ordering::AcqRel);
}

/// Whether slot `index` faulted since it was claimed.
pub(crate) fn faulted(index: usize) -> bool {
  slot(index).is_some_and(|slot| slot.faulted.load(Ordering::Acquire))
}

/// [`Error::Shrunk`](crate::Error::Shrunk) for a mapping of `len` bytes
/// whose view or alias (`slots`) faulted past the segment's end.
pub(crate) fn check_shrunk(slots: &[usize; 2], len: usize) -> crate::Result<()> {
  if slots.iter().any(|&slot| faulted(slot)) {
    Err(crate::Error::Shrunk { mapped: len as u64 })
  } else {
    Ok(())
  }
}
