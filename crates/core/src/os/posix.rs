//! What every POSIX system shares: `mmap`, `munmap`, `fstat`, errno names.

use std::ptr;

use rustix::fd::OwnedFd;
use rustix::io::Errno;
use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};

use crate::error::{Error, Result};
use crate::mapping::Access;
use crate::segment::Ownership;

/// An open POSIX shared memory object.
pub(crate) type Handle = OwnedFd;

/// Maps `len` bytes of `fd` from offset 0 (mmap(2)).
pub(crate) fn map(fd: &Handle, len: usize, access: Access) -> Result<*mut u8> {
  let (prot, flags) = protection(access)?;
  // SAFETY: a fresh mapping at an address the kernel picks overlaps nothing
  // Rust owns; the returned pointer is only used within `len`.
  let ptr = unsafe { mmap(ptr::null_mut(), len, prot, flags, fd, 0) }.map_err(os_error("mmap"))?;
  Ok(ptr.cast())
}

/// Maps the first `len` bytes of `fd` at `addr`, replacing whatever was
/// mapped there (`MAP_FIXED`): the in-heap overlay of `overlay.rs`.
///
/// # Safety
/// `[addr, addr + len)` is page-aligned memory this process owns and that
/// nothing reads as anything but the segment from now on; `len` does not
/// reach a page wholly beyond the end of the object (that page would fault).
pub(crate) unsafe fn map_over(
  addr: *mut u8,
  fd: &Handle,
  len: usize,
  access: Access,
) -> Result<()> {
  let (prot, flags) = protection(access)?;
  // SAFETY: the caller's contract; MAP_FIXED replaces the range atomically,
  // so no other thread can see it unmapped in between.
  unsafe { mmap(addr.cast(), len, prot, flags | MapFlags::FIXED, fd, 0) }
    .map_err(os_error("mmap"))?;
  Ok(())
}

/// Puts private zero pages back over `[addr, addr + len)`, dropping an
/// overlay made by [`map_over`] or a detached view's segment
/// (`MAP_FIXED | MAP_ANONYMOUS`).
///
/// `MAP_NORESERVE`: the pages stand in for memory that is gone, and are
/// written only by a stray write to a detached view. Without it Linux
/// charges the whole range to the commit limit, which made this call a
/// fifth slower (3.8 µs against 3.2 for a 4 KiB view); a page written
/// later is allocated as any other then (strict overcommit still charges).
///
/// # Safety
/// `[addr, addr + len)` is page-aligned memory this process owns, which
/// every reader may now see as zeros.
pub(crate) unsafe fn zero_over(addr: *mut u8, len: usize) -> Result<()> {
  // SAFETY: the caller's contract; as in `map_over`, the swap is atomic.
  unsafe {
    rustix::mm::mmap_anonymous(
      addr.cast(),
      len,
      ProtFlags::READ | ProtFlags::WRITE,
      MapFlags::PRIVATE | MapFlags::FIXED | MapFlags::NORESERVE,
    )
  }
  .map_err(os_error("mmap"))?;
  Ok(())
}

/// The size of a page, which mappings are made of.
pub(crate) fn page_size() -> usize {
  rustix::param::page_size()
}

/// The protection and sharing of a mapping with `access`.
fn protection(access: Access) -> Result<(ProtFlags, MapFlags)> {
  // xnu's pshm_mmap refuses anything but MAP_SHARED with EINVAL, so macOS
  // cannot give a read-only view that a stray write leaves private. Say so.
  #[cfg(target_vendor = "apple")]
  if access == Access::CopyOnWrite {
    return Err(
      os_error("mmap")(Errno::NOTSUP).with_detail(
        "macOS cannot map shared memory copy-on-write, so read-only views are unavailable; \
       use read() or readInto()"
          .into(),
      ),
    );
  }
  Ok(match access {
    Access::ReadWrite => (ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED),
    Access::ReadOnly => (ProtFlags::READ, MapFlags::SHARED),
    // A private writable mapping of a read-only fd is allowed: writes go to
    // anonymous copies of the pages (mmap(2), MAP_PRIVATE).
    Access::CopyOnWrite => (ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE),
  })
}

/// Unmaps what [`map`] returned.
///
/// # Safety
/// `ptr`/`len` come from one [`map`] call, unmapped once, no longer used.
pub(crate) unsafe fn unmap(ptr: *mut u8, len: usize) {
  // SAFETY: the caller's contract. munmap fails only for arguments that
  // `map` never produces (munmap(2), EINVAL), so there is nothing to report.
  let _ = unsafe { munmap(ptr.cast(), len) };
}

/// The object's size in bytes (fstat(2), `st_size`).
pub(crate) fn size_of(fd: &Handle) -> Result<u64> {
  let stat = rustix::fs::fstat(fd).map_err(os_error("fstat"))?;
  Ok(u64::try_from(stat.st_size).unwrap_or(0))
}

/// Who owns the segment and its permission bits (fstat(2), `st_uid`, `st_mode`).
pub(crate) fn ownership_of(fd: &Handle) -> Result<Option<Ownership>> {
  let stat = rustix::fs::fstat(fd).map_err(os_error("fstat"))?;
  Ok(Some(Ownership {
    uid: stat.st_uid,
    mode: (stat.st_mode & 0o777) as u32,
  }))
}

/// The user this process acts as (geteuid(2)).
pub(crate) fn effective_uid() -> Option<u32> {
  Some(rustix::process::geteuid().as_raw())
}

/// Turns an errno from `syscall` into an [`Error::Os`].
pub(crate) fn os_error(syscall: &'static str) -> impl Fn(Errno) -> Error {
  move |errno| Error::Os {
    code: errno_code(errno),
    errno: errno.raw_os_error(),
    syscall,
    name: None,
    detail: None,
  }
}

/// The symbolic name of an errno, as Node prints it.
fn errno_code(errno: Errno) -> &'static str {
  const NAMES: &[(Errno, &str)] = &[
    (Errno::ACCESS, "EACCES"),
    (Errno::AGAIN, "EAGAIN"),
    (Errno::BADF, "EBADF"),
    (Errno::BUSY, "EBUSY"),
    (Errno::EXIST, "EEXIST"),
    (Errno::FAULT, "EFAULT"),
    (Errno::FBIG, "EFBIG"),
    (Errno::INTR, "EINTR"),
    (Errno::INVAL, "EINVAL"),
    (Errno::ISDIR, "EISDIR"),
    (Errno::LOOP, "ELOOP"),
    (Errno::MFILE, "EMFILE"),
    (Errno::NAMETOOLONG, "ENAMETOOLONG"),
    (Errno::NFILE, "ENFILE"),
    (Errno::NODEV, "ENODEV"),
    (Errno::NOENT, "ENOENT"),
    (Errno::NOMEM, "ENOMEM"),
    (Errno::NOSPC, "ENOSPC"),
    (Errno::NOSYS, "ENOSYS"),
    (Errno::NOTDIR, "ENOTDIR"),
    (Errno::NOTSUP, "ENOTSUP"),
    (Errno::NXIO, "ENXIO"),
    (Errno::OVERFLOW, "EOVERFLOW"),
    (Errno::PERM, "EPERM"),
    (Errno::ROFS, "EROFS"),
    (Errno::TIMEDOUT, "ETIMEDOUT"),
    (Errno::XDEV, "EXDEV"),
  ];
  NAMES
    .iter()
    .find(|(known, _)| *known == errno)
    .map_or("UNKNOWN", |(_, name)| name)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn errno_names() {
    assert_eq!(errno_code(Errno::NOENT), "ENOENT");
    assert_eq!(errno_code(Errno::NOSPC), "ENOSPC");
    let error = os_error("shm_open")(Errno::EXIST);
    assert_eq!(error.code(), "EEXIST");
    assert_eq!(error.errno(), Some(Errno::EXIST.raw_os_error()));
    assert_eq!(error.syscall(), Some("shm_open"));
  }
}
