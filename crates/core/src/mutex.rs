//! `SharedMutex`: a lock that lives in 8 bytes of a segment, is
//! shared by every process attached to it, and survives its owner's death.
//!
//! Layout: one 64-bit word, zero when unlocked. The half at the lower
//! address is the futex word: the owner's id (30 bits) and `WAITERS` (bit
//! 31, someone may sleep); the other half is the owner's stamp. Both halves
//! change together by 64-bit compare-and-swap, so nobody ever judges an
//! owner by another thread's stamp. The futex half is only ever read by the
//! OS (for the sleep); this code reads and writes the whole word.
//!
//! - lock: CAS 0 → me; else spin briefly; else set `WAITERS` and sleep on
//!   the futex half. After a sleep, take the lock with `WAITERS` set (others
//!   may still sleep).
//! - unlock: swap to 0; wake one sleeper only if `WAITERS` was set, so an
//!   uncontended unlock makes no system call.
//! - owner death: before sleeping, and after each `LIVENESS_SLICE` asleep,
//!   a waiter asks the OS whether the owner (id, stamp) still runs; if not it
//!   takes the lock over by CAS and reports [`LockOutcome::OwnerDied`].
//!
//! The owner is a thread (two `worker_threads` of one process are two
//! owners). Limits, per OS, are in the backends' `liveness`: on Linux a
//! recycled thread id is told apart by its start time, and owners in another
//! PID namespace are never declared dead.

use std::cell::Cell;
use std::time::{Duration, Instant};

#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::error::{Error, Result};
// The loom model (model.rs) stands in for the OS: its futex, liveness and
// thread ids run on loom's scheduler.
#[cfg(loom)]
use crate::model::{self as os, Liveness, Spinner, Wake};
#[cfg(not(loom))]
use crate::os::{self, Liveness, Wake};
#[cfg(not(loom))]
use crate::sync::Spinner;

/// Bytes a mutex takes in the segment.
pub const MUTEX_BYTES: usize = 8;

/// `WAITERS`: someone may sleep on the futex half.
const WAITERS: u32 = 1 << 31;
/// The owner id's bits of the futex half.
const ID_MASK: u32 = (1 << 30) - 1;
/// How long a sleeper waits before checking again that the owner lives.
pub(crate) const LIVENESS_SLICE: Duration = Duration::from_millis(50);

/// How a lock attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockOutcome {
  /// Locked.
  Ok,
  /// Locked, taken over from an owner that died holding it: the data it
  /// protects may be half-updated.
  OwnerDied,
  /// The timeout passed (`lock`).
  TimedOut,
  /// Held by someone else (`try_lock`).
  Busy,
}

/// A thread that can own a mutex: its OS id and a stamp telling it apart
/// from a later thread with the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
  id: u32,
  stamp: u32,
}

thread_local! {
  static CURRENT: Cell<Option<Owner>> = const { Cell::new(None) };
}

impl Owner {
  /// The calling thread.
  pub fn current() -> Owner {
    CURRENT.with(|current| {
      current.get().unwrap_or_else(|| {
        let (id, stamp) = os::thread_identity();
        // An id of 0 would read as "unlocked".
        let owner = Owner {
          id: (id & ID_MASK).max(1),
          stamp,
        };
        current.set(Some(owner));
        owner
      })
    })
  }

  /// A made-up owner for the model's threads.
  #[cfg(loom)]
  pub(crate) fn model(id: u32) -> Owner {
    Owner { id, stamp: 7 }
  }

  fn word(self, waiters: bool) -> u64 {
    pack(self.id | if waiters { WAITERS } else { 0 }, self.stamp)
  }

  /// The word a lock held by this owner holds while nobody waits for it:
  /// what a lock taken by compare-and-swap from 0 must store, in any
  /// language, for [`SharedMutex`] to know its owner.
  pub fn locked_word(self) -> u64 {
    self.word(false)
  }
}

fn pack(state: u32, stamp: u32) -> u64 {
  // The futex half sits at the lower address.
  if cfg!(target_endian = "little") {
    u64::from(state) | u64::from(stamp) << 32
  } else {
    u64::from(state) << 32 | u64::from(stamp)
  }
}

fn unpack(word: u64) -> (u32, u32) {
  if cfg!(target_endian = "little") {
    (word as u32, (word >> 32) as u32)
  } else {
    ((word >> 32) as u32, word as u32)
  }
}

/// What one non-blocking attempt found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Attempt {
  /// Locked, with this outcome (`Ok` or `OwnerDied`).
  Locked(LockOutcome),
  /// Held: the futex half as seen.
  Held(u32),
}

/// A mutex at an 8-byte aligned word of shared memory.
pub struct SharedMutex<'a> {
  word: &'a AtomicU64,
}

impl<'a> SharedMutex<'a> {
  /// The mutex stored in `word` (zero: unlocked).
  pub fn new(word: &'a AtomicU64) -> SharedMutex<'a> {
    SharedMutex { word }
  }

  /// The futex half, for the OS to sleep on.
  #[cfg(not(loom))]
  fn futex(&self) -> &'a AtomicU32 {
    // SAFETY: the lower-addressed 4 bytes of an aligned 8-byte word are an
    // aligned 4-byte word of the same allocation. Only the OS reads through
    // it (the Windows backend loads it before it sleeps; mixed-size atomics are well defined on
    // every processor this runs on).
    unsafe { AtomicU32::from_ptr(self.word.as_ptr().cast()) }
  }

  /// One attempt for `me`: takes a free lock (setting `WAITERS` if
  /// `waiters`), or with `check` a lock whose owner died.
  pub(crate) fn attempt(&self, me: Owner, waiters: bool, check: bool) -> Attempt {
    let mut current = self.word.load(Ordering::Relaxed);
    loop {
      let (state, stamp) = unpack(current);
      let owner = state & ID_MASK;
      let (outcome, new) = if owner == 0 {
        (LockOutcome::Ok, me.word(waiters))
      } else if !check || (owner == me.id && stamp == me.stamp) {
        return Attempt::Held(state);
      } else if os::liveness(owner, stamp) == Liveness::Dead {
        // Keep WAITERS: the dead owner's sleepers still sleep.
        (
          LockOutcome::OwnerDied,
          me.word(waiters || state & WAITERS != 0),
        )
      } else {
        return Attempt::Held(state);
      };
      match self
        .word
        .compare_exchange(current, new, Ordering::Acquire, Ordering::Relaxed)
      {
        Ok(_) => return Attempt::Locked(outcome),
        Err(now) => current = now,
      }
    }
  }

  /// Marks `seen` (a held futex half) as having sleepers; whether the word
  /// still showed it, so that sleeping on `seen | WAITERS` is right.
  pub(crate) fn announce_sleeper(&self, seen: u32) -> bool {
    if seen & WAITERS != 0 {
      return true;
    }
    let current = self.word.load(Ordering::Relaxed);
    let (state, stamp) = unpack(current);
    state == seen
      && self
        .word
        .compare_exchange(
          current,
          pack(state | WAITERS, stamp),
          Ordering::Relaxed,
          Ordering::Relaxed,
        )
        .is_ok()
  }

  /// The value to sleep on after [`SharedMutex::announce_sleeper`].
  pub(crate) fn sleep_value(seen: u32) -> u32 {
    seen | WAITERS
  }

  /// The futex half, for the waiter threads.
  #[cfg(not(loom))]
  pub(crate) fn futex_word(&self) -> &'a AtomicU32 {
    self.futex()
  }

  /// Sleeps while the futex half holds `value`, at most `timeout`.
  #[cfg(not(loom))]
  fn sleep(&self, value: u32, timeout: Option<Duration>) -> Result<Wake> {
    os::wait(self.futex(), value, timeout)
  }

  /// Wakes one sleeper on the futex half.
  #[cfg(not(loom))]
  fn wake_one(&self) -> Result<usize> {
    os::wake(self.futex(), 1)
  }

  #[cfg(loom)]
  fn sleep(&self, value: u32, _timeout: Option<Duration>) -> Result<Wake> {
    Ok(os::wait(&[(self.word, value)]))
  }

  #[cfg(loom)]
  fn wake_one(&self) -> Result<usize> {
    Ok(os::wake(self.word, 1))
  }

  /// One turn of a `lockAsync` on its waiter thread: give up if `stop`
  /// (cancelled, detached), else try to lock for `me` (with `check`, also
  /// from a dead owner), else give up if `expired`, else say what to sleep
  /// on. Giving up hands on a wake-up this sleeper may have taken.
  pub(crate) fn turn(&self, me: Owner, stop: bool, check: bool, expired: bool) -> Turn {
    if stop {
      self.pass_on_wake();
      return Turn::GaveUp;
    }
    let seen = match self.attempt(me, true, check) {
      Attempt::Locked(outcome) => return Turn::Locked(outcome),
      Attempt::Held(state) => state,
    };
    if expired {
      self.pass_on_wake();
      return Turn::GaveUp;
    }
    if !self.announce_sleeper(seen) {
      return Turn::Again;
    }
    Turn::Sleep(Self::sleep_value(seen))
  }

  /// Takes the lock if free, or if its owner died; never waits.
  pub fn try_lock(&self) -> LockOutcome {
    match self.attempt(Owner::current(), false, true) {
      Attempt::Locked(outcome) => outcome,
      Attempt::Held(_) => LockOutcome::Busy,
    }
  }

  /// Takes the lock, waiting at most `timeout` (`None`: forever); spins a
  /// moment first when `spin` (see the adaptive spin in sync.rs).
  ///
  /// # Errors
  /// [`Error::Deadlock`] if this thread holds the lock already: waiting for
  /// itself would never end. An OS error from the wait call.
  pub fn lock(&self, timeout: Option<Duration>, spin: bool) -> Result<LockOutcome> {
    self.lock_as(Owner::current(), timeout, spin)
  }

  /// [`SharedMutex::lock`] for `me`.
  pub(crate) fn lock_as(
    &self,
    me: Owner,
    timeout: Option<Duration>,
    spin: bool,
  ) -> Result<LockOutcome> {
    let start = Instant::now();
    let deadline = timeout.and_then(|timeout| start.checked_add(timeout));
    let mut seen = match self.attempt(me, false, false) {
      Attempt::Locked(outcome) => return Ok(outcome),
      Attempt::Held(state) => state,
    };
    if self.is_held_by(me) {
      return Err(Error::Deadlock);
    }
    let spinner = Spinner::new(spin, timeout);
    let mut taken = None;
    spinner.spin(start, || match self.attempt(me, false, false) {
      Attempt::Locked(outcome) => {
        taken = Some(outcome);
        true
      }
      Attempt::Held(state) => {
        seen = state;
        false
      }
    });
    if let Some(outcome) = taken {
      return Ok(outcome);
    }
    // From here on we may have slept, so take the lock with WAITERS set.
    // The owner's liveness is checked now, then every LIVENESS_SLICE: a
    // dead owner never wakes us.
    let mut next_check = start;
    loop {
      let now = Instant::now();
      let check = now >= next_check;
      if check {
        next_check = now + LIVENESS_SLICE;
      }
      match self.attempt(me, true, check) {
        Attempt::Locked(outcome) => {
          spinner.slept(Some(start.elapsed()));
          return Ok(outcome);
        }
        Attempt::Held(state) => seen = state,
      }
      let until_check = next_check.saturating_duration_since(now);
      let remaining = match deadline {
        Some(deadline) => match deadline.checked_duration_since(now) {
          Some(remaining) if !remaining.is_zero() => remaining.min(until_check),
          _ => {
            spinner.slept(None);
            self.pass_on_wake();
            return Ok(LockOutcome::TimedOut);
          }
        },
        None => until_check,
      };
      if !self.announce_sleeper(seen) || remaining.is_zero() {
        continue;
      }
      // Every way a sleep ends leads back to another attempt.
      let _: Wake = self.sleep(Self::sleep_value(seen), Some(remaining))?;
    }
  }

  /// Releases the lock; wakes one sleeper if any announced itself.
  ///
  /// # Errors
  /// [`Error::NotOwner`] if this thread does not hold the lock.
  pub fn unlock(&self) -> Result<()> {
    self.unlock_as(Owner::current())
  }

  /// Releases the lock held by `owner` (a `lock_async` that lost its caller).
  pub(crate) fn unlock_as(&self, owner: Owner) -> Result<()> {
    if !self.is_held_by(owner) {
      return Err(Error::NotOwner);
    }
    // Only the owner clears the word; others at most add WAITERS, which
    // the swap then returns.
    let before = self.word.swap(0, Ordering::Release);
    if unpack(before).0 & WAITERS != 0 {
      self.wake_one()?;
    }
    Ok(())
  }

  /// Whether `owner` holds the lock.
  pub(crate) fn is_held_by(&self, owner: Owner) -> bool {
    let (state, stamp) = unpack(self.word.load(Ordering::Acquire));
    state & ID_MASK == owner.id && stamp == owner.stamp
  }

  /// A sleeper that gives up (timeout, cancel) may have taken the one
  /// wake-up an unlock sent: hand it on if the lock is free with sleepers.
  pub(crate) fn pass_on_wake(&self) {
    let (state, _) = unpack(self.word.load(Ordering::Acquire));
    if state & ID_MASK == 0 || state & WAITERS != 0 {
      let _ = self.wake_one();
    }
  }
}

/// What one [`SharedMutex::turn`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Turn {
  /// Locked, with this outcome (`Ok` or `OwnerDied`).
  Locked(LockOutcome),
  /// Stopped or expired, without the lock.
  GaveUp,
  /// Held: sleep while the futex half holds this value.
  Sleep(u32),
  /// The word moved meanwhile: turn again.
  Again,
}

#[cfg(all(test, not(loom)))]
mod tests {
  use super::*;
  use crate::mapping::Access;
  use crate::sync::SharedWord;
  use crate::test_support::scratch_segment;
  use std::sync::Arc;
  use std::thread;

  fn segment_word(tag: &str) -> (Arc<crate::Mapping>, SharedWord) {
    let segment = scratch_segment(&format!("mutex-test-{tag}"));
    let mapping = segment.map(Access::ReadWrite).unwrap();
    let word = SharedWord::new(&mapping, 16, 8).unwrap();
    (mapping, word)
  }

  #[test]
  fn uncontended() {
    let (_mapping, word) = segment_word("uncontended");
    let mutex = SharedMutex::new(word.pair());
    assert_eq!(mutex.try_lock(), LockOutcome::Ok);
    assert_eq!(mutex.try_lock(), LockOutcome::Busy);
    assert_eq!(
      mutex.lock(Some(Duration::from_millis(5)), true),
      Err(Error::Deadlock)
    );
    mutex.unlock().unwrap();
    assert_eq!(mutex.unlock(), Err(Error::NotOwner));
    assert_eq!(mutex.lock(None, true).unwrap(), LockOutcome::Ok);
    assert_eq!(word.pair().load(Ordering::SeqCst) & u64::from(WAITERS), 0);
    mutex.unlock().unwrap();
    assert_eq!(word.pair().load(Ordering::SeqCst), 0);
  }

  #[test]
  fn another_thread_times_out_then_gets_it() {
    let (_mapping, word) = segment_word("timeout");
    let word = Arc::new(word);
    SharedMutex::new(word.pair()).lock(None, false).unwrap();
    let other = Arc::clone(&word);
    let outcome = thread::spawn(move || {
      let mutex = SharedMutex::new(other.pair());
      let first = mutex.lock(Some(Duration::from_millis(30)), true).unwrap();
      let busy = mutex.try_lock();
      (first, busy)
    })
    .join()
    .unwrap();
    assert_eq!(outcome, (LockOutcome::TimedOut, LockOutcome::Busy));
    let other = Arc::clone(&word);
    let waiter = thread::spawn(move || {
      let mutex = SharedMutex::new(other.pair());
      let outcome = mutex.lock(Some(Duration::from_secs(10)), false).unwrap();
      mutex.unlock().unwrap();
      outcome
    });
    thread::sleep(Duration::from_millis(20));
    SharedMutex::new(word.pair()).unlock().unwrap();
    assert_eq!(waiter.join().unwrap(), LockOutcome::Ok);
  }

  #[test]
  fn a_dead_owner_is_taken_over() {
    let (_mapping, word) = segment_word("dead");
    let word = Arc::new(word);
    let other = Arc::clone(&word);
    // A thread that locks and ends without unlocking.
    thread::spawn(move || {
      assert_eq!(SharedMutex::new(other.pair()).try_lock(), LockOutcome::Ok);
    })
    .join()
    .unwrap();
    let mutex = SharedMutex::new(word.pair());
    // `join` returns when the thread clears its tid (CLONE_CHILD_CLEARTID),
    // a moment before the kernel retires it: until then it still looks alive
    // and `try_lock` says busy.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut outcome = mutex.try_lock();
    while outcome == LockOutcome::Busy && Instant::now() < deadline {
      thread::sleep(Duration::from_millis(1));
      outcome = mutex.try_lock();
    }
    assert_eq!(outcome, LockOutcome::OwnerDied);
    mutex.unlock().unwrap();
    let other = Arc::clone(&word);
    thread::spawn(move || {
      SharedMutex::new(other.pair()).lock(None, true).unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(
      mutex.lock(Some(Duration::from_secs(10)), true).unwrap(),
      LockOutcome::OwnerDied
    );
    mutex.unlock().unwrap();
  }

  #[test]
  fn threads_count_exactly() {
    let (mapping, word) = segment_word("count");
    let word = Arc::new(word);
    const THREADS: u64 = 4;
    const ROUNDS: u64 = 5000;
    let counter = Arc::new(SharedWord::new(&mapping, 64, 8).unwrap());
    let workers: Vec<_> = (0..THREADS)
      .map(|n| {
        let (word, counter) = (Arc::clone(&word), Arc::clone(&counter));
        thread::spawn(move || {
          let mutex = SharedMutex::new(word.pair());
          for _ in 0..ROUNDS {
            assert_eq!(mutex.lock(None, n % 2 == 0).unwrap(), LockOutcome::Ok);
            // A non-atomic read-modify-write: only the lock makes it exact.
            let value = counter.pair().load(Ordering::Relaxed);
            std::hint::spin_loop();
            counter.pair().store(value + 1, Ordering::Relaxed);
            mutex.unlock().unwrap();
          }
        })
      })
      .collect();
    for worker in workers {
      worker.join().unwrap();
    }
    assert_eq!(counter.pair().load(Ordering::SeqCst), THREADS * ROUNDS);
    assert_eq!(word.pair().load(Ordering::SeqCst), 0);
  }
}
