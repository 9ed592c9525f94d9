//! How a wait or a lock ended, as the binding tells the facade: one enum,
//! exported to TypeScript (binding.d.ts), so the numbers have one source.

use napi_derive::napi;

/// The outcome of `wait`, `waitAsync`, `lock`, `lockAsync` and `tryLock`.
/// The facade turns the first five into the strings users see.
#[napi]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncOutcome {
  /// `'ok'`: woken, changed, or locked.
  Ok = 0,
  /// `'not-equal'`: the word did not hold the expected value.
  NotEqual = 1,
  /// `'timed-out'`: the timeout passed.
  TimedOut = 2,
  /// `'owner-died'`: locked, taken over from an owner that died.
  OwnerDied = 3,
  /// `'busy'`: `tryLock` found the mutex held.
  Busy = 4,
  /// An async wait's view was detached meanwhile.
  Detached = 5,
  /// An async wait was cancelled (its signal aborted).
  Cancelled = 6,
  /// An async wait failed with an error (its code, message, errno, syscall
  /// come along).
  Failed = 7,
}

impl SyncOutcome {
  /// The number that crosses to JavaScript.
  pub(crate) fn code(self) -> u32 {
    self as u32
  }
}
