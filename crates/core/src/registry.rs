//! Every live mapping of this process, once, keyed by its first byte.
//!
//! Only [`Mapping`] writes here: it inserts itself right after the OS maps it
//! and removes itself right before the OS unmaps it, so the registry lists
//! exactly the address ranges that are ours, and an address the kernel
//! hands out again can never meet the entry of the mapping that held it
//! before. One lookup serves everyone: copy staging (does a buffer lie in a
//! mapping?), the map budget (how many are there?), and `wait`, `notify` and
//! `SharedMutex` (which mapping holds this word?).

use std::collections::BTreeMap;
use std::ptr;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

use crate::error::Result;
use crate::mapping::Mapping;
use crate::ranges;

/// One OS mapping of ours.
struct Entry {
  len: usize,
  /// Its slot in the signal-safe table of ranges.
  slot: usize,
  /// The mapping it belongs to (for an alias: the view that owns it).
  owner: Weak<Mapping>,
  /// A copy-on-write view's shared alias, or a view turned into zero pages
  /// ([`hide`]): ours, but no caller's view of the segment lies in it, so
  /// [`containing`] and [`place`] never answer with it.
  alias: bool,
  /// For a view: what [`place`] answers, copied here so that the hot calls
  /// need not touch the mapping's reference counts.
  place: Place,
}

/// Where the words of a caller's view are shared with other processes, found
/// by [`Mapping::place`] for a call that ends before the view can go (the
/// view is an argument of the call, so its memory stays mapped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
  start: usize,
  len: usize,
  /// The view's first byte as other processes share it: the view, or its alias.
  shared: usize,
  writable: bool,
  /// The slots of the view and its alias in the table of ranges.
  slots: [usize; 2],
}

impl Place {
  /// Where the byte at `addr` (in the view) is shared with other processes.
  pub fn shared_ptr(&self, addr: usize) -> *mut u8 {
    (self.shared + (addr - self.start)) as *mut u8
  }

  /// Whether writes through the view reach the segment.
  pub fn is_writable(&self) -> bool {
    self.writable
  }

  /// Whether a page of the view (or its alias) faulted past the segment's
  /// end ([`Mapping::was_shrunk`]).
  pub fn was_shrunk(&self) -> bool {
    ranges::check_shrunk(&self.slots, self.len).is_err()
  }

  /// [`Error::Shrunk`] if [`Place::was_shrunk`].
  ///
  /// # Errors
  /// As said.
  pub fn check_shrunk(&self) -> Result<()> {
    ranges::check_shrunk(&self.slots, self.len)
  }
}

struct Registry {
  map: BTreeMap<usize, Entry>,
  /// Slots of the table of ranges given back, to hand out again.
  free_slots: Vec<usize>,
  /// The first slot never handed out.
  next_slot: usize,
}

static REGISTRY: RwLock<Registry> = RwLock::new(Registry {
  map: BTreeMap::new(),
  free_slots: Vec::new(),
  next_slot: 0,
});

// Each edit leaves the registry consistent at every step a panic could
// interrupt, so a poisoned lock is still safe to use.
fn read() -> RwLockReadGuard<'static, Registry> {
  REGISTRY.read().unwrap_or_else(PoisonError::into_inner)
}

fn write() -> RwLockWriteGuard<'static, Registry> {
  REGISTRY.write().unwrap_or_else(PoisonError::into_inner)
}

/// No slot: the table of ranges is full, so faults there are not ours.
pub(crate) const NO_SLOT: usize = usize::MAX;

/// Records `[start, start + len)`, just mapped for `owner`, and its `alias`
/// (a copy-on-write view's shared mapping of the same bytes); returns their
/// slots in the signal-safe table of ranges.
pub(crate) fn insert(
  start: usize,
  len: usize,
  alias: Option<usize>,
  writable: bool,
  owner: &Weak<Mapping>,
) -> [usize; 2] {
  let mut registry = write();
  let claim = |registry: &mut Registry, at: usize| {
    let slot = registry.free_slots.pop().unwrap_or_else(|| {
      registry.next_slot += 1;
      registry.next_slot - 1
    });
    if ranges::claim(slot, at, len) {
      slot
    } else {
      registry.free_slots.push(slot);
      NO_SLOT
    }
  };
  let slots = [
    claim(&mut registry, start),
    alias.map_or(NO_SLOT, |alias| claim(&mut registry, alias)),
  ];
  let place = Place {
    start,
    len,
    shared: alias.unwrap_or(start),
    writable,
    slots,
  };
  let mut add = |at: usize, slot: usize, is_alias: bool| {
    let entry = Entry {
      len,
      slot,
      owner: owner.clone(),
      alias: is_alias,
      place,
    };
    let previous = registry.map.insert(at, entry);
    debug_assert!(previous.is_none(), "two live mappings at {at:#x}");
  };
  add(start, slots[0], false);
  if let Some(alias) = alias {
    add(alias, slots[1], true);
  }
  slots
}

/// Forgets the mapping at `start`, about to be unmapped, if `owner` still
/// holds it (an overlay's entry may already be a newer overlay's).
pub(crate) fn remove(start: usize, owner: &Mapping) {
  let mut registry = write();
  let owned = registry
    .map
    .get(&start)
    .is_some_and(|entry| ptr::eq(entry.owner.as_ptr(), owner));
  if let Some(entry) = owned.then(|| registry.map.remove(&start)).flatten() {
    if entry.slot != NO_SLOT {
      ranges::release(entry.slot);
      registry.free_slots.push(entry.slot);
    }
  }
}

/// Stops answering lookups for the view at `start`, whose memory became
/// zero pages of its own (`Mapping::zero_in_place`): the range stays ours,
/// and counted, until it is unmapped.
#[cfg(unix)]
pub(crate) fn hide(start: usize) {
  if let Some(entry) = write().map.get_mut(&start) {
    entry.alias = true;
  }
}

/// The live mappings with a view (not an alias) overlapping
/// `[addr, addr + len)`, which must be overlays whose owner freed and
/// reused their memory (see `Mapping::overlay`).
#[cfg(unix)]
pub(crate) fn overlapping(addr: usize, len: usize) -> Vec<Arc<Mapping>> {
  let end = addr.saturating_add(len);
  let registry = read();
  let first = at_or_before(&registry.map, addr).map_or(addr, |(start, _)| start);
  registry
    .map
    .range(first..end)
    .filter(|(&start, entry)| !entry.alias && start.saturating_add(entry.len) > addr)
    .filter_map(|(_, entry)| entry.owner.upgrade())
    .filter(|mapping| mapping.is_overlay())
    .collect()
}

/// How many OS mappings this process holds (aliases included).
pub(crate) fn count() -> usize {
  read().map.len()
}

/// The last mapping that starts at or before `addr`: mappings never
/// overlap, so it is the only one that can hold `addr`.
fn at_or_before(map: &BTreeMap<usize, Entry>, addr: usize) -> Option<(usize, &Entry)> {
  map
    .range(..=addr)
    .next_back()
    .map(|(&start, entry)| (start, entry))
}

/// Whether `[addr, addr + len)` overlaps any mapping of ours.
pub(crate) fn overlaps(addr: usize, len: usize) -> bool {
  if len == 0 {
    return false;
  }
  let last = addr.saturating_add(len - 1);
  let registry = read();
  at_or_before(&registry.map, last)
    .is_some_and(|(start, entry)| start.saturating_add(entry.len) > addr)
}

/// Where the view of ours that holds all of `[addr, addr + len)` shares its
/// words; never an alias. No reference count changes: the caller's view
/// keeps the mapping (and this entry) alive for the call.
pub(crate) fn place(addr: usize, len: usize) -> Option<Place> {
  let end = addr.checked_add(len)?;
  let registry = read();
  let (start, entry) = at_or_before(&registry.map, addr)?;
  (!entry.alias && end <= start.saturating_add(entry.len)).then_some(entry.place)
}

/// The live (not unmapped) mapping that holds all of `[addr, addr + len)`;
/// never an alias.
pub(crate) fn containing(addr: usize, len: usize) -> Option<Arc<Mapping>> {
  let end = addr.checked_add(len)?;
  let registry = read();
  let (start, entry) = at_or_before(&registry.map, addr)?;
  if entry.alias || end > start.saturating_add(entry.len) {
    return None;
  }
  entry
    .owner
    .upgrade()
    .filter(|mapping| !mapping.is_detached())
}

#[cfg(test)]
mod tests {
  use crate::test_support::scratch_segment;
  use crate::{Access, Mapping};

  #[test]
  fn a_mapping_is_found_by_any_range_inside_it_until_unmapped() {
    let segment = scratch_segment("registry-find");
    let view = segment.map(Access::ReadWrite).unwrap();
    let start = view.as_ptr() as usize;
    let found = Mapping::containing(start + 100, 8).unwrap();
    assert!(std::ptr::eq(&*found, &*view));
    assert!(Mapping::containing(start, 4096).is_some());
    assert!(Mapping::containing(start + 4090, 8).is_none());
    assert!(Mapping::containing(start - 1, 2).is_none());
    assert!(super::overlaps(start - 1, 2));
    drop(found);
    // SAFETY: nothing reads the memory afterwards.
    unsafe { view.unmap() };
    assert!(Mapping::containing(start + 100, 8).is_none());
  }

  #[test]
  fn a_copy_on_write_view_owns_its_alias() {
    let segment = scratch_segment("registry-alias");
    let view = segment.map(Access::CopyOnWrite).unwrap();
    let alias = view.shared_ptr(0) as usize;
    assert_ne!(alias, view.as_ptr() as usize);
    // The alias is ours (copies stage through it) but no caller's view.
    assert!(super::overlaps(alias, 4));
    assert!(Mapping::containing(alias, 4).is_none());
    // The hot calls' lookup gives the same answer without reference counts.
    let start = view.as_ptr() as usize;
    let place = Mapping::place(start + 8, 4).unwrap();
    assert_eq!(place.shared_ptr(start + 8) as usize, alias + 8);
    assert!(!place.is_writable() && !place.was_shrunk());
    assert!(Mapping::place(alias, 4).is_none());
    // SAFETY: nothing reads the memory afterwards.
    unsafe { view.unmap() };
    assert!(view.shared_ptr(0).is_null());
  }

  #[test]
  fn an_address_handed_out_again_finds_the_new_mapping() {
    let segment = scratch_segment("registry-reuse");
    let mut reused = 0;
    for _ in 0..50 {
      let old = segment.map(Access::CopyOnWrite).unwrap();
      let start = old.as_ptr() as usize;
      drop(old);
      let new = segment.map(Access::ReadWrite).unwrap();
      // Other tests map concurrently: only an address `new` holds is sure.
      if new.as_ptr() as usize == start {
        let found = Mapping::containing(start, 4).unwrap();
        assert!(std::ptr::eq(&*found, &*new));
        assert_eq!(found.access(), Access::ReadWrite);
        assert_eq!(found.shared_ptr(0), new.as_ptr());
        reused += 1;
      }
    }
    // The kernel hands the freed range out again (the race this guards).
    assert!(reused > 0);
  }
}
