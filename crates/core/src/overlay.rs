//! In-heap views: the segment mapped over memory someone else allocated.
//!
//! Where the JavaScript engine refuses buffers over memory it did not
//! allocate (Electron's V8 memory cage), the binding asks V8 for memory it
//! will never move, detach or hand to anything else (a private WebAssembly
//! memory) and maps the segment over it with `MAP_FIXED`: V8's own buffer
//! then IS the segment.
//!
//! The range `[addr, addr + capacity)` stays the owner's throughout:
//! - [`Segment::map_over`] replaces its first pages with the segment;
//! - [`Mapping::unmap`] (detach, close) puts private zero pages back, so that
//!   views which cannot be detached read zeros instead of the segment; the
//!   owner later frees the range as it frees any of its memory (V8 unmaps it,
//!   or decommits it with a fresh `mmap` inside its sandbox);
//! - [`Mapping::forget_overlay`] is for an owner that freed it first: the
//!   mapping is forgotten without touching memory that may be reused.
//!
//! An overlay cannot be pinned ([`Mapping::pin`]): its owner frees the range
//! whatever another thread holds, so waits use a mapping of our own.

use std::mem::ManuallyDrop;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::mapping::{Access, Mapping};
use crate::os;
use crate::segment::{mappable_len, Segment};

/// A retired overlay's own mapping of the segment (its alias, where waits
/// read), handed over by [`Mapping::unmap_keeping_alias`] so that the next
/// overlay of the same segment ([`Segment::map_over_reusing`]) need not map
/// it again. Unmapped when dropped unused.
#[derive(Debug)]
pub struct Alias {
  ptr: *mut u8,
  len: usize,
  access: Access,
}

impl Alias {
  /// Takes ownership of the alias of `len` bytes at `ptr`, mapped with `access`.
  pub(crate) fn from_raw(ptr: *mut u8, len: usize, access: Access) -> Alias {
    Alias { ptr, len, access }
  }

  /// Hands the mapping to a new owner.
  fn into_raw(self) -> *mut u8 {
    ManuallyDrop::new(self).ptr
  }
}

impl Drop for Alias {
  fn drop(&mut self) {
    // SAFETY: `ptr`/`len` came from `os::map`; this is their only owner,
    // unregistered, and no pin or view reaches them any more.
    unsafe { os::unmap(self.ptr, self.len) };
  }
}

/// How an overlay of `access` maps its alias: shared, writable only if the
/// overlay is (a copy-on-write overlay's alias is how it sees others' writes).
pub(crate) fn alias_access(access: Access) -> Access {
  if access == Access::ReadWrite {
    Access::ReadWrite
  } else {
    Access::ReadOnly
  }
}

impl Segment {
  /// Maps the segment over the first bytes of `[addr, addr + capacity)`,
  /// rounded up to whole pages; the rest of the range is left as it was.
  /// The mapping also gets an alias of our own, where waiter threads read
  /// its words: the owner may free the range whatever they hold.
  ///
  /// # Safety
  /// The range is page-aligned memory of this process that its owner keeps
  /// allocated, and that nothing but this mapping's users reads or writes,
  /// until the returned mapping is unmapped (which puts zero pages back) or,
  /// once the owner has freed the range, forgotten with
  /// [`Mapping::forget_overlay`]. Dropping the mapping unmaps it.
  ///
  /// # Errors
  /// [`Error::InvalidArgument`] when `addr` is not page-aligned or the range
  /// is shorter than the segment in whole pages; otherwise as [`Segment::map`].
  pub unsafe fn map_over(
    &self,
    addr: *mut u8,
    capacity: usize,
    access: Access,
  ) -> Result<Arc<Mapping>> {
    // SAFETY: the caller's contract.
    unsafe { self.map_over_reusing(addr, capacity, access, None) }
  }

  /// [`Segment::map_over`], with the alias of an earlier overlay of this
  /// segment, if it still fits (same length and access), instead of a new
  /// one; one that does not fit is unmapped.
  ///
  /// # Safety
  /// As [`Segment::map_over`]; `alias` came from an overlay of this segment.
  ///
  /// # Errors
  /// As [`Segment::map_over`].
  pub unsafe fn map_over_reusing(
    &self,
    addr: *mut u8,
    capacity: usize,
    access: Access,
    alias: Option<Alias>,
  ) -> Result<Arc<Mapping>> {
    let (handle, name, size, read_only) = self.parts();
    if read_only && access == Access::ReadWrite {
      return Err(Error::ReadOnly);
    }
    let len = mappable_len(handle, name, size, 2)?;
    let page = os::page_size();
    let pages = len.div_ceil(page).saturating_mul(page);
    if addr.is_null() || !(addr as usize).is_multiple_of(page) || capacity < pages {
      return Err(Error::InvalidArgument(format!(
        "Cannot map {len} bytes over {capacity} bytes at {addr:p}: the range must be page-aligned and hold {pages} bytes"
      )));
    }
    let for_name = |error: Error| error.for_name(name.os_name());
    let wanted = alias_access(access);
    let alias = match alias {
      Some(alias) if alias.len == len && alias.access == wanted => alias,
      _ => Alias::from_raw(os::map(handle, len, wanted).map_err(for_name)?, len, wanted),
    };
    // SAFETY: the caller's contract for the range; `pages` ends in the page
    // holding the segment's last byte, and `mappable_len` checked that the
    // object is that long, so no mapped page lies wholly past its end.
    if let Err(error) = unsafe { os::map_over(addr, handle, pages, access) } {
      // SAFETY: a failed MAP_FIXED may leave a hole: fill the owner's range
      // back with zero pages (its contract). The alias drops, unmapped.
      let _ = unsafe { os::zero_over(addr, pages) };
      return Err(for_name(error));
    }
    Ok(Mapping::overlay(addr, len, pages, access, alias.into_raw()))
  }
}

#[cfg(test)]
mod tests {
  use rustix::mm::{mmap_anonymous, munmap, MapFlags, ProtFlags};

  use super::*;
  use crate::test_support::scratch_segment;

  /// 64 KiB of private memory standing in for V8's, freed on drop.
  struct Owned(*mut u8);

  const OWNED: usize = 64 * 1024;

  impl Owned {
    fn new() -> Owned {
      // SAFETY: a fresh anonymous mapping at an address the kernel picks.
      let ptr = unsafe {
        mmap_anonymous(
          std::ptr::null_mut(),
          OWNED,
          ProtFlags::READ | ProtFlags::WRITE,
          MapFlags::PRIVATE,
        )
      }
      .unwrap();
      Owned(ptr.cast())
    }

    fn byte(&self, at: usize) -> u8 {
      // SAFETY: `at < OWNED`, and the range stays mapped while `self` lives.
      unsafe { self.0.add(at).read_volatile() }
    }

    fn set(&self, at: usize, value: u8) {
      // SAFETY: as in `byte`.
      unsafe { self.0.add(at).write_volatile(value) }
    }
  }

  impl Drop for Owned {
    fn drop(&mut self) {
      // SAFETY: the range `new` mapped, unmapped once.
      unsafe { munmap(self.0.cast(), OWNED) }.unwrap();
    }
  }

  #[test]
  fn an_overlay_is_the_segment_until_unmapped_then_zeros() {
    let segment = scratch_segment("overlay-shared");
    let direct = segment.map(Access::ReadWrite).unwrap();
    let owned = Owned::new();
    owned.set(8192, 7);
    // SAFETY: `owned` outlives the overlay, which nothing else uses.
    let overlay = unsafe { segment.map_over(owned.0, OWNED, Access::ReadWrite) }.unwrap();
    assert!(overlay.is_overlay());
    assert_eq!(overlay.as_ptr(), owned.0);
    direct.write_at(10, b"in").unwrap();
    assert_eq!(owned.byte(10), b'i');
    owned.set(20, 42);
    let mut byte = [0];
    direct.read_at(20, &mut byte).unwrap();
    assert_eq!(byte, [42]);
    assert_eq!(
      owned.byte(8192),
      7,
      "beyond the segment's pages the owner's memory is untouched"
    );
    // SAFETY: nothing uses the overlay's memory as the segment any more.
    unsafe { overlay.unmap() };
    assert!(overlay.is_unmapped());
    assert_eq!(owned.byte(10), 0, "unmapped, the range reads zeros");
    owned.set(10, 1);
    direct.read_at(10, &mut byte).unwrap();
    assert_eq!(byte, [b'i'], "writes no longer reach the segment");
  }

  #[test]
  fn an_unpinned_overlay_hands_its_alias_to_the_next_one() {
    let segment = scratch_segment("overlay-alias");
    let owned = Owned::new();
    // SAFETY: `owned` outlives both overlays, which nothing else uses.
    let first = unsafe { segment.map_over(owned.0, OWNED, Access::ReadWrite) }.unwrap();
    first.write_at(0, b"a").unwrap();
    let alias = first.pin().unwrap().shared_ptr(0);
    // SAFETY: as above.
    let kept = unsafe { first.unmap_keeping_alias() }.expect("no pin: the alias is kept");
    assert!(first.is_unmapped());
    assert_eq!(
      owned.byte(0),
      0,
      "zero pages are back over the owner's range"
    );
    assert!(
      Mapping::containing(alias as usize, 1).is_none(),
      "a kept alias is no mapping's"
    );
    // SAFETY: as above; `kept` came from an overlay of this segment.
    let second =
      unsafe { segment.map_over_reusing(owned.0, OWNED, Access::ReadWrite, Some(kept)) }.unwrap();
    assert_eq!(owned.byte(0), b'a', "the segment again");
    assert_eq!(
      second.pin().unwrap().shared_ptr(0),
      alias,
      "waits read the alias taken over"
    );
    drop(first);
    let pin = second.pin().unwrap();
    assert!(
      // SAFETY: as above.
      unsafe { second.unmap_keeping_alias() }.is_none(),
      "a pinned overlay keeps its alias for the pin"
    );
    // SAFETY: the pin keeps the alias mapped.
    assert_eq!(unsafe { pin.shared_ptr(0).read_volatile() }, b'a');
    drop(pin);
    // A copy-on-write overlay's alias is read-only: a writable one is not reused.
    // SAFETY: as above.
    let third = unsafe { segment.map_over(owned.0, OWNED, Access::CopyOnWrite) }.unwrap();
    // SAFETY: as above.
    let read_only = unsafe { third.unmap_keeping_alias() }.unwrap();
    // SAFETY: as above.
    let fourth =
      unsafe { segment.map_over_reusing(owned.0, OWNED, Access::ReadWrite, Some(read_only)) }
        .unwrap();
    fourth.write_at(1, b"w").unwrap();
    let pinned = fourth.pin().unwrap();
    // SAFETY: the pin keeps the alias mapped; a read-only one would fault here.
    unsafe { pinned.shared_ptr(2).write_volatile(b'v') };
    assert_eq!(
      (owned.byte(1), owned.byte(2)),
      (b'w', b'v'),
      "a writable overlay got a writable alias of its own"
    );
  }

  #[test]
  fn a_forgotten_overlay_leaves_the_memory_alone() {
    let segment = scratch_segment("overlay-forget");
    let owned = Owned::new();
    // SAFETY: as above.
    let overlay = unsafe { segment.map_over(owned.0, OWNED, Access::ReadWrite) }.unwrap();
    overlay.write_at(0, b"x").unwrap();
    // SAFETY: as above; the owner "freed" nothing here, so the segment
    // must still show through: proof that nothing was touched.
    unsafe { overlay.forget_overlay() };
    assert!(overlay.is_unmapped());
    drop(overlay);
    assert_eq!(owned.byte(0), b'x');
  }

  #[test]
  fn a_pin_keeps_the_alias_but_unmap_puts_zeros_back_at_once() {
    let segment = scratch_segment("overlay-pin");
    let owned = Owned::new();
    // SAFETY: as above.
    let overlay = unsafe { segment.map_over(owned.0, OWNED, Access::ReadWrite) }.unwrap();
    overlay.write_at(0, b"p").unwrap();
    let pin = overlay.pin().unwrap();
    assert_ne!(
      pin.shared_ptr(0),
      owned.0,
      "waits read the alias, never the owner's memory"
    );
    // SAFETY: as above.
    unsafe { overlay.unmap() };
    assert_eq!(
      owned.byte(0),
      0,
      "the owner's range is zeros at once, pin or not"
    );
    // SAFETY: the pin keeps the alias mapped.
    assert_eq!(unsafe { pin.shared_ptr(0).read_volatile() }, b'p');
    drop(pin);
  }

  #[test]
  fn a_range_handed_out_again_forgets_the_stale_overlay() {
    let segment = scratch_segment("overlay-reuse");
    let owned = Owned::new();
    // SAFETY: as above; the second call stands for an owner that freed the
    // range (its finalizer not yet run) and handed it out again.
    let stale = unsafe { segment.map_over(owned.0, OWNED, Access::ReadWrite) }.unwrap();
    stale.write_at(0, b"s").unwrap();
    // SAFETY: as above.
    let fresh = unsafe { segment.map_over(owned.0, OWNED, Access::ReadWrite) }.unwrap();
    assert!(stale.is_unmapped());
    let found = Mapping::containing(owned.0 as usize, 4).unwrap();
    assert!(Arc::ptr_eq(&found, &fresh));
    drop(found);
    drop(stale);
    assert_eq!(
      owned.byte(0),
      b's',
      "forgetting the stale one touched nothing"
    );
    drop(fresh);
    assert_eq!(owned.byte(0), 0);
  }

  #[test]
  fn map_over_checks_alignment_and_room() {
    let segment = scratch_segment("overlay-checks");
    let owned = Owned::new();
    // SAFETY: both calls are refused before mapping anything.
    let misaligned =
      unsafe { segment.map_over(owned.0.wrapping_add(1), OWNED - 1, Access::ReadWrite) };
    assert_eq!(misaligned.unwrap_err().code(), "ERR_INVALID_ARG_VALUE");
    // SAFETY: as above.
    let short = unsafe { segment.map_over(owned.0, 100, Access::ReadWrite) };
    assert_eq!(short.unwrap_err().code(), "ERR_INVALID_ARG_VALUE");
    assert_eq!(owned.byte(0), 0);
  }
}
