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
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

use crate::mapping::Mapping;

/// One OS mapping of ours.
struct Entry {
  len: usize,
  /// The mapping it belongs to (for an alias: the view that owns it).
  owner: Weak<Mapping>,
  /// A copy-on-write view's shared alias: ours, but no caller's view lies
  /// in it, so [`containing`] never answers with it.
  alias: bool,
}

static REGISTRY: RwLock<BTreeMap<usize, Entry>> = RwLock::new(BTreeMap::new());

// Every edit is one call on the map, so it stays consistent even if a
// holder panicked.
fn read() -> RwLockReadGuard<'static, BTreeMap<usize, Entry>> {
  REGISTRY.read().unwrap_or_else(PoisonError::into_inner)
}

fn write() -> RwLockWriteGuard<'static, BTreeMap<usize, Entry>> {
  REGISTRY.write().unwrap_or_else(PoisonError::into_inner)
}

/// Records `[start, start + len)`, just mapped for `owner`.
pub(crate) fn insert(start: usize, len: usize, owner: Weak<Mapping>, alias: bool) {
  let previous = write().insert(start, Entry { len, owner, alias });
  debug_assert!(previous.is_none(), "two live mappings at {start:#x}");
}

/// Forgets the mapping at `start`, about to be unmapped.
pub(crate) fn remove(start: usize) {
  write().remove(&start);
}

/// How many OS mappings this process holds (aliases included).
pub(crate) fn count() -> usize {
  read().len()
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
  let map = read();
  at_or_before(&map, last).is_some_and(|(start, entry)| start.saturating_add(entry.len) > addr)
}

/// The live (not unmapped) mapping that holds all of `[addr, addr + len)`;
/// never an alias.
pub(crate) fn containing(addr: usize, len: usize) -> Option<Arc<Mapping>> {
  let end = addr.checked_add(len)?;
  let map = read();
  let (start, entry) = at_or_before(&map, addr)?;
  if entry.alias || end > start.saturating_add(entry.len) {
    return None;
  }
  entry
    .owner
    .upgrade()
    .filter(|mapping| !mapping.is_unmapped())
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
