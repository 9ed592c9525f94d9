//! macOS and the other POSIX systems: `shm_open(3)` names are not files, so
//! a creator cannot size a segment before naming it. It creates with
//! `O_EXCL` and sizes at once; openers wait out the short size-0 window
//! (see `wait_until_sized` in `segment.rs`).

use rustix::fs::{ftruncate, Mode};
use rustix::shm;

use super::posix::{os_error, Handle};
use crate::error::Result;

/// Opens an existing segment.
pub(crate) fn open(os_name: &str, read_only: bool) -> Result<Handle> {
  let access = if read_only {
    shm::OFlags::RDONLY
  } else {
    shm::OFlags::RDWR
  };
  shm::open(os_name, access, Mode::empty()).map_err(os_error("shm_open"))
}

/// Creates a segment of `size` zero bytes. macOS has no `fallocate`: its
/// shared memory is wired on `ftruncate`, which fails rather than overcommits,
/// so `reserve` needs nothing more here.
///
/// What xnu's `posix_shm.c` does differently from Linux, for the docs:
/// `shm_open` stores `mode & ALLPERMS` without the umask; `ftruncate` works
/// once per object and rounds the size up to whole pages (so `fstat`, and an
/// opener asking for size 0, see the rounded size).
pub(crate) fn create(os_name: &str, size: u64, mode: u32, _reserve: bool) -> Result<Handle> {
  let flags = shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR;
  let fd = shm::open(os_name, flags, Mode::from_bits_truncate(mode & 0o777))
    .map_err(os_error("shm_open"))?;
  if let Err(errno) = ftruncate(&fd, size) {
    // Do not leave a size-0 segment behind under the name. (Should another
    // process delete and recreate the name in this instant, this removes
    // theirs: macOS offers no way to check that the name is still ours.)
    let _ = shm::unlink(os_name);
    return Err(os_error("ftruncate")(errno));
  }
  Ok(fd)
}

/// Removes the name (shm_unlink(3)).
pub(crate) fn unlink(os_name: &str) -> Result<()> {
  shm::unlink(os_name).map_err(os_error("shm_unlink"))
}
