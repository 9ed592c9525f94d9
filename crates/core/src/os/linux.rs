//! Linux: POSIX shared memory is a tmpfs mounted at `/dev/shm`, and
//! `shm_open(name)` is `open("/dev/shm/name")` (shm_overview(7)). Opening the
//! files ourselves lets a creator size a segment before anyone can see it and
//! then publish it with link(2), which fails with `EEXIST` like `O_EXCL`.

use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fd::AsFd;
use rustix::fs::{self, AtFlags, FallocateFlags, Mode, OFlags, CWD};
use rustix::io::Errno;

use super::posix::{os_error, Handle};
use crate::error::{human_bytes, Error, Result};

const SHM_DIR: &str = "/dev/shm";

fn path_of(os_name: &str) -> String {
  // `os_name` starts with its `/` and holds no other (see `name.rs`).
  format!("{SHM_DIR}{os_name}")
}

/// Opens an existing segment. `O_NOFOLLOW` refuses a symlink planted in the
/// world-writable `/dev/shm`; `O_NONBLOCK` keeps a FIFO there from hanging us.
pub(crate) fn open(os_name: &str, read_only: bool) -> Result<Handle> {
  let access = if read_only {
    OFlags::RDONLY
  } else {
    OFlags::RDWR
  };
  let flags = access | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
  fs::open(path_of(os_name), flags, Mode::empty()).map_err(os_error("shm_open"))
}

/// Creates a segment of `size` zero bytes, sized (and, with `reserve`,
/// allocated) before it gets its name, so no opener sees it half made.
pub(crate) fn create(os_name: &str, size: u64, mode: u32, reserve: bool) -> Result<Handle> {
  let mode = Mode::from_bits_truncate(mode & 0o777);
  // An unnamed tmpfs file (open(2), O_TMPFILE) vanishes by itself if we die
  // before naming it.
  let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
  match fs::open(SHM_DIR, flags, mode) {
    Ok(fd) => {
      prepare(&fd, size, reserve)?;
      let proc_path = format!("/proc/self/fd/{}", rustix::fd::AsRawFd::as_raw_fd(&fd));
      match fs::linkat(
        CWD,
        &proc_path,
        CWD,
        path_of(os_name),
        AtFlags::SYMLINK_FOLLOW,
      ) {
        Ok(()) => Ok(fd),
        // No /proc in this sandbox: fall back to a named temporary.
        Err(Errno::NOENT) if fs::access("/proc/self/fd", fs::Access::EXISTS).is_err() => {
          create_via_temporary(os_name, size, mode, reserve)
        }
        Err(errno) => Err(publish_error(errno)),
      }
    }
    // Kernels or filesystems without O_TMPFILE.
    Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => {
      create_via_temporary(os_name, size, mode, reserve)
    }
    Err(errno) => Err(os_error("shm_open")(errno)),
  }
}

/// The fallback: a hidden temporary name, linked to the real one, then removed.
fn create_via_temporary(os_name: &str, size: u64, mode: Mode, reserve: bool) -> Result<Handle> {
  static SEQUENCE: AtomicU64 = AtomicU64::new(0);
  let temporary = format!(
    "{SHM_DIR}/.named-shm-{}-{}",
    rustix::process::getpid().as_raw_nonzero(),
    SEQUENCE.fetch_add(1, Ordering::Relaxed)
  );
  let flags = OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
  let fd = fs::open(&temporary, flags, mode).map_err(os_error("shm_open"))?;
  let result = prepare(&fd, size, reserve)
    .and_then(|()| fs::link(&temporary, path_of(os_name)).map_err(publish_error));
  let _ = fs::unlink(&temporary);
  result.map(|()| fd)
}

/// Sets the size (ftruncate(2) zero-fills) and reserves the pages
/// (fallocate(2) on tmpfs allocates them, or fails with `ENOSPC`).
fn prepare(fd: &Handle, size: u64, reserve: bool) -> Result<()> {
  fs::ftruncate(fd, size).map_err(os_error("ftruncate"))?;
  if reserve {
    fs::fallocate(fd, FallocateFlags::empty(), 0, size).map_err(|errno| {
      let error = os_error("fallocate")(errno);
      if errno == Errno::NOSPC {
        error.with_detail(no_space_detail(fd.as_fd(), size))
      } else {
        error
      }
    })?;
  }
  Ok(())
}

fn no_space_detail(fd: rustix::fd::BorrowedFd<'_>, size: u64) -> String {
  let asked = human_bytes(size);
  match fs::fstatvfs(fd) {
    Ok(stat) => format!(
      "asked for {asked} but {SHM_DIR} has {} free of {}; in a container, raise it with --shm-size",
      human_bytes(stat.f_bavail.saturating_mul(stat.f_frsize)),
      human_bytes(stat.f_blocks.saturating_mul(stat.f_frsize)),
    ),
    Err(_) => format!("asked for {asked}; in a container, raise {SHM_DIR} with --shm-size"),
  }
}

/// An `EEXIST` from link(2) is the `O_EXCL` failure of `shm_open`.
fn publish_error(errno: Errno) -> Error {
  os_error(if errno == Errno::EXIST {
    "shm_open"
  } else {
    "link"
  })(errno)
}

/// Removes the name (shm_unlink(3)).
pub(crate) fn unlink(os_name: &str) -> Result<()> {
  fs::unlink(path_of(os_name)).map_err(os_error("shm_unlink"))
}
