//! The OS backends. Each one offers the same private interface:
//!
//! - `Handle`: an open segment (an `OwnedFd`, a `HANDLE`), closed on drop;
//! - `open(os_name, read_only)`, `create(os_name, size, mode, reserve)`,
//!   `reopen_read_only(&Handle, os_name)`, `size_of(&Handle)`, `unlink(os_name)`;
//! - `map(&Handle, len, Access)` and `unmap(ptr, len)`.
//!
//! This is the one place that chooses a backend.

#[cfg(unix)]
mod posix;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::{create, open, reopen_read_only, unlink};

#[cfg(all(unix, not(target_os = "linux")))]
mod macos;
#[cfg(all(unix, not(target_os = "linux")))]
pub(crate) use macos::{create, open, unlink};

#[cfg(unix)]
pub(crate) use posix::{map, size_of, unmap, Handle};

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::{create, map, open, size_of, unlink, unmap, Handle};

/// A read-only handle on the segment `handle` was created as. Elsewhere than
/// Linux there is no way to reopen the object itself, so open the name again.
#[cfg(not(target_os = "linux"))]
pub(crate) fn reopen_read_only(_handle: &Handle, os_name: &str) -> crate::error::Result<Handle> {
  open(os_name, true)
}
