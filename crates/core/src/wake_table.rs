//! Cross-process wake-ups where the OS has no shared futex (Windows): who
//! sleeps on which word of a segment, kept in a small table that every
//! process attached to the segment maps, plus the names of the kernel
//! objects the sleepers block on. Plain Rust, tested on every platform.
//!
//! The table is an array of 64-bit slots, each `(key, sleepers)`: `key` is
//! the word (its offset in the segment / 4, plus 1; 0 marks a free slot) and
//! `sleepers` how many threads announced that they sleep on it and were not
//! yet chosen by a notifier. A word's slots lie in a window of `PROBES`
//! slots that starts at its hash; a word may hold several slots of its
//! window at once (a sleeper claims the first free one it meets), so readers
//! always look at the whole window.
//!
//! The sleepers of one word block on one named semaphore. The protocol:
//!
//! - a sleeper opens the semaphore, calls [`WakeTable::enter`], checks the
//!   word and, if it still holds the expected value, blocks on the
//!   semaphore;
//! - a notifier (after the caller changed the word) calls
//!   [`WakeTable::take`], which removes up to `count` sleepers from the
//!   table, and releases that many units of the semaphore; that number is
//!   what `notify` returns, and when no one sleeps nothing reaches the
//!   kernel;
//! - a sleeper that stops early (timeout, or the word had changed) calls
//!   [`WakeTable::leave`]: either it withdraws one sleeper of its word, or a
//!   notifier already took them all and a unit is on its way, which it
//!   consumes so that no later sleeper wakes for nothing.
//!
//! No wake-up is lost: `enter` ends and `take` begins with a full fence
//! (`take`'s also covers callers that changed the word without an atomic),
//! so either the sleeper's last look at the word sees the change, or the
//! notifier's look at the table sees the sleeper. Sleepers of one word are interchangeable, so which of them
//! a unit wakes does not matter. `loom` checks this below.

// The loom build runs only the protocol's models.
#![cfg_attr(loom, allow(dead_code))]

#[cfg(loom)]
use loom::sync::atomic::{fence, AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{fence, AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// Slots in a segment's table: one 4 KiB page.
pub(crate) const SLOTS: usize = 512;
/// Bytes of a segment's table (mapped by the Windows backend).
#[cfg(windows)]
pub(crate) const TABLE_BYTES: usize = SLOTS * 8;
/// How many slots, from a word's hash on, may hold the word.
const PROBES: usize = 32;
/// The low bits of a slot count sleepers; the high bits are the key.
const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// The largest key: offsets up to 4 TiB.
const MAX_KEY: u64 = (1 << (64 - COUNT_BITS)) - 1;

/// The kernel object names that carry one segment's wake-ups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WakeNames {
  table: String,
}

impl WakeNames {
  /// The names for the segment the OS knows as `os_name` (`Local\frames`).
  /// They live in the segment's namespace (`Global\` segments wake across
  /// sessions); a `\` after the namespace would name an object directory,
  /// so the parts are joined with dots.
  pub(crate) fn for_segment(os_name: &str) -> WakeNames {
    let namespace = if os_name.starts_with("Global\\") {
      "Global\\"
    } else {
      "Local\\"
    };
    let digest = Sha256::digest(os_name.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    WakeNames {
      table: format!("{namespace}named-shm.wake.{hex}"),
    }
  }

  /// The file mapping that holds the table.
  pub(crate) fn table(&self) -> &str {
    &self.table
  }

  /// The semaphore the sleepers on the word at `offset` block on.
  pub(crate) fn semaphore(&self, offset: u64) -> String {
    format!("{}.{offset}", self.table)
  }
}

/// How [`WakeTable::leave`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Left {
  /// The sleeper withdrew itself: nothing is on its way.
  Withdrawn,
  /// A notifier had taken every sleeper of the word: one unit of the
  /// semaphore is (or will be) there for this sleeper to consume.
  Granted,
}

/// The window of a word's table is full of other words' sleepers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TableFull;

/// A segment's table of sleepers, over memory every process maps.
pub(crate) struct WakeTable<'a> {
  slots: &'a [AtomicU64],
}

fn count_of(slot: u64) -> u64 {
  slot & COUNT_MASK
}

fn key_of(slot: u64) -> u64 {
  slot >> COUNT_BITS
}

impl<'a> WakeTable<'a> {
  /// The table in `slots` (all zero when new). Tests pass a few slots;
  /// segments [`SLOTS`].
  pub(crate) fn new(slots: &'a [AtomicU64]) -> WakeTable<'a> {
    assert!(!slots.is_empty());
    WakeTable { slots }
  }

  /// The key of the 4-byte aligned word at `offset`; `None` beyond 4 TiB.
  fn key(offset: u64) -> Option<u64> {
    let key = offset / 4 + 1;
    (key <= MAX_KEY).then_some(key)
  }

  /// The slots that may hold `key`, in probing order.
  fn window(&self, key: u64) -> impl Iterator<Item = &'a AtomicU64> + 'a {
    let slots = self.slots;
    // Fibonacci hashing spreads neighbouring words over the table.
    let start = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % slots.len();
    (0..PROBES.min(slots.len())).map(move |i| &slots[(start + i) % slots.len()])
  }

  /// Announces one more sleeper on the word at `offset`: before it looks at
  /// the word a last time and blocks.
  ///
  /// # Errors
  /// [`TableFull`] when every slot of the word's window holds another word
  /// (or the word lies beyond 4 TiB).
  pub(crate) fn enter(&self, offset: u64) -> Result<(), TableFull> {
    let key = Self::key(offset).ok_or(TableFull)?;
    for slot in self.window(key) {
      let mut current = slot.load(Ordering::SeqCst);
      loop {
        let new = if current == 0 {
          key << COUNT_BITS | 1
        } else if key_of(current) == key && count_of(current) < COUNT_MASK {
          current + 1
        } else {
          break;
        };
        match slot.compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst) {
          Ok(_) => {
            // Pairs with the fence in `take`: the sleeper's last look at the
            // word, or the notifier's look at this slot, sees the other.
            fence(Ordering::SeqCst);
            return Ok(());
          }
          Err(now) => current = now,
        }
      }
    }
    Err(TableFull)
  }

  /// A sleeper on the word at `offset` stops without having been woken:
  /// withdraws one of the word's sleepers, if a notifier left any.
  pub(crate) fn leave(&self, offset: u64) -> Left {
    let Some(key) = Self::key(offset) else {
      return Left::Withdrawn;
    };
    for slot in self.window(key) {
      let mut current = slot.load(Ordering::SeqCst);
      while key_of(current) == key && count_of(current) > 0 {
        let new = if count_of(current) == 1 {
          0
        } else {
          current - 1
        };
        match slot.compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst) {
          Ok(_) => return Left::Withdrawn,
          Err(now) => current = now,
        }
      }
    }
    Left::Granted
  }

  /// Takes up to `count` sleepers of the word at `offset` (`u32::MAX`: all)
  /// and returns how many: the caller wakes that many. Makes no system
  /// call, so a notify nobody waits for stays cheap.
  pub(crate) fn take(&self, offset: u64, count: u32) -> u32 {
    // The caller changed the word before notifying, maybe with a plain
    // store: order that change before the sleepers are read, as `enter`
    // (a sequentially consistent RMW) orders it before the sleeper's check.
    fence(Ordering::SeqCst);
    let Some(key) = Self::key(offset) else {
      return 0;
    };
    let mut taken = 0u32;
    for slot in self.window(key) {
      let mut current = slot.load(Ordering::SeqCst);
      while taken < count && key_of(current) == key && count_of(current) > 0 {
        let here = count_of(current).min(u64::from(count - taken));
        let new = if here == count_of(current) {
          0
        } else {
          current - here
        };
        match slot.compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst) {
          Ok(_) => {
            // `here` is at most `count - taken`, a u32.
            taken += here as u32;
            break;
          }
          Err(now) => current = now,
        }
      }
      if taken == count {
        break;
      }
    }
    taken
  }
}

#[cfg(all(test, not(loom)))]
mod tests {
  use super::*;

  fn slots(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
  }

  fn all_free(slots: &[AtomicU64]) -> bool {
    slots.iter().all(|s| s.load(Ordering::SeqCst) == 0)
  }

  #[test]
  fn names_keep_the_namespace_and_tell_segments_apart() {
    let local = WakeNames::for_segment("Local\\frames");
    assert!(local.table().starts_with("Local\\named-shm.wake."));
    assert_eq!(local.table().len(), "Local\\named-shm.wake.".len() + 32);
    assert_eq!(local.semaphore(64), format!("{}.64", local.table()));
    let global = WakeNames::for_segment("Global\\frames");
    assert!(global.table().starts_with("Global\\named-shm.wake."));
    assert_ne!(local.table()[6..], global.table()[7..]);
    assert_ne!(local, WakeNames::for_segment("Local\\frames2"));
    assert_eq!(local, WakeNames::for_segment("Local\\frames"));
    // Windows caps object names at MAX_PATH; these are short and fixed.
    assert!(global.semaphore(u64::MAX).len() < 100);
  }

  #[test]
  fn a_notify_takes_only_the_sleepers_of_its_word() {
    let memory = slots(SLOTS);
    let table = WakeTable::new(&memory);
    assert_eq!(table.take(0, u32::MAX), 0);
    for _ in 0..3 {
      table.enter(8).unwrap();
    }
    table.enter(12).unwrap();
    assert_eq!(table.take(8, 2), 2);
    assert_eq!(table.take(8, 5), 1);
    assert_eq!(table.take(8, 1), 0);
    assert_eq!(table.take(12, u32::MAX), 1);
    assert!(all_free(&memory));
  }

  #[test]
  fn a_sleeper_that_leaves_withdraws_itself_unless_taken() {
    let memory = slots(SLOTS);
    let table = WakeTable::new(&memory);
    table.enter(40).unwrap();
    assert_eq!(table.leave(40), Left::Withdrawn);
    assert!(all_free(&memory));
    table.enter(40).unwrap();
    assert_eq!(table.take(40, 1), 1);
    assert_eq!(table.leave(40), Left::Granted);
    assert!(all_free(&memory));
  }

  #[test]
  fn words_that_share_a_window_use_several_slots() {
    // Two slots: every word's window is the whole table.
    let memory = slots(2);
    let table = WakeTable::new(&memory);
    table.enter(0).unwrap();
    table.enter(4).unwrap();
    assert_eq!(table.enter(8), Err(TableFull));
    table.enter(4).unwrap();
    // The word at 0 leaves; a sleeper on 4 then takes the free slot while 4
    // still holds the other: both slots count for the word.
    assert_eq!(table.leave(0), Left::Withdrawn);
    table.enter(4).unwrap();
    assert_eq!(table.take(4, u32::MAX), 3);
    assert!(all_free(&memory));
  }

  #[test]
  fn offsets_beyond_the_keys_are_refused() {
    let memory = slots(4);
    let table = WakeTable::new(&memory);
    let far = (MAX_KEY) * 4;
    assert_eq!(table.enter(far), Err(TableFull));
    assert_eq!(table.take(far, 1), 0);
    assert_eq!(table.leave(far), Left::Withdrawn);
    table.enter(far - 4).unwrap();
    assert_eq!(table.take(far - 4, 1), 1);
  }
}

/// `npm run test:loom` (all the crate's models).
#[cfg(all(test, loom))]
mod model {
  use super::*;
  use loom::sync::atomic::AtomicU32;
  use loom::sync::{Arc, Condvar, Mutex};
  use loom::thread;

  /// A counting semaphore, as the kernel's.
  #[derive(Default)]
  struct Semaphore {
    units: Mutex<u32>,
    available: Condvar,
  }

  impl Semaphore {
    fn release(&self, n: u32) {
      *self.units.lock().unwrap() += n;
      self.available.notify_all();
    }

    fn acquire(&self) {
      let mut units = self.units.lock().unwrap();
      while *units == 0 {
        units = self.available.wait(units).unwrap();
      }
      *units -= 1;
    }
  }

  struct World {
    word: AtomicU32,
    slots: Vec<AtomicU64>,
    semaphore: Semaphore,
  }

  fn world(slots: usize) -> Arc<World> {
    Arc::new(World {
      word: AtomicU32::new(0),
      slots: (0..slots).map(|_| AtomicU64::new(0)).collect(),
      semaphore: Semaphore::default(),
    })
  }

  const OFFSET: u64 = 16;

  #[derive(Clone, Copy, Debug, PartialEq, Eq)]
  enum Outcome {
    Woken,
    Changed,
    TimedOut,
  }

  /// A sleeper as the Windows backend runs it; `patient`: it blocks until
  /// woken, else its timeout passes at once.
  fn sleeper(world: &World, patient: bool) -> Outcome {
    let table = WakeTable::new(&world.slots);
    table.enter(OFFSET).unwrap();
    let unchanged = world.word.load(Ordering::SeqCst) == 0;
    if unchanged && patient {
      world.semaphore.acquire();
      return Outcome::Woken;
    }
    match table.leave(OFFSET) {
      Left::Granted => {
        world.semaphore.acquire();
        Outcome::Woken
      }
      Left::Withdrawn if unchanged => Outcome::TimedOut,
      Left::Withdrawn => Outcome::Changed,
    }
  }

  /// Changes the word, then wakes up to `count` sleepers.
  fn notifier(world: &World, count: u32) -> u32 {
    world.word.store(1, Ordering::SeqCst);
    wake(world, count)
  }

  fn wake(world: &World, count: u32) -> u32 {
    let woken = WakeTable::new(&world.slots).take(OFFSET, count);
    world.semaphore.release(woken);
    woken
  }

  /// Nothing left behind: no sleeper in the table, no unit in the semaphore.
  fn settled(world: &World) {
    assert!(world.slots.iter().all(|s| s.load(Ordering::SeqCst) == 0));
    assert_eq!(*world.semaphore.units.lock().unwrap(), 0);
  }

  /// A sleeper either sees the change or is woken (loom reports a deadlock
  /// if it blocks for good), and `notify` counts exactly who it woke.
  #[test]
  fn no_lost_wake_up() {
    loom::model(|| {
      let world = world(2);
      let other = Arc::clone(&world);
      let sleeping = thread::spawn(move || sleeper(&other, true));
      let woken = notifier(&world, 1);
      let outcome = sleeping.join().unwrap();
      assert_eq!(woken == 1, outcome == Outcome::Woken);
      assert_ne!(outcome, Outcome::TimedOut);
      settled(&world);
    });
  }

  /// A sleeper that times out while a notify runs: either it withdrew in
  /// time, or it reports the wake-up the notify counted and consumes it.
  #[test]
  fn a_timeout_racing_a_notify_leaves_nothing() {
    loom::model(|| {
      let world = world(2);
      let other = Arc::clone(&world);
      let leaving = thread::spawn(move || sleeper(&other, false));
      let woken = notifier(&world, u32::MAX);
      let outcome = leaving.join().unwrap();
      assert_eq!(woken == 1, outcome == Outcome::Woken);
      settled(&world);
    });
  }

  /// Two sleepers, one of which times out, and a notify for one: whoever
  /// the notify counted reports it, and a patient sleeper left behind is
  /// still in the table for the next notify.
  #[test]
  fn a_notify_for_one_with_a_sleeper_timing_out() {
    // Three threads: bound the preemptions (as tokio's models do) to keep
    // the run to minutes.
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(|| {
      let world = world(1);
      let (a, b) = (Arc::clone(&world), Arc::clone(&world));
      let patient = thread::spawn(move || sleeper(&a, true));
      let leaving = thread::spawn(move || sleeper(&b, false));
      let mut woken = notifier(&world, 1);
      let left = leaving.join().unwrap();
      if left == Outcome::Woken {
        // The one wake-up went to the sleeper that was leaving: a second
        // notify is what ends the patient one, unless it saw the change.
        woken += wake(&world, u32::MAX);
      }
      let stayed = patient.join().unwrap();
      let reported = [left, stayed]
        .iter()
        .filter(|o| **o == Outcome::Woken)
        .count();
      assert_eq!(reported, woken as usize);
      assert_ne!(stayed, Outcome::TimedOut);
      settled(&world);
    });
  }
}
