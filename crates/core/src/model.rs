//! A loom model of the `SharedMutex` protocol, sync and async: the real
//! mutex.rs code runs on loom's atomics, with this module standing in for
//! the OS (a futex, thread liveness). loom runs every interleaving the
//! memory model allows, and fails on a broken invariant or a deadlock, which
//! is how a lost wake-up shows.
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" cargo test -p named-shm-core --release --lib model
//! ```
//!
//! Modelled: `lock`/`unlock` from several threads (mutual exclusion, every
//! sleeper woken), a `lockAsync` turn on a waiter thread against a cancel
//! and a timeout decided under the shard's lock as in waiter.rs (never the
//! lock taken after a cancel was seen, a wake-up it took passed on), a
//! `waitAsync` turn against a `notify` and a cancel (a counted wake-up is
//! always reported), and the takeover from a dead owner. The futex reports
//! only the highest word woken, as Linux's `futex_waitv` does. Not modelled: time (timeouts are a flag a
//! timer thread sets) and spurious wake-ups (the futex here has none).

use std::sync::atomic::AtomicU64 as PlainU64;
use std::time::Duration;

use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::{Condvar, Mutex};

/// How one wait ended (as `os::Wake`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
  Woken,
  Changed,
}

/// Whether a lock owner still runs (as `os::Liveness`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Liveness {
  Alive,
  Dead,
}

/// The spin phase: off in the model (it only delays the same steps).
pub(crate) struct Spinner;

impl Spinner {
  pub(crate) fn new(_enabled: bool, _timeout: Option<Duration>) -> Spinner {
    Spinner
  }

  pub(crate) fn spin(&self, _start: std::time::Instant, _done: impl FnMut() -> bool) -> bool {
    false
  }

  pub(crate) fn slept(&self, _took: Option<Duration>) {}
}

/// Owner ids that died, one bit each (ids 1 to 63). Plain, not loom's: it
/// is the OS's knowledge, set before the model's threads start.
static DEAD: PlainU64 = PlainU64::new(0);

pub(crate) fn liveness(id: u32, _stamp: u32) -> Liveness {
  if DEAD.load(std::sync::atomic::Ordering::SeqCst) & (1 << id) != 0 {
    Liveness::Dead
  } else {
    Liveness::Alive
  }
}

pub(crate) fn thread_identity() -> (u32, u32) {
  unreachable!("the model names its owners with Owner::model")
}

/// A sleeper in the futex: the words it sleeps on, and which a wake took.
struct Sleeper {
  id: usize,
  words: Vec<usize>,
  woken: Vec<bool>,
}

struct Futex {
  sleepers: Mutex<(usize, Vec<Sleeper>)>,
  wakeup: Condvar,
}

loom::lazy_static! {
  static ref FUTEX: Futex = Futex { sleepers: Mutex::new((0, Vec::new())), wakeup: Condvar::new() };
}

/// The 32-bit half the OS compares (the low half: the futex half on a
/// little-endian machine, and the whole value of a control word).
fn futex_half(word: &AtomicU64) -> u32 {
  let value = word.load(Ordering::SeqCst);
  if cfg!(target_endian = "little") {
    value as u32
  } else {
    (value >> 32) as u32
  }
}

/// `futex_waitv`: sleeps unless some word's half differs from its value
/// (`None`), until a [`wake`] on any of them; then says which word, as
/// Linux does: only the highest of those woken meanwhile. Checked and
/// queued under the futex's lock, as the kernel does under its bucket lock.
pub(crate) fn wait_any(words: &[(&AtomicU64, u32)]) -> Option<usize> {
  let mut state = FUTEX.sleepers.lock().unwrap();
  if words.iter().any(|(word, value)| futex_half(word) != *value) {
    return None;
  }
  let id = state.0;
  state.0 += 1;
  state.1.push(Sleeper {
    id,
    words: words.iter().map(|(word, _)| address(word)).collect(),
    woken: vec![false; words.len()],
  });
  loop {
    let at = state.1.iter().position(|s| s.id == id).unwrap();
    if let Some(index) = state.1[at].woken.iter().rposition(|woken| *woken) {
      state.1.remove(at);
      return Some(index);
    }
    state = FUTEX.wakeup.wait(state).unwrap();
  }
}

/// `futex_wait` on one word.
pub(crate) fn wait(words: &[(&AtomicU64, u32)]) -> Wake {
  match wait_any(words) {
    Some(_) => Wake::Woken,
    None => Wake::Changed,
  }
}

/// `FUTEX_WAKE`: wakes up to `count` waits on `word`; how many. Each word
/// of a sleeper is a wait of its own, as in the kernel: a sleeper woken on
/// one word can still be woken (and counted) on another before it runs.
pub(crate) fn wake(word: &AtomicU64, count: u32) -> usize {
  let mut state = FUTEX.sleepers.lock().unwrap();
  let at = address(word);
  let mut woken = 0;
  for sleeper in state.1.iter_mut() {
    if woken == count as usize {
      break;
    }
    let slot = (0..sleeper.words.len()).find(|&i| sleeper.words[i] == at && !sleeper.woken[i]);
    if let Some(slot) = slot {
      sleeper.woken[slot] = true;
      woken += 1;
    }
  }
  FUTEX.wakeup.notify_all();
  woken
}

fn address(word: &AtomicU64) -> usize {
  word as *const AtomicU64 as usize
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::mutex::{LockOutcome, Owner, SharedMutex, Turn};
  use loom::sync::atomic::AtomicUsize;
  use loom::sync::Arc;
  use loom::thread;

  /// Explores with a bound on preemptions: every bug found so far in such
  /// protocols needs two or three, and the full space is too large.
  fn explore(bound: usize, test: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(bound);
    builder.check(test);
  }

  /// A counter bumped by a non-atomic read-modify-write under the lock: two
  /// holders at once would lose a bump.
  fn bump(counter: &AtomicUsize) {
    let value = counter.load(Ordering::Relaxed);
    counter.store(value + 1, Ordering::Relaxed);
  }

  #[test]
  fn model_lock_unlock_excludes_and_wakes_every_sleeper() {
    explore(3, || {
      let word = Arc::new(AtomicU64::new(0));
      let counter = Arc::new(AtomicUsize::new(0));
      let threads: Vec<_> = (1..=2)
        .map(|id| {
          let (word, counter) = (Arc::clone(&word), Arc::clone(&counter));
          thread::spawn(move || {
            let mutex = SharedMutex::new(&word);
            let me = Owner::model(id);
            assert_eq!(mutex.lock_as(me, None, false).unwrap(), LockOutcome::Ok);
            bump(&counter);
            mutex.unlock_as(me).unwrap();
          })
        })
        .collect();
      let mutex = SharedMutex::new(&word);
      let me = Owner::model(3);
      assert_eq!(mutex.lock_as(me, None, false).unwrap(), LockOutcome::Ok);
      bump(&counter);
      mutex.unlock_as(me).unwrap();
      for thread in threads {
        thread.join().unwrap();
      }
      assert_eq!(counter.load(Ordering::SeqCst), 3);
      assert_eq!(word.load(Ordering::SeqCst), 0);
    });
  }

  /// What the shard's lock guards for one async request.
  #[derive(Default)]
  struct Request {
    cancelled: bool,
    expired: bool,
    /// Set by the waiter thread when the request ends: whether it locked.
    ended: Option<bool>,
  }

  /// The waiter thread's loop for one `lockAsync` (waiter.rs's `run` and
  /// `Entry::step`, reduced to one request): turns under the shard's lock,
  /// sleeps on the mutex and the control word outside it.
  fn waiter_thread(
    word: &AtomicU64,
    control: &AtomicU64,
    shard: &Mutex<Request>,
    me: Owner,
  ) -> bool {
    let mutex = SharedMutex::new(word);
    loop {
      let seen = futex_half(control);
      let mut request = shard.lock().unwrap();
      let turn = mutex.turn(me, request.cancelled, false, request.expired);
      let value = match turn {
        Turn::Locked(outcome) => {
          assert_eq!(outcome, LockOutcome::Ok);
          request.ended = Some(true);
          return true;
        }
        Turn::GaveUp => {
          request.ended = Some(false);
          return false;
        }
        Turn::Again => continue,
        Turn::Sleep(value) => value,
      };
      drop(request);
      wait(&[(control, seen), (word, value)]);
    }
  }

  /// `cancel` (waiter.rs `Pool::cancel`) or the clock passing the deadline:
  /// marked under the shard's lock, then a poke of the control word.
  /// Whether the request was still pending, so that the mark counts.
  fn interrupt(control: &AtomicU64, shard: &Mutex<Request>, cancel: bool) -> bool {
    let mut request = shard.lock().unwrap();
    let pending = request.ended.is_none();
    if cancel {
      request.cancelled = true;
    } else {
      request.expired = true;
    }
    drop(request);
    control.fetch_add(1, Ordering::SeqCst);
    wake(control, u32::MAX);
    pending
  }

  /// An async lock races the holder's unlock and a cancel (or a timeout),
  /// while another thread queues for the lock with a blocking `lock`:
  /// - a request cancelled while pending never takes the lock;
  /// - a request that ends without the lock does not hold it, and one that
  ///   took it holds it until it unlocks;
  /// - nobody is left asleep (loom reports a deadlock otherwise): a wake-up
  ///   the giving-up request took is passed on to the blocked locker.
  fn async_lock_race(cancel: bool) {
    explore(2, move || {
      let word = Arc::new(AtomicU64::new(0));
      let control = Arc::new(AtomicU64::new(0));
      let shard = Arc::new(Mutex::new(Request::default()));
      let holder = Owner::model(1);
      let asker = Owner::model(2);
      let queued = Owner::model(3);
      let mutex = SharedMutex::new(&word);
      assert_eq!(mutex.lock_as(holder, None, false).unwrap(), LockOutcome::Ok);

      let waiter = {
        let (word, control, shard) = (Arc::clone(&word), Arc::clone(&control), Arc::clone(&shard));
        thread::spawn(move || {
          let locked = waiter_thread(&word, &control, &shard, asker);
          // The asker's JavaScript thread unlocks what it was told it got.
          if locked {
            SharedMutex::new(&word).unlock_as(asker).unwrap();
          }
          locked
        })
      };
      let other = {
        let word = Arc::clone(&word);
        thread::spawn(move || {
          let mutex = SharedMutex::new(&word);
          assert_eq!(mutex.lock_as(queued, None, false).unwrap(), LockOutcome::Ok);
          mutex.unlock_as(queued).unwrap();
        })
      };
      mutex.unlock_as(holder).unwrap();
      let pending = interrupt(&control, &shard, cancel);
      let locked = waiter.join().unwrap();
      other.join().unwrap();
      if cancel && pending {
        assert!(!locked, "a lock was taken after the cancel was seen");
      }
      assert_eq!(shard.lock().unwrap().ended, Some(locked));
      assert_eq!(word.load(Ordering::SeqCst), 0);
    });
  }

  #[test]
  fn model_async_lock_against_unlock_and_cancel() {
    async_lock_race(true);
  }

  #[test]
  fn model_async_lock_against_unlock_and_timeout() {
    async_lock_race(false);
  }

  /// What the shard's lock guards for one `waitAsync`.
  #[derive(Default)]
  struct WaitRequest {
    cancelled: bool,
    woken: bool,
    /// Set by the waiter thread when the request ends: whether `'ok'`.
    ended: Option<bool>,
  }

  /// A `waitAsync` against a `notify` and a cancel (the word never changes):
  /// the waiter thread (waiter.rs `run`, reduced to one request) records the
  /// word the kernel reports woken under the shard's lock, and the request
  /// ends `'ok'` exactly when the `notify` counted it: a wake-up it took
  /// before the cancel is reported, never dropped.
  #[test]
  fn model_wait_async_against_notify_and_cancel() {
    use crate::wait_turn::{wait_turn, WaitTurn};
    explore(3, || {
      let word = Arc::new(AtomicU64::new(0));
      let control = Arc::new(AtomicU64::new(0));
      let shard = Arc::new(Mutex::new(WaitRequest::default()));
      let waiter = {
        let (word, control, shard) = (Arc::clone(&word), Arc::clone(&control), Arc::clone(&shard));
        thread::spawn(move || loop {
          let seen = futex_half(&control);
          let mut request = shard.lock().unwrap();
          let changed = || futex_half(&word) != 0;
          match wait_turn(request.woken, request.cancelled, false, changed, false) {
            WaitTurn::Woken | WaitTurn::Changed => {
              request.ended = Some(true);
              return;
            }
            WaitTurn::Sleep => {}
            _ => {
              request.ended = Some(false);
              return;
            }
          }
          drop(request);
          if wait_any(&[(&control, seen), (&word, 0)]) == Some(1) {
            shard.lock().unwrap().woken = true;
          }
        })
      };
      let notifier = {
        let word = Arc::clone(&word);
        thread::spawn(move || wake(&word, 1))
      };
      // The cancel, as waiter.rs `Pool::cancel` makes it.
      shard.lock().unwrap().cancelled = true;
      control.fetch_add(1, Ordering::SeqCst);
      wake(&control, u32::MAX);
      let counted = notifier.join().unwrap();
      waiter.join().unwrap();
      let ok = shard.lock().unwrap().ended == Some(true);
      assert_eq!(
        counted,
        usize::from(ok),
        "notify counted {counted}, the wait said ok: {ok}"
      );
    });
  }

  #[test]
  fn model_a_dead_owner_is_taken_over_once() {
    // Ids of its own: the other models run meanwhile with owners 1 to 3.
    DEAD.store(1 << 9, std::sync::atomic::Ordering::SeqCst);
    explore(3, || {
      let word = Arc::new(AtomicU64::new(0));
      // Owner 9 locked and died.
      assert_eq!(
        SharedMutex::new(&word)
          .lock_as(Owner::model(9), None, false)
          .unwrap(),
        LockOutcome::Ok
      );
      let takers: Vec<_> = (10..=11)
        .map(|id| {
          let word = Arc::clone(&word);
          thread::spawn(move || {
            let mutex = SharedMutex::new(&word);
            let me = Owner::model(id);
            let outcome = match mutex.turn(me, false, true, false) {
              Turn::Locked(outcome) => Some(outcome),
              _ => None,
            };
            if outcome.is_some() {
              mutex.unlock_as(me).unwrap();
            }
            outcome
          })
        })
        .collect();
      let outcomes: Vec<_> = takers.into_iter().map(|t| t.join().unwrap()).collect();
      // Exactly one taker saw the death; a second could only find it free.
      let died = outcomes
        .iter()
        .filter(|o| **o == Some(LockOutcome::OwnerDied))
        .count();
      assert_eq!(died, 1, "{outcomes:?}");
    });
    DEAD.store(0, std::sync::atomic::Ordering::SeqCst);
  }
}
