//! Cross-process `wait` and `notify` on the words of a segment:
//! `Atomics.wait`/`Atomics.notify` that reach every process attached to it.
//!
//! A wait first spins for a moment (2 to 100 µs, learned per thread),
//! watching the word, because a partner that answers quickly then costs no
//! sleep and no wake-up latency; then it sleeps in the OS (futex and its
//! kin, see `os/`).
//!
//! A wait that outlives its caller's call (the `waitAsync` waiter threads)
//! reaches its word through a [`SharedWord`], which pins the mapping: the
//! memory stays mapped until the waiter lets go, whatever the JavaScript
//! thread detaches meanwhile. [`wait`] and [`notify`] themselves take a
//! plain reference, valid for the call.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::mapping::{Access, Mapping, Pinned};
use crate::os::{self, Wake};

/// How a [`wait`] ended, as `Atomics.wait` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitOutcome {
  /// Woken, or the word changed after the wait began.
  Ok,
  /// The word did not hold the expected value when the wait began.
  NotEqual,
  /// The timeout passed.
  TimedOut,
}

/// A 4- or 8-byte word of a live mapping, kept mapped while this value lives.
///
/// `view` is the mapping the caller's JavaScript view lies in; it says when
/// the caller detached (then pending waits end). The word itself is read
/// where the view shares it with other processes ([`Mapping::shared_ptr`]):
/// in the view, or for a copy-on-write view in its shared alias, since a
/// private page would neither see other processes' writes nor meet their
/// futex.
#[derive(Debug)]
pub struct SharedWord {
  pin: Pinned,
  offset: usize,
}

impl SharedWord {
  /// The `width`-byte word at `offset` of `view`; `None` if it was
  /// unmapped, or the word is out of bounds or not aligned to `width`.
  pub fn new(view: &Arc<Mapping>, offset: usize, width: usize) -> Option<SharedWord> {
    if !matches!(width, 4 | 8) {
      return None;
    }
    let pin = view.pin()?;
    let fits = offset
      .checked_add(width)
      .is_some_and(|end| end <= pin.len());
    let aligned = (pin.as_ptr() as usize)
      .wrapping_add(offset)
      .is_multiple_of(width);
    (fits && aligned).then_some(SharedWord { pin, offset })
  }

  /// The word as a 32-bit atomic.
  pub fn word(&self) -> &AtomicU32 {
    // SAFETY: `new` checked that 4 aligned bytes at `offset` lie in the
    // mapping, which the pin keeps mapped for as long as `self` lives.
    unsafe { AtomicU32::from_ptr(self.pin.shared_ptr(self.offset).cast()) }
  }

  /// The word as a 64-bit atomic (made with width 8).
  pub fn pair(&self) -> &AtomicU64 {
    debug_assert!(self.pin.len() >= self.offset + 8);
    // SAFETY: as in `word`, for the 8 aligned bytes `new` checked.
    unsafe { AtomicU64::from_ptr(self.pin.shared_ptr(self.offset).cast()) }
  }

  /// Whether the caller's view was detached: waits on it should end.
  pub fn is_detached(&self) -> bool {
    self.pin.mapping().is_detached()
  }

  /// [`crate::Error::Shrunk`] if the word's page lay past the segment's end
  /// when touched (another process shrank it): it is private zeros now.
  ///
  /// # Errors
  /// As said.
  pub fn check_shrunk(&self) -> Result<()> {
    // Touch it first, so a missing page faults (and is marked) now.
    let _ = self.word().load(Ordering::Relaxed);
    self.pin.mapping().check_shrunk()
  }

  /// Whether writes through the caller's view reach the segment.
  pub fn is_writable(&self) -> bool {
    self.pin.mapping().access() == Access::ReadWrite
  }
}

/// Waits while `word` holds `expected`: [`WaitOutcome::NotEqual`] at once if
/// it does not, [`WaitOutcome::Ok`] when woken by [`notify`] or when the
/// word changes, [`WaitOutcome::TimedOut`] after `timeout` (`None`: never).
///
/// With `spin`, first watches the word for a while (2 to 100 µs, learned per
/// thread, see "The adaptive spin" below). A spinning
/// waiter returns when the word changes; a `notify` that does not change it
/// can go unseen then, as with any futex protocol: change the word, then
/// notify.
///
/// # Errors
/// An OS error from the wait call (`EFAULT`, `EINVAL`); never for a word
/// held by a [`SharedWord`].
pub fn wait(
  word: &AtomicU32,
  expected: u32,
  timeout: Option<Duration>,
  spin: bool,
) -> Result<WaitOutcome> {
  if word.load(Ordering::SeqCst) != expected {
    return Ok(WaitOutcome::NotEqual);
  }
  if timeout == Some(Duration::ZERO) {
    return Ok(WaitOutcome::TimedOut);
  }
  let start = Instant::now();
  let deadline = timeout.and_then(|timeout| start.checked_add(timeout));
  let spinner = Spinner::new(spin, timeout);
  if spinner.spin(start, || word.load(Ordering::Acquire) != expected) {
    return Ok(WaitOutcome::Ok);
  }
  loop {
    let remaining = match deadline {
      Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
        Some(remaining) if !remaining.is_zero() => Some(remaining),
        _ => {
          spinner.slept(None);
          return Ok(WaitOutcome::TimedOut);
        }
      },
      None => None,
    };
    match os::wait(word, expected, remaining)? {
      Wake::Woken | Wake::Changed => {
        spinner.slept(Some(start.elapsed()));
        return Ok(WaitOutcome::Ok);
      }
      // A timeout that ends early (a capped OS timeout) goes round again.
      Wake::TimedOut | Wake::Interrupted => {}
    }
  }
}

/// Wakes up to `count` waiters on `word` (`u32::MAX`: all) in every
/// process; returns how many the OS says it woke (Linux and Windows count
/// exactly; macOS tells less, see its backend). A `count` of 0 wakes
/// nobody and returns 0 without asking the OS: Linux's `FUTEX_WAKE` would
/// wake one.
///
/// # Errors
/// An OS error from the wake call; never for a word held by a [`SharedWord`].
pub fn notify(word: &AtomicU32, count: u32) -> Result<usize> {
  if count == 0 {
    return Ok(0);
  }
  os::wake(word, count)
}

// ---- The adaptive spin ----
//
// Each thread keeps a spin budget between MIN_SPIN and MAX_SPIN, learned
// from how long its waits really take:
//
// - a wait that the spin answers after `t` pulls the budget towards 2t;
// - a wait that had to sleep and was answered after `t <= MAX_SPIN` raises
//   the budget to 1.25t: spinning that long would have answered it;
// - a wait answered later than MAX_SPIN, or not at all, halves it.
//
// So a partner that answers within microseconds is met by spinning, and a
// slow one costs about MIN_SPIN of spinning per wait. Why the bounds:
//
// - MIN_SPIN stays above what an awake, spinning partner needs to answer
//   through Node (about a microsecond): below it, both sides of a ping-pong
//   would sleep for good after the first missed answer.
// - MAX_SPIN covers a cross-CPU wake-up. When one side slept, every answer
//   it gives comes a wake-up later; only a spin that outlasts the wake-up
//   brings both sides back to spinning. Bare metal wakes in a few µs, a VM
//   in tens (about 40 µs on the machine this was tuned on).

const MIN_SPIN: Duration = Duration::from_micros(2);
const MAX_SPIN: Duration = Duration::from_micros(100);
const FIRST_SPIN: Duration = Duration::from_micros(4);

thread_local! {
  static BUDGET: Cell<Duration> = const { Cell::new(FIRST_SPIN) };
}

/// Whether spinning can help at all: not on a single-CPU system, where the
/// partner cannot run while we spin.
fn can_spin() -> bool {
  static PARALLEL: OnceLock<bool> = OnceLock::new();
  *PARALLEL.get_or_init(|| os::cpu_count() > 1)
}

/// The spin phase of one wait.
pub(crate) struct Spinner {
  budget: Option<Duration>,
}

impl Spinner {
  /// A spinner for a wait of `timeout`; idle unless `enabled`.
  pub(crate) fn new(enabled: bool, timeout: Option<Duration>) -> Spinner {
    let budget = (enabled && can_spin()).then(|| {
      let budget = BUDGET.with(Cell::get);
      timeout.map_or(budget, |timeout| budget.min(timeout))
    });
    Spinner { budget }
  }

  /// Spins until `done()` or the budget runs out; whether `done()` came.
  pub(crate) fn spin(&self, start: Instant, mut done: impl FnMut() -> bool) -> bool {
    let Some(budget) = self.budget else {
      return false;
    };
    let mut round = 0u32;
    loop {
      if done() {
        let took = start.elapsed();
        adjust(|old| (old * 3 + took * 2) / 4);
        return true;
      }
      std::hint::spin_loop();
      round = round.wrapping_add(1);
      // Reading the clock costs about as much as 20 pause instructions.
      if round.is_multiple_of(16) && start.elapsed() >= budget {
        return false;
      }
    }
  }

  /// The wait ended after sleeping, `took` after it began (`None`: it timed out).
  pub(crate) fn slept(&self, took: Option<Duration>) {
    if self.budget.is_none() {
      return;
    }
    match took {
      Some(took) if took <= MAX_SPIN => adjust(|old| old.max(took + took / 4)),
      _ => adjust(|old| old / 2),
    }
  }
}

fn adjust(change: impl FnOnce(Duration) -> Duration) {
  BUDGET.with(|budget| budget.set(change(budget.get()).clamp(MIN_SPIN, MAX_SPIN)));
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::test_support::scratch_segment;
  use std::thread;

  /// A fresh segment mapped twice (as two processes would), deleted at once.
  fn two_mappings(tag: &str) -> (Arc<Mapping>, Arc<Mapping>) {
    let segment = scratch_segment(&format!("sync-test-{tag}"));
    let a = segment.map(Access::ReadWrite).unwrap();
    let b = segment.map(Access::ReadWrite).unwrap();
    (a, b)
  }

  #[test]
  fn not_equal_and_timed_out() {
    let (a, _) = two_mappings("outcomes");
    let word = SharedWord::new(&a, 8, 4).unwrap();
    word.word().store(5, Ordering::SeqCst);
    assert_eq!(
      wait(word.word(), 4, None, true).unwrap(),
      WaitOutcome::NotEqual
    );
    for spin in [true, false] {
      let begun = Instant::now();
      let outcome = wait(word.word(), 5, Some(Duration::from_millis(20)), spin).unwrap();
      assert_eq!(outcome, WaitOutcome::TimedOut);
      assert!(begun.elapsed() >= Duration::from_millis(20));
    }
    assert_eq!(
      wait(word.word(), 5, Some(Duration::ZERO), true).unwrap(),
      WaitOutcome::TimedOut
    );
  }

  #[test]
  fn words_are_checked() {
    let (a, b) = two_mappings("checks");
    assert!(SharedWord::new(&a, 4094, 4).is_none());
    assert!(SharedWord::new(&a, 2, 4).is_none());
    assert!(SharedWord::new(&a, 4, 8).is_none());
    assert!(SharedWord::new(&a, 4, 3).is_none());
    assert!(SharedWord::new(&b, 4088, 8).is_some());
    // SAFETY: nothing else uses `b`'s memory.
    unsafe { b.unmap() };
    assert!(SharedWord::new(&b, 0, 4).is_none());
  }

  #[test]
  fn a_pin_defers_the_unmap() {
    let (a, _) = two_mappings("pin");
    let word = SharedWord::new(&a, 0, 4).unwrap();
    // SAFETY: the test reads the memory only through the pinned word.
    unsafe { a.unmap() };
    assert!(a.is_unmapped() && word.is_detached());
    assert!(a.pin().is_none());
    word.word().store(7, Ordering::SeqCst);
    assert_eq!(word.word().load(Ordering::SeqCst), 7);
    drop(word);
  }

  #[test]
  fn notify_wakes_a_waiter_through_another_mapping() {
    for spin in [true, false] {
      let (a, b) = two_mappings(if spin { "wake-spin" } else { "wake" });
      let waiter_word = SharedWord::new(&a, 64, 4).unwrap();
      let waiter =
        thread::spawn(move || wait(waiter_word.word(), 0, Some(Duration::from_secs(10)), spin));
      let word = SharedWord::new(&b, 64, 4).unwrap();
      // Let the waiter fall asleep, then wake it without changing the word.
      let mut woken = 0;
      for _ in 0..1000 {
        thread::sleep(Duration::from_millis(1));
        woken = notify(word.word(), 1).unwrap();
        if woken == 1 {
          break;
        }
      }
      assert_eq!(woken, 1);
      assert_eq!(waiter.join().unwrap().unwrap(), WaitOutcome::Ok);
    }
  }

  #[test]
  fn a_notify_of_zero_wakes_nobody() {
    let (a, b) = two_mappings("zero");
    let waiter_word = SharedWord::new(&a, 32, 4).unwrap();
    let waiter = thread::spawn(move || {
      wait(
        waiter_word.word(),
        0,
        Some(Duration::from_millis(300)),
        false,
      )
    });
    let word = SharedWord::new(&b, 32, 4).unwrap();
    // Asked while the waiter sleeps (and before): always 0, and it sleeps on.
    for _ in 0..100 {
      assert_eq!(notify(word.word(), 0).unwrap(), 0);
      thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(waiter.join().unwrap().unwrap(), WaitOutcome::TimedOut);
  }

  #[test]
  fn ping_pong_loses_no_wake_up() {
    let (a, b) = two_mappings("ping-pong");
    const ROUNDS: u32 = 2000;
    let theirs = SharedWord::new(&b, 0, 4).unwrap();
    let partner = thread::spawn(move || {
      for round in 0..ROUNDS {
        let word = theirs.word();
        while word.load(Ordering::SeqCst) == 2 * round {
          wait(
            word,
            2 * round,
            Some(Duration::from_secs(10)),
            round % 2 == 0,
          )
          .unwrap();
        }
        word.store(2 * round + 2, Ordering::SeqCst);
        notify(word, 1).unwrap();
      }
    });
    let ours = SharedWord::new(&a, 0, 4).unwrap();
    let word = ours.word();
    for round in 0..ROUNDS {
      word.store(2 * round + 1, Ordering::SeqCst);
      notify(word, 1).unwrap();
      while word.load(Ordering::SeqCst) == 2 * round + 1 {
        let outcome = wait(
          word,
          2 * round + 1,
          Some(Duration::from_secs(10)),
          round % 3 == 0,
        );
        assert_ne!(outcome.unwrap(), WaitOutcome::TimedOut);
      }
    }
    partner.join().unwrap();
    assert_eq!(word.load(Ordering::SeqCst), 2 * ROUNDS);
  }
}
