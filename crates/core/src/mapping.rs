//! One attachment of a segment: a range of this process's address space.

use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::os;
#[cfg(unix)]
use crate::overlay::{alias_access, Alias};
use crate::ranges;
use crate::registry;
use crate::waiter;

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

/// `Mapping::state`: [`Mapping::unmap`] has been called.
const RETIRED: usize = 1;
/// `Mapping::state`: the OS mapping is gone.
const RELEASED: usize = 2;
/// `Mapping::state`: one [`Pinned`] (the count lives above the two flags).
const PIN: usize = 4;

/// A mapped range of a segment, unmapped on drop.
///
/// This type owns a mapping's whole life: [`Segment::map`](crate::Segment::map)
/// makes one, it enters the process's registry of mappings as it is made
/// ([`Mapping::containing`] finds it by address), and it leaves the registry
/// in the same step that unmaps it, before the OS may hand the address out
/// again. No caller registers or forgets anything.
///
/// `Send + Sync`: it is plain memory shared with other processes anyway; the
/// owner decides when nothing can reach it any more and calls
/// [`Mapping::unmap`] or drops it.
///
/// Another thread that must read the memory while the owner may unmap it (a
/// waiter thread of `waitAsync`) holds a [`Pinned`]: `unmap` then only
/// retires the mapping (no new pins, [`Mapping::as_ptr`] is null) and the
/// last pin to go unmaps it. So no thread ever touches unmapped memory.
#[derive(Debug)]
pub struct Mapping {
  base: *mut u8,
  len: usize,
  access: Access,
  /// A copy-on-write view's shared read-only mapping of the same bytes,
  /// where its words are waited on and notified: a private page would meet
  /// no other process's futex, and a futex wait would even copy the page,
  /// cutting the view off from later writes by others. Unmapped with the view.
  alias: Option<*mut u8>,
  /// For an overlay (`overlay.rs`): how many bytes of someone else's memory
  /// the segment is mapped over, from `base`; it always has an alias too,
  /// where its words are waited on. Retiring it puts zero pages back at
  /// once, and its owner frees the range; pins hold only the alias.
  overlay: Option<usize>,
  /// Slots of `base` and `alias` in the signal-safe table of ranges, where
  /// the SIGBUS handler marks a fault past the segment's end.
  slots: [usize; 2],
  /// `RETIRED | RELEASED` flags plus `PIN` times the number of pins.
  state: AtomicUsize,
  /// [`Mapping::zero_in_place`] has run: still ours, no longer the segment.
  zeroed: AtomicBool,
}

// SAFETY: the mapping is a range of shared memory with no thread affinity; all
// access goes through raw pointers whose validity `unmap`'s contract governs.
unsafe impl Send for Mapping {}
// SAFETY: as above; `state` is atomic so `unmap` through `&self` is race-free.
unsafe impl Sync for Mapping {}

/// Copies `len` bytes from `src` to `dst`, as memmove would if it could see
/// that two addresses are one memory.
///
/// Two mappings of one segment are two addresses for the same bytes. When
/// either side lies in a mapping it may alias the other without the addresses
/// overlapping, so the bytes go through a buffer of our own first. The
/// compiler cannot see that aliasing either: given two copies through one
/// buffer it may fuse them into one direct copy (release builds did, and
/// corrupted overlapping copies), so `black_box` hides the buffer from it.
///
/// `callers` is whichever of `src` and `dst` the caller gave: the other is a
/// mapping of ours.
///
/// # Safety
/// `src` is valid for reads and `dst` for writes of `len` bytes.
unsafe fn copy_between(src: *const u8, dst: *mut u8, len: usize, callers: *const u8) -> Result<()> {
  if !registry::overlaps(callers as usize, len) {
    // SAFETY: the caller's side lies in no mapping, so it is memory distinct
    // from the mapping on the other side. Other processes may write
    // meanwhile: shared memory gives no snapshot, as documented.
    unsafe { ptr::copy_nonoverlapping(src, dst, len) };
    return Ok(());
  }
  let mut staged: Vec<u8> = Vec::new();
  staged
    .try_reserve_exact(len)
    .map_err(|_| Error::out_of_memory(len as u64))?;
  // SAFETY: the caller's contract for `src`; `staged` has room for `len`.
  unsafe { ptr::copy_nonoverlapping(src, staged.as_mut_ptr(), len) };
  let staged_ptr = std::hint::black_box(staged.as_ptr());
  // SAFETY: `staged_ptr` is the buffer just filled; `dst` is the caller's.
  unsafe { ptr::copy_nonoverlapping(staged_ptr, dst, len) };
  Ok(())
}

impl Mapping {
  /// Takes ownership of `len` bytes mapped at `ptr` (and of `alias`, the
  /// same bytes mapped shared read-only for a copy-on-write view) and
  /// registers them.
  pub(crate) fn new(
    ptr: *mut u8,
    len: usize,
    access: Access,
    alias: Option<*mut u8>,
  ) -> Arc<Mapping> {
    Mapping::register(ptr, len, access, alias, None)
  }

  /// Takes ownership of the segment mapped over `pages` bytes at `ptr` that
  /// someone else owns (`overlay.rs`), and of `alias`, a mapping of our own
  /// of the same bytes where its words are waited on; registers both.
  #[cfg(unix)]
  pub(crate) fn overlay(
    ptr: *mut u8,
    len: usize,
    pages: usize,
    access: Access,
    alias: *mut u8,
  ) -> Arc<Mapping> {
    // The owner hands a range out again only once it freed it: an entry
    // still there is an overlay whose memory was freed before its owner's
    // finalizer forgot it. Forget it now, without touching the memory.
    for stale in registry::overlapping(ptr as usize, pages) {
      // SAFETY: the owner freed its memory, so nothing reaches it as `stale`.
      unsafe { stale.forget_overlay() };
    }
    Mapping::register(ptr, len, access, Some(alias), Some(pages))
  }

  fn register(
    ptr: *mut u8,
    len: usize,
    access: Access,
    alias: Option<*mut u8>,
    overlay: Option<usize>,
  ) -> Arc<Mapping> {
    os::catch_faults();
    Arc::new_cyclic(|owner| {
      let writable = access == Access::ReadWrite;
      let slots = registry::insert(
        ptr as usize,
        len,
        alias.map(|a| a as usize),
        writable,
        owner,
      );
      Mapping {
        base: ptr,
        len,
        access,
        alias,
        overlay,
        slots,
        state: AtomicUsize::new(0),
        zeroed: AtomicBool::new(false),
      }
    })
  }

  /// Whether the segment is mapped over memory someone else owns (an
  /// in-heap view), rather than at an address of its own.
  pub fn is_overlay(&self) -> bool {
    self.overlay.is_some()
  }

  /// Whether a page of this mapping lay past the end of the segment when it
  /// was touched: another process shrank the segment. Those pages now read
  /// as zeros here and writes to them reach no one (on Linux the fault
  /// handler maps private zero pages there instead of letting SIGBUS kill
  /// the process).
  pub fn was_shrunk(&self) -> bool {
    ranges::check_shrunk(&self.slots, self.len).is_err()
  }

  /// [`Error::Shrunk`] if [`Mapping::was_shrunk`].
  ///
  /// # Errors
  /// [`Error::Shrunk`] when another process shrank the segment under us.
  pub fn check_shrunk(&self) -> Result<()> {
    ranges::check_shrunk(&self.slots, self.len)
  }

  /// The live mapping of this process that holds all of `[addr, addr + len)`,
  /// if any: the memory of a caller's view. One ordered lookup, no scan.
  pub fn containing(addr: usize, len: usize) -> Option<Arc<Mapping>> {
    registry::containing(addr, len)
  }

  /// Where the words of the view of ours that holds `[addr, addr + len)`
  /// are shared, for a call during which the caller's view stays alive (it
  /// is an argument): the same answer as [`Mapping::containing`] without
  /// touching reference counts, for the calls a ping-pong makes each round.
  pub fn place(addr: usize, len: usize) -> Option<registry::Place> {
    registry::place(addr, len)
  }

  /// How many OS mappings this process holds (a copy-on-write view counts
  /// two: itself and its alias).
  pub(crate) fn count() -> usize {
    registry::count()
  }

  /// The first byte, page-aligned; null once unmapped (retired).
  pub fn as_ptr(&self) -> *mut u8 {
    if self.state.load(Ordering::Acquire) & RETIRED != 0 {
      ptr::null_mut()
    } else {
      self.base
    }
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

  /// Whether [`Mapping::unmap`] has run (the OS mapping may outlive it
  /// while pinned, but nothing new can reach it).
  pub fn is_unmapped(&self) -> bool {
    self.as_ptr().is_null()
  }

  /// Whether the caller's view no longer reaches the segment: unmapped, or
  /// zero pages in its place ([`Mapping::zero_in_place`]). Waits on it end
  /// and lookups no longer find it.
  pub fn is_detached(&self) -> bool {
    self.is_unmapped() || self.zeroed.load(Ordering::Acquire)
  }

  /// Keeps the memory mapped until the returned guard drops, so that another
  /// thread may read it; `None` once [`Mapping::unmap`] has run.
  pub fn pin(self: &Arc<Self>) -> Option<Pinned> {
    let mut state = self.state.load(Ordering::Acquire);
    loop {
      if state & RETIRED != 0 {
        return None;
      }
      match self.state.compare_exchange_weak(
        state,
        state + PIN,
        Ordering::AcqRel,
        Ordering::Acquire,
      ) {
        Ok(_) => {
          return Some(Pinned {
            mapping: Arc::clone(self),
          })
        }
        Err(now) => state = now,
      }
    }
  }

  /// Where the byte at `offset` is shared with other processes: in the view
  /// itself, or for a copy-on-write view in its alias. Null once unmapped.
  pub fn shared_ptr(&self, offset: usize) -> *mut u8 {
    if self.is_unmapped() || offset > self.len {
      return ptr::null_mut();
    }
    // SAFETY: `offset <= len` of a live mapping (or its alias, as long).
    unsafe { self.alias.unwrap_or(self.base).add(offset) }
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
    // SAFETY: `dst` is valid for writes of its length; a Rust slice cannot be
    // a view of a segment without unsafe code of the caller's.
    unsafe { self.copy_out(offset, dst.as_mut_ptr(), dst.len()) }
  }

  /// Copies `len` bytes starting at `offset` to `dst`, which may be a view of
  /// this or another mapping (a JavaScript view of the same segment).
  ///
  /// # Safety
  /// `dst` is valid for writes of `len` bytes for the whole call.
  ///
  /// # Errors
  /// As [`Mapping::read_at`], and `ENOMEM` when a staging copy cannot be allocated.
  pub unsafe fn copy_out(&self, offset: usize, dst: *mut u8, len: usize) -> Result<()> {
    let src = self.range(offset, len)?;
    // SAFETY: `range` checked the source; the caller vouches for `dst`.
    unsafe { copy_between(src, dst, len, dst) }
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
    // SAFETY: `src` is valid for reads of its length.
    unsafe { self.copy_in(offset, src.as_ptr(), src.len()) }
  }

  /// Copies `len` bytes from `src`, which may be a view of this or another
  /// mapping, into the mapping at `offset`.
  ///
  /// # Safety
  /// `src` is valid for reads of `len` bytes for the whole call.
  ///
  /// # Errors
  /// As [`Mapping::write_at`], and `ENOMEM` when a staging copy cannot be allocated.
  pub unsafe fn copy_in(&self, offset: usize, src: *const u8, len: usize) -> Result<()> {
    if self.access != Access::ReadWrite {
      return Err(Error::ReadOnly);
    }
    let dst = self.range(offset, len)?;
    // SAFETY: `range` checked the destination; the caller vouches for `src`.
    unsafe { copy_between(src, dst, len, src) }
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

  /// Replaces the mapped bytes with private zero pages, keeping the address
  /// range mapped: for memory that JavaScript can still reach through a
  /// buffer that cannot be detached (a `SharedArrayBuffer`) but must no
  /// longer see the segment through. Writes then go to pages of this process
  /// alone. [`Mapping::unmap`] still frees the range later.
  ///
  /// Returns `false` and does nothing once [`Mapping::unmap`] has run: the
  /// range may already belong to someone else.
  ///
  /// # Errors
  /// The `mmap` error (`ENOMEM`) if the kernel cannot make the zero pages;
  /// the segment then stays mapped.
  #[cfg(unix)]
  pub fn zero_in_place(self: &Arc<Self>) -> Result<bool> {
    // The pin keeps `unmap` (from any thread) from releasing the range
    // while we map over it.
    let Some(pin) = self.pin() else {
      return Ok(false);
    };
    // No lookup finds the view from now on: waits, notifies and copies on
    // it say it is not attached.
    registry::hide(self.base as usize);
    // SAFETY: pinned, so `base`/`len` (and the alias, as long) are still
    // our mappings; the caller accepts that every reader sees zeros from now
    // on. The alias goes too: it would keep the segment mapped (and a
    // deleted segment's memory allocated) until the garbage collector runs.
    unsafe {
      os::zero_over(pin.as_ptr(), pin.len())?;
      if let Some(alias) = self.alias {
        os::zero_over(alias, self.len)?;
      }
    }
    self.zeroed.store(true, Ordering::Release);
    // Waits on the view end (`Detached`), as after an unmap.
    waiter::poke();
    Ok(true)
  }

  /// Unmaps now, or when the last [`Pinned`] drops. Later calls, and the
  /// drop, do nothing.
  ///
  /// # Safety
  /// Nothing may use memory from [`Mapping::as_ptr`] afterwards: callers
  /// first make every view of it unreachable (the binding detaches the
  /// JavaScript `ArrayBuffer`). Pins stay valid until they drop.
  pub unsafe fn unmap(&self) {
    let before = self.state.fetch_or(RETIRED, Ordering::AcqRel);
    if before & RETIRED != 0 {
      return;
    }
    #[cfg(unix)]
    if let Some(pages) = self.overlay {
      // SAFETY: the caller's contract.
      unsafe { self.give_back_overlay(pages) };
    }
    self.retired(before);
  }

  /// Takes a retiring overlay out of the registry and puts zero pages back
  /// over the owner's range.
  ///
  /// # Safety
  /// As [`Mapping::unmap`]; once per mapping.
  #[cfg(unix)]
  unsafe fn give_back_overlay(&self, pages: usize) {
    registry::remove(self.base as usize, self);
    // SAFETY: the caller holds the owner's memory alive for this call (the
    // binding holds the WebAssembly memory's buffer). Pins hold only the
    // alias, so this cannot wait for them. Should the kernel refuse, the
    // overlay stays until the owner frees the range: views keep showing the
    // segment, and nothing faults.
    let _ = unsafe { os::zero_over(self.base, pages) };
  }

  /// As [`Mapping::unmap`], but an overlay that no one has pinned hands its
  /// alias over, unregistered and still mapped, for the next overlay of the
  /// same segment ([`Segment::map_over_reusing`]) instead of unmapping it.
  /// `None` (an ordinary unmap) otherwise.
  ///
  /// # Safety
  /// As [`Mapping::unmap`].
  ///
  /// [`Segment::map_over_reusing`]: crate::Segment::map_over_reusing
  #[cfg(unix)]
  pub unsafe fn unmap_keeping_alias(&self) -> Option<Alias> {
    let (Some(pages), Some(alias)) = (self.overlay, self.alias) else {
      // SAFETY: the caller's contract.
      unsafe { self.unmap() };
      return None;
    };
    // Only from live and unpinned: retired and released in one step, so no
    // pin can come, and `release` will never run to unmap the alias.
    let retired =
      self
        .state
        .compare_exchange(0, RETIRED | RELEASED, Ordering::AcqRel, Ordering::Acquire);
    if retired.is_err() {
      // SAFETY: the caller's contract.
      unsafe { self.unmap() };
      return None;
    }
    registry::remove(alias as usize, self);
    // SAFETY: the caller's contract; retired just now, once.
    unsafe { self.give_back_overlay(pages) };
    Some(Alias::from_raw(alias, self.len, alias_access(self.access)))
  }

  /// Forgets an overlay whose memory its owner already took back (the
  /// garbage collector freed the WebAssembly memory), without touching that
  /// memory, which may hold something else by now; its alias goes as in
  /// [`Mapping::unmap`]. On a mapping of our own it is [`Mapping::unmap`].
  ///
  /// # Safety
  /// As [`Mapping::unmap`].
  pub unsafe fn forget_overlay(&self) {
    if self.overlay.is_none() {
      // SAFETY: the caller's contract.
      return unsafe { self.unmap() };
    }
    let before = self.state.fetch_or(RETIRED, Ordering::AcqRel);
    if before & RETIRED == 0 {
      registry::remove(self.base as usize, self);
      self.retired(before);
    }
  }

  /// After retiring: unmaps now, or lets the last pin do it.
  fn retired(&self, before: usize) {
    if before < PIN {
      self.release();
    } else {
      // A waiter thread holds it: tell the waiters to look, so that the
      // wait ends (`Detached`) and its pin goes.
      waiter::poke();
    }
  }

  /// Unmaps for real, once: reached by whichever of `unmap` and the last
  /// pin's drop comes second.
  fn release(&self) {
    if self.state.fetch_or(RELEASED, Ordering::AcqRel) & RELEASED != 0 {
      return;
    }
    // Out of the registry first: once unmapped, the address may be handed
    // to a new mapping at any moment.
    if self.overlay.is_none() {
      registry::remove(self.base as usize, self);
    }
    if let Some(alias) = self.alias {
      registry::remove(alias as usize, self);
    }
    // SAFETY: `base` (unless an overlay, put back when retired), `alias`
    // and `len` came from `os::map`; the RELEASED flag hands them to exactly
    // one caller, after retirement and with no pin left.
    unsafe {
      if self.overlay.is_none() {
        os::unmap(self.base, self.len);
      }
      if let Some(alias) = self.alias {
        os::unmap(alias, self.len);
      }
    }
  }
}

/// A hold on a [`Mapping`] that keeps its memory mapped (see [`Mapping::pin`]).
#[derive(Debug)]
pub struct Pinned {
  mapping: Arc<Mapping>,
}

impl Pinned {
  /// The first byte; valid for [`Pinned::len`] bytes while this guard lives.
  pub fn as_ptr(&self) -> *mut u8 {
    self.mapping.base
  }

  /// Length in bytes.
  pub fn len(&self) -> usize {
    self.mapping.len
  }

  /// Whether the mapping has no bytes (never true for a live mapping).
  pub fn is_empty(&self) -> bool {
    self.mapping.len == 0
  }

  /// Where the byte at `offset` is shared with other processes (see
  /// [`Mapping::shared_ptr`]); valid while this guard lives.
  pub fn shared_ptr(&self, offset: usize) -> *mut u8 {
    debug_assert!(offset <= self.mapping.len);
    // SAFETY: the pin keeps the view and its alias mapped; `offset <= len`.
    unsafe { self.mapping.alias.unwrap_or(self.mapping.base).add(offset) }
  }

  /// The mapping held.
  pub fn mapping(&self) -> &Arc<Mapping> {
    &self.mapping
  }
}

impl Drop for Pinned {
  fn drop(&mut self) {
    let before = self.mapping.state.fetch_sub(PIN, Ordering::AcqRel);
    if before & RETIRED != 0 && before < 2 * PIN {
      self.mapping.release();
    }
  }
}

impl Drop for Mapping {
  fn drop(&mut self) {
    // SAFETY: whoever drops the last owner can no longer reach the memory.
    unsafe { self.unmap() };
  }
}

#[cfg(all(test, unix))]
mod tests {
  use super::*;
  use crate::test_support::scratch_segment;

  #[test]
  fn zero_in_place_of_a_copy_on_write_view_cuts_its_alias_off_too() {
    let segment = scratch_segment("zero-in-place-alias");
    let writer = segment.map(Access::ReadWrite).unwrap();
    writer.write_at(0, b"seen").unwrap();
    let view = segment.map(Access::CopyOnWrite).unwrap();
    let alias = view.shared_ptr(0);
    assert!(view.zero_in_place().unwrap());
    assert!(view.is_detached());
    let start = view.as_ptr() as usize;
    assert!(Mapping::containing(start, 4).is_none());
    assert!(Mapping::place(start, 4).is_none());
    // SAFETY: the alias stays mapped (as zero pages) until unmap.
    assert_eq!(unsafe { std::slice::from_raw_parts(alias, 4) }, [0; 4]);
    // SAFETY: nothing uses the view's memory afterwards.
    unsafe { view.unmap() };
  }

  #[test]
  fn zero_in_place_keeps_the_range_readable_and_cuts_it_off_the_segment() {
    let segment = scratch_segment("zero-in-place");
    let view = Arc::new(segment.map(Access::ReadWrite).unwrap());
    let other = segment.map(Access::ReadWrite).unwrap();
    view.write_at(0, b"seen").unwrap();
    assert!(view.zero_in_place().unwrap());
    let mut bytes = [1u8; 4];
    view.read_at(0, &mut bytes).unwrap();
    assert_eq!(bytes, [0; 4], "the view reads zeros");
    view.write_at(0, b"mine").unwrap();
    other.read_at(0, &mut bytes).unwrap();
    assert_eq!(
      &bytes, b"seen",
      "writes through it no longer reach the segment"
    );
    // SAFETY: nothing uses the view's memory afterwards.
    unsafe { view.unmap() };
    assert!(
      !view.zero_in_place().unwrap(),
      "an unmapped range is left alone"
    );
  }
}
