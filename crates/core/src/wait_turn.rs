//! What one turn of a waiter thread decides for a `waitAsync`, shared by
//! waiter.rs and the loom model (model.rs).

/// How a `waitAsync` request stands after one look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitTurn {
  /// A wake-up reached it: `'ok'`.
  Woken,
  /// Cancelled before any wake-up reached it.
  Cancelled,
  /// Its view was detached.
  Detached,
  /// The word left the expected value: `'ok'`.
  Changed,
  /// The deadline passed.
  Expired,
  /// Nothing yet: sleep on.
  Sleep,
}

/// Decides a `waitAsync`'s turn. A wake-up that reached the request comes
/// first: its `notify` counted it, so it must end as `'ok'` whatever else
/// happened meanwhile (a cancel, a detach, the deadline), or the count
/// would name nobody.
pub(crate) fn wait_turn(
  woken: bool,
  cancelled: bool,
  detached: bool,
  changed: impl FnOnce() -> bool,
  expired: bool,
) -> WaitTurn {
  if woken {
    WaitTurn::Woken
  } else if cancelled {
    WaitTurn::Cancelled
  } else if detached {
    WaitTurn::Detached
  } else if changed() {
    WaitTurn::Changed
  } else if expired {
    WaitTurn::Expired
  } else {
    WaitTurn::Sleep
  }
}
