//! What macOS and Windows share to keep a created segment from other
//! processes until its `init` has returned. Linux needs none of it: there the
//! segment has no name before it is published.
//!
//! - [`Initializing`]: the names this process is initializing right now. An
//!   open of one of them from this process (an `init` that opens its own
//!   name) answers `ENOENT` at once, as on Linux, instead of waiting for
//!   itself.
//! - [`poll_until`]: how an opener waits for someone else's `init`, bounded.
//! - [`Trailer`]: the record a macOS creator keeps after the caller's bytes,
//!   saying whether `init` is running, finished or failed, and who runs it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long an opener waits for another process's `init` to finish.
pub(crate) const INIT_GRACE: Duration = Duration::from_millis(1000);

static NAMES: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn names() -> std::sync::MutexGuard<'static, Vec<String>> {
  NAMES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// While alive, `os_name` is being initialized by this process.
#[derive(Debug)]
pub(crate) struct Initializing(String);

impl Initializing {
  pub(crate) fn new(os_name: &str) -> Initializing {
    names().push(os_name.to_owned());
    Initializing(os_name.to_owned())
  }

  /// Whether this process is initializing `os_name`.
  pub(crate) fn contains(os_name: &str) -> bool {
    names().iter().any(|name| name == os_name)
  }
}

impl Drop for Initializing {
  fn drop(&mut self) {
    let mut names = names();
    if let Some(index) = names.iter().position(|name| *name == self.0) {
      names.swap_remove(index);
    }
  }
}

/// Calls `check` until it returns `Some`, sleeping between calls (50 µs
/// doubling to 10 ms); after `grace`, returns `None`.
pub(crate) fn poll_until<T>(grace: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
  let deadline = Instant::now() + grace;
  let mut pause = Duration::from_micros(50);
  loop {
    if let Some(answer) = check() {
      return Some(answer);
    }
    if Instant::now() >= deadline {
      return None;
    }
    std::thread::sleep(pause);
    pause = (pause * 2).min(Duration::from_millis(10));
  }
}

/// Bytes a [`Trailer`] takes after the caller's bytes.
pub(crate) const TRAILER_BYTES: u64 = 32;

/// "nshminit", little-endian: marks a trailer.
const MAGIC: u64 = u64::from_le_bytes(*b"nshminit");

/// Where an `init` stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InitState {
  /// The creator has not written its trailer yet.
  Unmarked,
  /// `init` runs, in the thread `(id, stamp)` of `thread_identity()`.
  Running { id: u32, stamp: u32 },
  /// `init` returned: the segment is complete.
  Done,
  /// `init` failed: the segment is about to go.
  Failed,
}

const RUNNING: u32 = 1;
const DONE: u32 = 2;
const FAILED: u32 = 3;

/// The record at the end of a segment created with an `init` (macOS, whose
/// segments are named from birth):
/// `magic u64 | state u32 | owner id u32 | owner stamp u32 | pad u32 | size u64`.
/// It lives in the segment itself, so whoever holds the segment can tell,
/// whatever became of the name.
#[repr(C)]
pub(crate) struct Trailer {
  magic: AtomicU64,
  state: AtomicU32,
  owner_id: AtomicU32,
  owner_stamp: AtomicU32,
  _pad: AtomicU32,
  size: AtomicU64,
}

impl Trailer {
  /// The trailer at `address`.
  ///
  /// # Safety
  /// `address` is 8-byte aligned and valid for [`TRAILER_BYTES`] bytes of
  /// shared memory for `'a`.
  pub(crate) unsafe fn at<'a>(address: *mut u8) -> &'a Trailer {
    // SAFETY: the caller's contract; every field is an atomic, valid for
    // any bytes another process may write.
    unsafe { &*address.cast::<Trailer>() }
  }

  /// Marks `init` as running in this thread, for a segment of `size` bytes.
  pub(crate) fn start(&self, size: u64, (id, stamp): (u32, u32)) {
    self.size.store(size, Ordering::Relaxed);
    self.owner_id.store(id, Ordering::Relaxed);
    self.owner_stamp.store(stamp, Ordering::Relaxed);
    self.state.store(RUNNING, Ordering::Relaxed);
    // The magic last: a reader that sees it sees the rest.
    self.magic.store(MAGIC, Ordering::Release);
  }

  /// Records how `init` ended; everything it wrote is visible to a reader
  /// that sees [`InitState::Done`].
  pub(crate) fn finish(&self, succeeded: bool) {
    self
      .state
      .store(if succeeded { DONE } else { FAILED }, Ordering::Release);
  }

  /// Where `init` stands.
  pub(crate) fn state(&self) -> InitState {
    if self.magic.load(Ordering::Acquire) != MAGIC {
      return InitState::Unmarked;
    }
    match self.state.load(Ordering::Acquire) {
      RUNNING => InitState::Running {
        id: self.owner_id.load(Ordering::Relaxed),
        stamp: self.owner_stamp.load(Ordering::Relaxed),
      },
      DONE => InitState::Done,
      _ => InitState::Failed,
    }
  }

  /// The caller's size of the segment.
  pub(crate) fn size(&self) -> u64 {
    self.size.load(Ordering::Relaxed)
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::mapping::Access;
  use crate::test_support::scratch_segment;

  #[test]
  fn initializing_names_come_and_go() {
    assert!(!Initializing::contains("/gate-a"));
    let a = Initializing::new("/gate-a");
    let again = Initializing::new("/gate-a");
    assert!(Initializing::contains("/gate-a"));
    drop(a);
    assert!(Initializing::contains("/gate-a"));
    drop(again);
    assert!(!Initializing::contains("/gate-a"));
  }

  #[test]
  fn polling_ends_with_the_answer_or_the_grace() {
    let mut calls = 0;
    assert_eq!(
      poll_until(Duration::from_secs(5), || {
        calls += 1;
        (calls == 3).then_some(calls)
      }),
      Some(3)
    );
    let started = Instant::now();
    assert_eq!(poll_until(Duration::from_millis(30), || None::<()>), None);
    assert!(started.elapsed() >= Duration::from_millis(30));
  }

  #[test]
  fn a_trailer_in_shared_memory_tells_another_thread_how_init_ends() {
    let segment = scratch_segment("gate-trailer");
    let writer = segment.map(Access::ReadWrite).unwrap();
    let reader = segment.map(Access::ReadOnly).unwrap();
    // SAFETY: both mappings are 4 KiB, page-aligned, alive for the test.
    let (mine, theirs) = unsafe {
      (
        Trailer::at(writer.as_ptr().add(64)),
        Trailer::at(reader.as_ptr().add(64)),
      )
    };
    assert_eq!(theirs.state(), InitState::Unmarked);
    mine.start(64, (7, 9));
    assert_eq!(theirs.state(), InitState::Running { id: 7, stamp: 9 });
    assert_eq!(theirs.size(), 64);
    let address = writer.as_ptr() as usize;
    let finisher = std::thread::spawn(move || {
      std::thread::sleep(Duration::from_millis(20));
      // SAFETY: the mapping outlives the thread (joined below).
      unsafe { (address as *mut u8).write_bytes(0xab, 64) };
      // SAFETY: as above.
      unsafe { Trailer::at((address as *mut u8).add(64)) }.finish(true);
    });
    let seen = poll_until(Duration::from_secs(5), || match theirs.state() {
      InitState::Running { .. } => None,
      state => Some(state),
    });
    finisher.join().unwrap();
    assert_eq!(seen, Some(InitState::Done));
    // SAFETY: the reader mapping is 4 KiB.
    let bytes = unsafe { std::slice::from_raw_parts(reader.as_ptr(), 64) };
    assert!(bytes.iter().all(|&b| b == 0xab));
    mine.finish(false);
    assert_eq!(theirs.state(), InitState::Failed);
  }
}
