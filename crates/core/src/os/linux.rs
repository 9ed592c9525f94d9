//! Linux: POSIX shared memory is a tmpfs mounted at `/dev/shm`, and
//! `shm_open(name)` is `open("/dev/shm/name")` (shm_overview(7)). Opening the
//! files ourselves lets a creator size a segment before anyone can see it and
//! then publish it with link(2), which fails with `EEXIST` like `O_EXCL`.

use std::sync::atomic::{AtomicU64, Ordering};

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
      apply_umask(&fd, mode)?;
      prepare(&fd, size, reserve)?;
      match fs::linkat(
        CWD,
        proc_path(&fd),
        CWD,
        path_of(os_name),
        AtFlags::SYMLINK_FOLLOW,
      ) {
        Ok(()) => Ok(fd),
        // No /proc in this sandbox: fall back to a named temporary.
        Err(Errno::NOENT) if !has_proc() => create_via_temporary(os_name, size, mode, reserve),
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

/// A read-only descriptor of the same file as `fd`, for a creator that asked
/// for `readOnly`. Reopening `/proc/self/fd/N` reaches this very inode, so a
/// process that deletes and recreates the name meanwhile cannot swap it.
pub(crate) fn reopen_read_only(fd: &Handle, os_name: &str) -> Result<Handle> {
  let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
  match fs::open(proc_path(fd), flags, Mode::empty()) {
    Ok(fd) => Ok(fd),
    Err(Errno::NOENT) if !has_proc() => open(os_name, true),
    Err(errno) => Err(os_error("shm_open")(errno)),
  }
}

fn proc_path(fd: &Handle) -> String {
  format!("/proc/self/fd/{}", rustix::fd::AsRawFd::as_raw_fd(fd))
}

fn has_proc() -> bool {
  fs::access("/proc/self/fd", fs::Access::EXISTS).is_ok()
}

/// Before Linux 6.0, O_TMPFILE skipped the umask on filesystems without
/// POSIX ACLs ("fs: add missing umask strip in vfs_tmpfile"). Where the new
/// file kept every bit asked for, apply the umask ourselves, as fs.open would.
fn apply_umask(fd: &Handle, mode: Mode) -> Result<()> {
  let actual = fs::fstat(fd).map_err(os_error("fstat"))?.st_mode & 0o777;
  if actual != mode.bits() {
    return Ok(()); // the kernel (or a default ACL) already decided
  }
  let Some(umask) = current_umask() else {
    return Ok(());
  };
  let wanted = mode.bits() & !umask;
  if wanted != actual {
    fs::fchmod(fd, Mode::from_bits_truncate(wanted)).map_err(os_error("fchmod"))?;
  }
  Ok(())
}

/// The umask, read without changing it (`Umask:` in proc_pid_status(5), Linux 4.7+).
fn current_umask() -> Option<u32> {
  let status = std::fs::read_to_string("/proc/self/status").ok()?;
  parse_umask(&status)
}

fn parse_umask(status: &str) -> Option<u32> {
  let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
  u32::from_str_radix(line.trim(), 8).ok()
}

/// The fallback: a hidden temporary name, linked to the real one, then removed.
fn create_via_temporary(os_name: &str, size: u64, mode: Mode, reserve: bool) -> Result<Handle> {
  static SEQUENCE: AtomicU64 = AtomicU64::new(0);
  let flags = OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
  // Another PID namespace sharing /dev/shm may hold the same temporary name:
  // an EEXIST here says nothing about the segment, so try the next one.
  let mut attempts = 0;
  let (temporary, fd) = loop {
    let temporary = format!(
      "{SHM_DIR}/.named-shm-{}-{}",
      rustix::process::getpid().as_raw_nonzero(),
      SEQUENCE.fetch_add(1, Ordering::Relaxed)
    );
    match fs::open(&temporary, flags, mode) {
      Ok(fd) => break (temporary, fd),
      Err(Errno::EXIST) if attempts < 100 => attempts += 1,
      Err(errno) => return Err(os_error("shm_open")(errno)),
    }
  };
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
        // tmpfs gives back what a failed fallocate took, so this is what is
        // free for a smaller request now.
        let space = fs::fstatvfs(fd).ok().map(|stat| Space {
          free: stat.f_bavail.saturating_mul(stat.f_frsize),
          total: stat.f_blocks.saturating_mul(stat.f_frsize),
        });
        error.with_detail(no_space_detail(size, space))
      } else {
        error
      }
    })?;
  }
  Ok(())
}

/// Free and total bytes of the shared memory filesystem.
#[derive(Clone, Copy)]
struct Space {
  free: u64,
  total: u64,
}

/// What an `ENOSPC` says besides the errno: how much was asked, how much is
/// free, and the cure (`docker run --shm-size`, default 64 MiB, is the usual cause).
fn no_space_detail(asked: u64, space: Option<Space>) -> String {
  const MIB: u64 = 1 << 20;
  let Some(Space { free, total }) = space else {
    return format!(
      "asked for {} ({asked} bytes); make {SHM_DIR} larger (in a container: --shm-size)",
      human_bytes(asked)
    );
  };
  let needed = total.saturating_sub(free).saturating_add(asked);
  format!(
    "asked for {} ({asked} bytes) but {SHM_DIR} has {} ({free} bytes) free of {}; \
     free some shared memory or make {SHM_DIR} larger (in a container: --shm-size={}m or more)",
    human_bytes(asked),
    human_bytes(free),
    human_bytes(total),
    needed.div_ceil(MIB),
  )
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

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn no_space_message() {
    let space = Space {
      free: 16 << 20,
      total: 16 << 20,
    };
    assert_eq!(
      no_space_detail(32 << 20, Some(space)),
      "asked for 32 MiB (33554432 bytes) but /dev/shm has 16 MiB (16777216 bytes) free of 16 MiB; \
       free some shared memory or make /dev/shm larger (in a container: --shm-size=32m or more)"
    );
    let half_used = Space {
      free: 40 << 20,
      total: 64 << 20,
    };
    assert!(no_space_detail(100 << 20, Some(half_used)).ends_with("--shm-size=124m or more)"));
    assert_eq!(
      no_space_detail(4096, None),
      "asked for 4 KiB (4096 bytes); make /dev/shm larger (in a container: --shm-size)"
    );
  }

  #[test]
  fn umask_from_status() {
    let status = "Name:\tnode\nUmask:\t0022\nState:\tR (running)\n";
    assert_eq!(parse_umask(status), Some(0o022));
    assert_eq!(parse_umask("Name:\tnode\n"), None);
  }
}
