//! Who sends and who receives: liveness stamps in the header, so that each
//! side can tell a peer that left (its slot cleared) from one that died
//! (its slot still names a thread that no longer runs).
//!
//! A stamp is the thread's OS id in the low half and the OS's stamp for it
//! (on Linux its start time) in the high half, as `SharedMutex` keeps its
//! owner. A stamp whose high half is 0 (a peer in another language that does
//! not compute it) is never judged dead.

use std::sync::atomic::{AtomicU64, Ordering};

use super::layout::{CLOSED, NOBODY};
use crate::os::{self, Liveness};

/// The calling thread's stamp (never [`NOBODY`] or [`CLOSED`]).
pub(crate) fn my_stamp() -> u64 {
  let (id, stamp) = os::thread_identity();
  let stamp = u64::from(id.max(1)) | u64::from(stamp) << 32;
  if stamp == CLOSED {
    stamp - 1
  } else {
    stamp
  }
}

/// Whether the thread a stamp names has died.
pub(crate) fn is_dead(stamp: u64) -> bool {
  if stamp == NOBODY || stamp == CLOSED {
    return false;
  }
  os::liveness(stamp as u32, (stamp >> 32) as u32) == Liveness::Dead
}

/// What a slot holds, as a claimer sees it.
pub(crate) enum Claim {
  /// Now ours.
  Mine,
  /// Held by a live peer.
  Taken,
  /// The channel was closed by its receiver.
  Closed,
}

/// Claims `slot` for `me`: free, or held by a thread that died.
pub(crate) fn claim(slot: &AtomicU64, me: u64) -> Claim {
  let mut seen = slot.load(Ordering::SeqCst);
  loop {
    // A slot that already names this thread belongs to another handle of
    // ours: each handle claims its own.
    if seen == CLOSED {
      return Claim::Closed;
    }
    if seen == me || (seen != NOBODY && !is_dead(seen)) {
      return Claim::Taken;
    }
    match slot.compare_exchange(seen, me, Ordering::SeqCst, Ordering::SeqCst) {
      Ok(_) => return Claim::Mine,
      Err(now) => seen = now,
    }
  }
}

/// How the senders stand, as a receiver that found the ring empty sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Senders {
  /// Some sender may still send.
  Present,
  /// Every sender closed its end.
  AllClosed,
  /// No sender lives, and one died without closing.
  Died,
}

/// Looks at the sender slots; with `check`, asks the OS whether their
/// threads still run (a system call each, so only now and then).
pub(crate) fn senders(slots: &[AtomicU64], check: bool) -> Senders {
  let mut died = false;
  for slot in slots {
    let stamp = slot.load(Ordering::SeqCst);
    if stamp == NOBODY {
      continue;
    }
    if !check || !is_dead(stamp) {
      return Senders::Present;
    }
    died = true;
  }
  if died {
    Senders::Died
  } else {
    Senders::AllClosed
  }
}
