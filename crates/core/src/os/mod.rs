//! The OS backends. Each one offers the same private interface:
//!
//! - `Handle`: an open segment (an `OwnedFd`, a `HANDLE`), closed on drop;
//! - `open(os_name, read_only)`, `reopen_read_only(&Handle, os_name)`,
//!   `size_of(&Handle)`, `unlink(os_name)`;
//! - creating in two steps: `create_unnamed(os_name, size, &CreateOptions)`
//!   gives an `Unnamed` segment (`handle()`, `into_handle()`) that no other
//!   process can open yet, and `publish(&Unnamed, os_name)` makes it
//!   openable by name (`EEXIST` when the name is taken; it may be retried);
//! - `map(&Handle, len, Access)` and `unmap(ptr, len)`; on POSIX also
//!   `map_over(addr, &Handle, len, Access)`, `zero_over(addr, len)` and
//!   `page_size()` for in-heap views (`overlay.rs`); `zero_over` also swaps a
//!   detached `SharedArrayBuffer` view for zero pages in place;
//! - `wait(&AtomicU32, expected, timeout) -> Wake`, `wake(&AtomicU32, count)`,
//!   `wait_any(control, words, timeout) -> WakeAny` with `WAIT_ANY_MAX` (0
//!   where the OS cannot wait on several words at once);
//! - `thread_identity() -> (id, stamp)` and `liveness(id, stamp)`: who owns a
//!   `SharedMutex`, and whether that thread still runs;
//! - `cpu_count()`: whether spinning can ever meet a partner;
//! - `max_map_count()`: the cap on a process's mappings, where the OS has one.
//!
//! This is the one place that chooses a backend.

#[cfg(any(target_os = "linux", target_vendor = "apple"))]
mod posix;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::{
  cpu_count, create_unnamed, liveness, max_map_count, open, publish, reopen_read_only,
  thread_identity, unlink, unlink_created, wait, wait_any, wake, Unnamed, WAIT_ANY_MAX,
};

#[cfg(target_os = "linux")]
mod sigbus;
#[cfg(target_os = "linux")]
pub(crate) use sigbus::catch_faults;

/// Only Linux lets another process shrink a segment under our mappings
/// (macOS sizes a segment once; Windows never resizes one): nothing to catch.
#[cfg(not(target_os = "linux"))]
pub(crate) fn catch_faults() {}

#[cfg(target_vendor = "apple")]
mod macos;
#[cfg(target_vendor = "apple")]
pub(crate) use macos::{
  create_unnamed, liveness, open, publish, size_of, thread_identity, unlink, wait, wake, Unnamed,
};

// Like memmap2 and parking_lot, say plainly what a new system needs rather
// than fail deep inside a backend written for another.
#[cfg(not(any(target_os = "linux", target_vendor = "apple", windows)))]
compile_error!(
  "named-shm has backends for Linux, macOS (and Apple's other systems) and Windows only; \
   another system needs its own file in crates/core/src/os/ offering open, create_unnamed, \
   publish, unlink, wait, wake, thread_identity and liveness (see the list at the top of os/mod.rs)"
);

#[cfg(target_os = "linux")]
pub(crate) use posix::size_of;
#[cfg(any(target_os = "linux", target_vendor = "apple"))]
pub(crate) use posix::{
  effective_uid, map, map_over, ownership_of, page_size, unmap, zero_over, Handle,
};

/// Windows segments have no owning uid or mode bits.
#[cfg(windows)]
pub(crate) fn ownership_of(
  _handle: &Handle,
) -> crate::error::Result<Option<crate::segment::Ownership>> {
  Ok(None)
}

/// Windows has no uids.
#[cfg(windows)]
pub(crate) fn effective_uid() -> Option<u32> {
  None
}

/// Removes a name this process just created, after a later step failed.
/// Only Linux can check that the name still holds our object; elsewhere the
/// name is removed as it is (Windows names vanish with their last handle).
#[cfg(not(target_os = "linux"))]
pub(crate) fn unlink_created(_handle: &Handle, os_name: &str) {
  let _ = unlink(os_name);
}

#[cfg(windows)]
mod windows;
#[cfg(windows)]
mod windows_wake;
#[cfg(windows)]
pub(crate) use windows::{
  create_unnamed, liveness, map, open, publish, size_of, thread_identity, unlink, unmap, Handle,
  Unnamed,
};
#[cfg(windows)]
pub(crate) use windows_wake::{wait, wake};

// macOS and Windows name a segment as they create it; what keeps openers out
// until `init` returns is shared here (unit-tested on every platform; the
// trailer is macOS's alone).
#[cfg_attr(not(target_vendor = "apple"), allow(dead_code))]
mod gate;

/// How to create a segment (see `create_unnamed`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CreateOptions {
  /// Permission bits, masked by the umask (no Windows meaning).
  #[cfg_attr(windows, allow(dead_code))]
  pub mode: u32,
  /// Allocate the memory now (only Linux can choose).
  #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
  pub reserve: bool,
  /// The caller will fill the segment before publishing it: where the OS
  /// names segments from birth, openers must be kept waiting until then.
  #[cfg_attr(target_os = "linux", allow(dead_code))]
  pub for_init: bool,
}

/// How one `wait` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
  /// Woken by a `wake` (or, rarely, spuriously).
  Woken,
  /// The word did not hold the expected value when the OS looked (macOS
  /// cannot tell this from `Woken`).
  #[cfg_attr(
    target_vendor = "apple",
    expect(dead_code, reason = "macOS reports Woken")
  )]
  Changed,
  /// The timeout passed.
  TimedOut,
  /// A signal, or the end of a slice of a longer wait: look again.
  Interrupted,
}

/// How one `wait_any` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
  not(target_os = "linux"),
  expect(dead_code, reason = "only Linux waits on several words")
)]
pub(crate) enum WakeAny {
  /// Word `i` was woken (0 is the control word).
  Woken(usize),
  /// Some word did not hold its expected value.
  Changed,
  /// The timeout passed.
  TimedOut,
  /// A signal: look again.
  Interrupted,
  /// This OS or kernel cannot wait on several words.
  Unsupported,
}

/// Whether a lock owner still runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Liveness {
  /// It runs (or cannot be shown not to).
  Alive,
  /// It is gone: the lock may be taken over.
  Dead,
  /// It cannot be checked from here (another PID namespace): assume alive.
  #[cfg_attr(
    windows,
    expect(dead_code, reason = "Windows thread ids are system-wide")
  )]
  Unknown,
}

/// A read-only handle on the segment `handle` was created as. Elsewhere than
/// Linux there is no way to reopen the object itself, so open the name again.
#[cfg(not(target_os = "linux"))]
pub(crate) fn reopen_read_only(_handle: &Handle, os_name: &str) -> crate::error::Result<Handle> {
  open(os_name, true)
}

/// Only Linux (`futex_waitv`) waits on several words at once: elsewhere
/// `waitAsync` uses a thread per wait.
#[cfg(not(target_os = "linux"))]
pub(crate) const WAIT_ANY_MAX: usize = 0;

/// Not available here (see [`WAIT_ANY_MAX`]).
#[cfg(not(target_os = "linux"))]
pub(crate) fn wait_any(
  _control: (&std::sync::atomic::AtomicU32, u32),
  _words: &[(&std::sync::atomic::AtomicU32, u32)],
  _timeout: Option<std::time::Duration>,
) -> crate::error::Result<WakeAny> {
  Ok(WakeAny::Unsupported)
}

/// CPUs this process may use.
#[cfg(not(target_os = "linux"))]
pub(crate) fn cpu_count() -> usize {
  std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Only Linux caps a process's mappings by a number it publishes.
#[cfg(not(target_os = "linux"))]
pub(crate) fn max_map_count() -> Option<usize> {
  None
}
