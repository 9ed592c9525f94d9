//! Cross-process `wait` and `notify` on the words of a segment (SPEC §5):
//! `Atomics.wait`/`Atomics.notify` that reach every process attached to it.
//!
//! A wait first spins for a few microseconds, watching the word, because a
//! partner that answers quickly then costs no sleep and no wake-up latency;
//! then it sleeps in the OS (futex and its kin, see `os/`). The spin budget
//! adapts per thread to how long waits really take.
//!
//! Words are reached through a [`SharedWord`], which pins the mapping: a
//! thread that waits on a word (the `waitAsync` waiter threads) keeps the
//! memory mapped until it lets go, whatever the JavaScript thread detaches
//! meanwhile.

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
/// the caller detached (then pending waits end). The word itself is read in
/// `target`, which is `view` itself or, for a copy-on-write view, a shared
/// read-only mapping of the same segment: a private page would neither see
/// other processes' writes nor meet their futex.
#[derive(Debug)]
pub struct SharedWord {
  pin: Pinned,
  offset: usize,
  view: Arc<Mapping>,
}

impl SharedWord {
  /// The `width`-byte word at `offset` of `target` (`view` or its shared
  /// alias); `None` if either was unmapped, or the word is out of bounds or
  /// not aligned to `width`.
  pub fn new(
    view: &Arc<Mapping>,
    target: &Arc<Mapping>,
    offset: usize,
    width: usize,
  ) -> Option<SharedWord> {
    if view.is_unmapped() || !matches!(width, 4 | 8) {
      return None;
    }
    let pin = target.pin()?;
    let fits = offset
      .checked_add(width)
      .is_some_and(|end| end <= pin.len());
    let aligned = (pin.as_ptr() as usize + offset).is_multiple_of(width);
    (fits && aligned).then(|| SharedWord {
      pin,
      offset,
      view: Arc::clone(view),
    })
  }

  /// The word as a 32-bit atomic.
  pub fn word(&self) -> &AtomicU32 {
    // SAFETY: `new` checked that 4 aligned bytes at `offset` lie in the
    // mapping, which the pin keeps mapped for as long as `self` lives.
    unsafe { AtomicU32::from_ptr(self.pin.as_ptr().add(self.offset).cast()) }
  }

  /// The word as a 64-bit atomic (made with width 8).
  pub fn pair(&self) -> &AtomicU64 {
    debug_assert!(self.pin.len() >= self.offset + 8);
    // SAFETY: as in `word`, for the 8 aligned bytes `new` checked.
    unsafe { AtomicU64::from_ptr(self.pin.as_ptr().add(self.offset).cast()) }
  }

  /// Whether the caller's view was detached: waits on it should end.
  pub fn is_detached(&self) -> bool {
    self.view.is_unmapped()
  }

  /// Whether writes through the caller's view reach the segment.
  pub fn is_writable(&self) -> bool {
    self.view.access() == Access::ReadWrite
  }
}

/// Waits while `word` holds `expected`: [`WaitOutcome::NotEqual`] at once if
/// it does not, [`WaitOutcome::Ok`] when woken by [`notify`] or when the
/// word changes, [`WaitOutcome::TimedOut`] after `timeout` (`None`: never).
///
/// With `spin`, first watches the word for a few microseconds. A spinning
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
        _ => return Ok(WaitOutcome::TimedOut),
      },
      None => None,
    };
    match os::wait(word, expected, remaining)? {
      Wake::Woken | Wake::Changed => return Ok(WaitOutcome::Ok),
      // A timeout that ends early (a capped OS timeout) goes round again.
      Wake::TimedOut | Wake::Interrupted => {}
    }
  }
}

/// Wakes up to `count` waiters on `word` (`u32::MAX`: all) in every
/// process; returns how many the OS says it woke (Linux counts exactly;
/// macOS and Windows tell less, see their backends).
///
/// # Errors
/// An OS error from the wake call; never for a word held by a [`SharedWord`].
pub fn notify(word: &AtomicU32, count: u32) -> Result<usize> {
  os::wake(word, count)
}

// ---- The adaptive spin ----
//
// Each thread keeps a spin budget between MIN_SPIN and MAX_SPIN. A wait that
// the spin answers pulls the budget towards twice what the answer took; a
// spin that runs out halves it. Every PROBE_EVERY-th wait spins the full
// MAX_SPIN, so that a budget that shrank (a busy machine, a slow partner)
// grows back once spinning pays again. A partner that answers within a few
// microseconds is thus waited for by spinning; on an overloaded machine,
// where spinning only keeps the partner off the CPU, waits sleep almost at
// once.

const MIN_SPIN: Duration = Duration::from_nanos(200);
const MAX_SPIN: Duration = Duration::from_micros(8);
const FIRST_SPIN: Duration = Duration::from_micros(4);
const PROBE_EVERY: u32 = 16;

thread_local! {
  /// The budget, and a count of spins for probing.
  static BUDGET: Cell<(Duration, u32)> = const { Cell::new((FIRST_SPIN, 1)) };
}

/// Whether spinning can help at all: not on a single CPU, where the partner
/// cannot run while we spin.
fn can_spin() -> bool {
  static PARALLEL: OnceLock<bool> = OnceLock::new();
  *PARALLEL.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
}

/// The spin phase of one wait.
pub(crate) struct Spinner {
  budget: Option<Duration>,
}

impl Spinner {
  /// A spinner for a wait of `timeout`; idle unless `enabled`.
  pub(crate) fn new(enabled: bool, timeout: Option<Duration>) -> Spinner {
    let budget = (enabled && can_spin()).then(|| {
      let (budget, count) = BUDGET.with(Cell::get);
      BUDGET.with(|state| state.set((budget, count.wrapping_add(1))));
      let budget = if count.is_multiple_of(PROBE_EVERY) {
        MAX_SPIN
      } else {
        budget
      };
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
        adjust(|old| old / 2);
        return false;
      }
    }
  }
}

fn adjust(change: impl FnOnce(Duration) -> Duration) {
  BUDGET.with(|state| {
    let (budget, count) = state.get();
    state.set((change(budget).clamp(MIN_SPIN, MAX_SPIN), count));
  });
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::{Name, OpenOptions, Segment};
  use std::thread;

  /// A fresh segment mapped twice (as two processes would), deleted at once.
  fn two_mappings(tag: &str) -> (Arc<Mapping>, Arc<Mapping>) {
    let name = Name::parse(&format!("named-shm-sync-test-{tag}-{}", std::process::id())).unwrap();
    let options = OpenOptions {
      create: true,
      exclusive: true,
      ..OpenOptions::default()
    };
    let segment = Segment::open(&name, 4096, &options).unwrap();
    Segment::delete(&name).unwrap();
    let a = Arc::new(segment.map(Access::ReadWrite).unwrap());
    let b = Arc::new(segment.map(Access::ReadWrite).unwrap());
    (a, b)
  }

  #[test]
  fn not_equal_and_timed_out() {
    let (a, _) = two_mappings("outcomes");
    let word = SharedWord::new(&a, &a, 8, 4).unwrap();
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
    assert!(SharedWord::new(&a, &a, 4094, 4).is_none());
    assert!(SharedWord::new(&a, &a, 2, 4).is_none());
    assert!(SharedWord::new(&a, &a, 4, 8).is_none());
    assert!(SharedWord::new(&a, &a, 4, 3).is_none());
    assert!(SharedWord::new(&a, &b, 4088, 8).is_some());
    // SAFETY: nothing else uses `b`'s memory.
    unsafe { b.unmap() };
    assert!(SharedWord::new(&b, &b, 0, 4).is_none());
    assert!(SharedWord::new(&a, &b, 0, 4).is_none());
  }

  #[test]
  fn a_pin_defers_the_unmap() {
    let (a, _) = two_mappings("pin");
    let word = SharedWord::new(&a, &a, 0, 4).unwrap();
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
      let waiter_word = SharedWord::new(&a, &a, 64, 4).unwrap();
      let waiter =
        thread::spawn(move || wait(waiter_word.word(), 0, Some(Duration::from_secs(10)), spin));
      let word = SharedWord::new(&b, &b, 64, 4).unwrap();
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
  fn ping_pong_loses_no_wake_up() {
    let (a, b) = two_mappings("ping-pong");
    const ROUNDS: u32 = 2000;
    let theirs = SharedWord::new(&b, &b, 0, 4).unwrap();
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
    let ours = SharedWord::new(&a, &a, 0, 4).unwrap();
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
