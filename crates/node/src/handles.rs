//! The open `SharedMemory` handles of this thread, by id. JavaScript holds
//! the id (a number); the segment state lives here, and a finalizer on the
//! `SharedMemory` object closes the handle should the object be dropped
//! open.
//!
//! Why not an external that owns the state and frees it in its finalizer:
//! then every handle, closed or not, costs the garbage collector weak
//! callbacks when it dies (the external's own, in Node-API, and its
//! finalizer's: ~0.6 µs a handle, more than a tenth of a whole
//! create-to-delete cycle). Here a handle carries a finalizer only while it
//! is open: `close` frees the state and deletes the finalizer with it, so a
//! closed handle is a plain object to the collector.
//!
//! An id is a slot's index and that slot's generation, which every removal
//! bumps: a closed handle's id never finds the handle that reuses its slot,
//! and a number that is no live id finds nothing. Ids are per thread, as
//! Node-API envs are (one env per thread), and every call and finalizer of
//! an env runs on its thread.

use std::cell::RefCell;
use std::ptr::NonNull;

use napi::sys;

use crate::segment::NativeSegment;

/// What a handle's id stands for while it is open.
pub(crate) type Cell = RefCell<NativeSegment>;

/// A handle's id (never 0: generations start at 1). It fits a pointer, for
/// the finalizer's data, and a JavaScript number exactly.
pub(crate) type Id = usize;

/// Bits of an id that hold the slot index (16 Mi handles open at once on
/// 64-bit targets) and the generation: 53 bits in all, or a pointer's 32.
const INDEX_BITS: u32 = if usize::BITS > 32 { 24 } else { 16 };
const GENERATION_BITS: u32 = if usize::BITS > 32 { 29 } else { 16 };
const INDEX_MASK: usize = (1 << INDEX_BITS) - 1;
/// The largest generation an id holds: a slot that reaches it is retired.
const MAX_GENERATION: usize = (1 << GENERATION_BITS) - 1;

/// The id a JavaScript number stands for, if it can be one.
pub(crate) fn id_of(number: f64) -> Option<Id> {
  let limit = (1u64 << (INDEX_BITS + GENERATION_BITS)) as f64;
  (number >= 1.0 && number < limit && number.fract() == 0.0).then_some(number as Id)
}

/// One open handle's state.
pub(crate) struct Open {
  /// Boxed so that its address stays put while the table grows.
  pub(crate) segment: Box<Cell>,
  /// The finalizer that closes the handle if it is dropped open; null until
  /// it is attached. Whoever removes the entry deletes it.
  pub(crate) finalizer: sys::napi_ref,
}

struct Slot {
  generation: usize,
  open: Option<Open>,
}

#[derive(Default)]
struct Table {
  slots: Vec<Slot>,
  /// Indices of empty slots, reused first.
  free: Vec<usize>,
}

thread_local! {
  static TABLE: RefCell<Table> = RefCell::default();
}

fn split(id: Id) -> (usize, usize) {
  (id & INDEX_MASK, id >> INDEX_BITS)
}

/// Files `segment` and returns its id; hands it back when every id is taken.
pub(crate) fn insert(segment: NativeSegment) -> Result<Id, Box<Cell>> {
  let segment = Box::new(RefCell::new(segment));
  TABLE.with_borrow_mut(|table| {
    let index = match table.free.pop() {
      Some(index) => index,
      None if table.slots.len() <= INDEX_MASK => {
        table.slots.push(Slot {
          generation: 1,
          open: None,
        });
        table.slots.len() - 1
      }
      None => return Err(segment),
    };
    let slot = &mut table.slots[index];
    slot.open = Some(Open {
      segment,
      finalizer: std::ptr::null_mut(),
    });
    Ok(slot.generation << INDEX_BITS | index)
  })
}

/// Records the finalizer of the handle `id`.
pub(crate) fn set_finalizer(id: Id, finalizer: sys::napi_ref) {
  TABLE.with_borrow_mut(|table| {
    if let Some(open) = slot_of(table, id).and_then(|slot| slot.open.as_mut()) {
      open.finalizer = finalizer;
    }
  });
}

/// The state of the open handle `id`; `None` once it is closed.
///
/// The pointer stays valid until [`remove`] takes the entry: only `close`
/// and the handle's finalizer do, and neither can run for a handle while a
/// call that received it is running (calls run no JavaScript, and the
/// handle is an argument, so it is alive).
pub(crate) fn get(id: Id) -> Option<NonNull<Cell>> {
  TABLE.with_borrow(|table| {
    let (index, generation) = split(id);
    let slot = table.slots.get(index)?;
    let open = slot
      .open
      .as_ref()
      .filter(|_| slot.generation == generation)?;
    Some(NonNull::from(&*open.segment))
  })
}

/// Takes the open handle `id` out of the table; `None` if it was closed.
pub(crate) fn remove(id: Id) -> Option<Open> {
  TABLE.with_borrow_mut(|table| {
    let (index, _) = split(id);
    let slot = slot_of(table, id)?;
    let open = slot.open.take()?;
    slot.generation += 1;
    if slot.generation <= MAX_GENERATION {
      table.free.push(index);
    }
    Some(open)
  })
}

fn slot_of(table: &mut Table, id: Id) -> Option<&mut Slot> {
  let (index, generation) = split(id);
  table
    .slots
    .get_mut(index)
    .filter(|slot| slot.generation == generation)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn ids_split_back_and_fit_a_number() {
    let id = 5usize << INDEX_BITS | 3;
    assert_eq!(split(id), (3, 5));
    assert_eq!(id_of(id as f64), Some(id));
    let largest = MAX_GENERATION << INDEX_BITS | INDEX_MASK;
    assert_eq!(id_of(largest as f64), Some(largest));
    assert!((largest as f64) < 2f64.powi(53));
    for not_an_id in [
      0.0,
      -1.0,
      0.5,
      f64::NAN,
      f64::INFINITY,
      (largest + 1) as f64,
    ] {
      assert_eq!(id_of(not_an_id), None, "{not_an_id}");
    }
  }
}
