//! Linux: POSIX shared memory is a tmpfs mounted at `/dev/shm`, and
//! `shm_open(name)` is `open("/dev/shm/name")` (shm_overview(7)). Opening the
//! files ourselves lets a creator size a segment before anyone can see it and
//! then publish it with link(2), which fails with `EEXIST` like `O_EXCL`.

use std::ffi::CStr;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{self, AtFlags, FallocateFlags, FileType, Mode, OFlags, CWD};
use rustix::io::Errno;

use super::posix::{os_error, Handle};
use super::CreateOptions;
use crate::error::{human_bytes, Error, Result};

const SHM_DIR: &str = "/dev/shm";

/// Runs `f` on `/dev/shm<os_name>` as a C string built on the stack: every
/// create and delete names a path, and formatting one into a `String` cost
/// an allocation per call. `ENAMETOOLONG` or `EINVAL` (a NUL), as the
/// kernel would say, when it does not fit a file name.
fn with_path<T>(
  os_name: &str,
  f: impl FnOnce(&CStr) -> rustix::io::Result<T>,
) -> rustix::io::Result<T> {
  // `os_name` starts with its `/` and holds no other (see `name.rs`): one
  // directory entry, at most NAME_MAX bytes after the slash.
  const ROOM: usize = SHM_DIR.len() + 1 + 255 + 1;
  let mut bytes = [0u8; ROOM];
  let len = SHM_DIR.len() + os_name.len();
  if len >= ROOM {
    return Err(Errno::NAMETOOLONG);
  }
  bytes[..SHM_DIR.len()].copy_from_slice(SHM_DIR.as_bytes());
  bytes[SHM_DIR.len()..len].copy_from_slice(os_name.as_bytes());
  let path = CStr::from_bytes_with_nul(&bytes[..=len]).map_err(|_| Errno::INVAL)?;
  f(path)
}

#[cfg(test)]
fn path_of(os_name: &str) -> String {
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
  let fd = with_path(os_name, |path| fs::open(path, flags, Mode::empty()))
    .map_err(os_error("shm_open"))?;
  // Only a regular file is a segment: a directory opens read-only, and a
  // FIFO or device opened here would map nothing we could use.
  let stat = fs::fstat(&fd).map_err(os_error("fstat"))?;
  match FileType::from_raw_mode(stat.st_mode) {
    FileType::RegularFile => Ok(fd),
    FileType::Directory => Err(os_error("shm_open")(Errno::ISDIR)),
    _ => Err(
      os_error("shm_open")(Errno::INVAL)
        .with_detail("the name is not a shared memory segment (a FIFO, socket or device)".into()),
    ),
  }
}

/// A segment made but not yet named: only this process can reach it (an
/// `O_TMPFILE` file, or a hidden temporary name removed when it goes).
#[derive(Debug)]
pub(crate) struct Unnamed {
  fd: Handle,
  temporary: Option<TemporaryName>,
}

/// The hidden name of the fallback, unlinked on drop.
#[derive(Debug)]
struct TemporaryName(String);

impl Drop for TemporaryName {
  fn drop(&mut self) {
    let _ = fs::unlink(&self.0);
  }
}

impl Unnamed {
  /// The read-write descriptor.
  pub(crate) fn handle(&self) -> &Handle {
    &self.fd
  }

  /// The descriptor of the published segment (the temporary name goes).
  pub(crate) fn into_handle(self) -> Handle {
    let Unnamed { fd, temporary } = self;
    drop(temporary);
    fd
  }
}

/// Makes a segment of `size` zero bytes (sized and, with `reserve`,
/// allocated) that has no name yet: the caller may fill it, then [`publish`]
/// it, so no opener ever sees it half made.
pub(crate) fn create_unnamed(
  _os_name: &str,
  size: u64,
  options: &CreateOptions,
) -> Result<Unnamed> {
  let (reserve, mode) = (
    options.reserve,
    Mode::from_bits_truncate(options.mode & 0o777),
  );
  let tmpfiles = tmpfiles();
  // An unnamed tmpfs file (open(2), O_TMPFILE) vanishes by itself if we die
  // before naming it; where nothing can name it, use the named temporary.
  if tmpfiles.linker == Linker::TemporaryName {
    return create_via_temporary(size, mode, reserve);
  }
  let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
  match fs::open(SHM_DIR, flags, mode) {
    Ok(fd) => {
      if !tmpfiles.masks_umask {
        apply_umask(&fd, mode)?;
      }
      prepare(&fd, size, reserve)?;
      Ok(Unnamed {
        fd,
        temporary: None,
      })
    }
    // Kernels or filesystems without O_TMPFILE.
    Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => {
      create_via_temporary(size, mode, reserve)
    }
    Err(errno) => Err(os_error("shm_open")(errno)),
  }
}

/// Gives `unnamed` the name `os_name` (link(2)); `EEXIST` when it is taken,
/// and `unnamed` may then be published again later.
pub(crate) fn publish(unnamed: &Unnamed, os_name: &str) -> Result<()> {
  publish_with(unnamed, os_name, tmpfiles().linker)
}

/// [`publish`] by way of `linker` (tests force each one).
fn publish_with(unnamed: &Unnamed, os_name: &str, linker: Linker) -> Result<()> {
  let linked = with_path(os_name, |path| match &unnamed.temporary {
    Some(temporary) => fs::link(&temporary.0, path),
    None if linker == Linker::Descriptor => {
      match fs::linkat(&unnamed.fd, c"", CWD, path, AtFlags::EMPTY_PATH) {
        // The kernel refuses a descriptor opened under other credentials
        // (another thread changed ours since): name it through /proc.
        Err(Errno::NOENT | Errno::PERM) if has_proc() => link_through_proc(&unnamed.fd, path),
        linked => linked,
      }
    }
    None => link_through_proc(&unnamed.fd, path),
  });
  linked.map_err(publish_error)
}

/// Names the file `fd` by way of `/proc/self/fd/N`, which any kernel with
/// O_TMPFILE allows (linkat(2), AT_SYMLINK_FOLLOW).
fn link_through_proc(fd: &Handle, path: &CStr) -> rustix::io::Result<()> {
  fs::linkat(CWD, proc_path(fd), CWD, path, AtFlags::SYMLINK_FOLLOW)
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

/// How a creator names the file it made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Linker {
  /// `linkat(fd, "", AT_EMPTY_PATH)`: Linux 6.10+ allows it for a file
  /// opened under the caller's own credentials (the kernel change "relax
  /// linkat(AT_EMPTY_PATH), aka flink(), requirements"), older kernels only
  /// with `CAP_DAC_READ_SEARCH`. One system call, no path to walk.
  Descriptor,
  /// `linkat("/proc/self/fd/N", AT_SYMLINK_FOLLOW)`: any kernel, with /proc.
  Proc,
  /// Neither: the file is made under a hidden temporary name instead.
  TemporaryName,
}

/// What this process learned about O_TMPFILE files in `/dev/shm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tmpfiles {
  linker: Linker,
  /// The kernel applies the umask (or a default ACL) to them.
  masks_umask: bool,
}

/// Properties of the kernel, its mounts and this process's privileges,
/// learned once per process from one probe file (a few system calls, once)
/// so that no create walks `/proc` or reads the umask. A probe that could not
/// open its file for a passing reason (`EMFILE`) is not remembered.
fn tmpfiles() -> Tmpfiles {
  static LEARNED: std::sync::OnceLock<Tmpfiles> = std::sync::OnceLock::new();
  if let Some(learned) = LEARNED.get() {
    return *learned;
  }
  let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
  match fs::open(SHM_DIR, flags, Mode::from_bits_truncate(0o777)) {
    Ok(probe) => *LEARNED.get_or_init(|| Tmpfiles {
      linker: if can_link_descriptor(&probe) {
        Linker::Descriptor
      } else if has_proc() {
        Linker::Proc
      } else {
        Linker::TemporaryName
      },
      masks_umask: masks_umask(&probe),
    }),
    Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => *LEARNED.get_or_init(|| Tmpfiles {
      linker: Linker::TemporaryName,
      masks_umask: false,
    }),
    Err(_) => Tmpfiles {
      linker: if has_proc() {
        Linker::Proc
      } else {
        Linker::TemporaryName
      },
      masks_umask: false,
    },
  }
}

/// Whether the kernel lets this process link `probe` by its descriptor.
/// The probe names a path that exists (`/dev/shm` itself), so nothing is
/// ever created: the kernel checks the descriptor first (`ENOENT` or `EPERM`
/// when it refuses) and only then finds the name taken (`EEXIST`).
fn can_link_descriptor(probe: &Handle) -> bool {
  fs::linkat(probe, "", CWD, SHM_DIR, AtFlags::EMPTY_PATH) == Err(Errno::EXIST)
}

/// Before Linux 6.0, O_TMPFILE skipped the umask on filesystems without
/// POSIX ACLs ("fs: add missing umask strip in vfs_tmpfile"). Where the new
/// file kept every bit asked for, apply the umask ourselves, as fs.open would.
/// Only where [`masks_umask`] said the kernel does not.
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

/// Whether the kernel applied the umask (or a default ACL) to `probe`, an
/// O_TMPFILE file that asked for every permission bit. A probe that keeps
/// all of them (an old kernel, or a umask of 0 at that moment) answers no,
/// and each create then checks for itself: never wrong, only slower.
fn masks_umask(probe: &Handle) -> bool {
  fs::fstat(probe).is_ok_and(|stat| stat.st_mode & 0o777 != 0o777)
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

/// The fallback: a hidden temporary name, linked to the real one by
/// [`publish`], removed when the [`Unnamed`] goes.
fn create_via_temporary(size: u64, mode: Mode, reserve: bool) -> Result<Unnamed> {
  static SEQUENCE: AtomicU64 = AtomicU64::new(0);
  let flags = OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
  // The name carries 64 random bits, so no other user can take it ahead of
  // us; an EEXIST here (a collision) says nothing about the segment, so try
  // another.
  let mut attempts = 0;
  let (temporary, fd) = loop {
    let temporary = format!(
      "{SHM_DIR}/.named-shm-{}-{}-{:016x}",
      rustix::process::getpid().as_raw_nonzero(),
      SEQUENCE.fetch_add(1, Ordering::Relaxed),
      unpredictable()
    );
    match fs::open(&temporary, flags, mode) {
      Ok(fd) => break (temporary, fd),
      Err(Errno::EXIST) if attempts < 100 => attempts += 1,
      Err(errno) => return Err(os_error("shm_open")(errno)),
    }
  };
  let unnamed = Unnamed {
    fd,
    temporary: Some(TemporaryName(temporary)),
  };
  prepare(&unnamed.fd, size, reserve)?;
  Ok(unnamed)
}

/// 64 bits no other user can guess: std's randomly seeded hasher (keyed
/// from the OS's random source once per process, then varied per call).
fn unpredictable() -> u64 {
  use std::hash::{BuildHasher, Hasher};
  let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
  hasher.write_u64(
    std::time::SystemTime::now()
      .duration_since(std::time::UNIX_EPOCH)
      .map_or(0, |elapsed| elapsed.as_nanos() as u64),
  );
  hasher.finish()
}

/// Sets the size and, with `reserve`, allocates the pages: fallocate(2)
/// does both on tmpfs (without `FALLOC_FL_KEEP_SIZE` it extends the file to
/// `size`), or fails with `ENOSPC`; without `reserve`, ftruncate(2) sets
/// the size alone. Either way the file reads as zeros.
fn prepare(fd: &Handle, size: u64, reserve: bool) -> Result<()> {
  if !reserve {
    return fs::ftruncate(fd, size).map_err(os_error("ftruncate"));
  }
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
  })
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

/// The most mappings a process may have (`/proc/sys/vm/max_map_count`, see
/// proc(5)), read once; `None` when it cannot be read.
pub(crate) fn max_map_count() -> Option<usize> {
  static LIMIT: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
  *LIMIT.get_or_init(|| {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
      .ok()?
      .trim()
      .parse()
      .ok()
  })
}

/// Removes the name (shm_unlink(3)).
pub(crate) fn unlink(os_name: &str) -> Result<()> {
  with_path(os_name, |path| fs::unlink(path)).map_err(os_error("shm_unlink"))
}

/// Removes the name `fd` was just published under, after a later step
/// failed, if the name still holds that very file (another process may have
/// deleted and recreated it meanwhile).
pub(crate) fn unlink_created(fd: &Handle, os_name: &str) {
  let _ = with_path(os_name, |path| {
    let (ours, named) = (fs::fstat(fd)?, fs::lstat(path)?);
    if ours.st_dev == named.st_dev && ours.st_ino == named.st_ino {
      fs::unlink(path)?;
    }
    Ok(())
  });
}

// ---- Waiting on a word (futex(2), futex_waitv(2)) ----
//
// No FUTEX_PRIVATE_FLAG: a shared futex is keyed by the file and offset
// behind the address, so waiters in every process that maps the segment meet
// on it.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::thread::futex;
use rustix::time::{clock_gettime, ClockId, Timespec};

use super::{Liveness, Wake, WakeAny};

fn timespec(duration: Duration) -> Timespec {
  Timespec {
    tv_sec: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
    tv_nsec: duration.subsec_nanos().into(),
  }
}

/// Sleeps while `word` holds `expected`, at most `timeout` (FUTEX_WAIT).
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Result<Wake> {
  let timeout = timeout.map(timespec);
  match futex::wait(word, futex::Flags::empty(), expected, timeout.as_ref()) {
    Ok(()) => Ok(Wake::Woken),
    Err(Errno::AGAIN) => Ok(Wake::Changed),
    Err(Errno::TIMEDOUT) => Ok(Wake::TimedOut),
    Err(Errno::INTR) => Ok(Wake::Interrupted),
    Err(errno) => Err(os_error("futex")(errno)),
  }
}

/// Wakes up to `count` waiters on `word`; returns how many (FUTEX_WAKE).
pub(crate) fn wake(word: &AtomicU32, count: u32) -> Result<usize> {
  // The kernel takes the count as an int.
  let count = count.min(i32::MAX as u32);
  futex::wake(word, futex::Flags::empty(), count).map_err(os_error("futex"))
}

/// How many words one [`wait_any`] call watches, the control word included
/// (FUTEX_WAITV_MAX).
pub(crate) const WAIT_ANY_MAX: usize = 128;

/// Sleeps until any word changes or is woken (futex_waitv(2), Linux 5.16):
/// `control` is a private word of this process, `words` are segment words.
/// `Woken(0)` is the control word, `Woken(i + 1)` is `words[i]`.
pub(crate) fn wait_any(
  control: (&AtomicU32, u32),
  words: &[(&AtomicU32, u32)],
  timeout: Option<Duration>,
) -> Result<WakeAny> {
  let mut waits = Vec::with_capacity(words.len() + 1);
  let entry = |word: &AtomicU32, value: u32, flags: futex::WaitFlags| {
    let mut wait = futex::Wait::new();
    wait.val = value.into();
    wait.uaddr = futex::WaitPtr::new(word.as_ptr().cast());
    wait.flags = flags;
    wait
  };
  // The control word is shared too (no FUTEX2_PRIVATE): `wake` wakes it,
  // and a shared wake does not meet a private wait.
  waits.push(entry(control.0, control.1, futex::WaitFlags::SIZE_U32));
  for (word, value) in words {
    waits.push(entry(word, *value, futex::WaitFlags::SIZE_U32));
  }
  // futex_waitv takes an absolute deadline.
  let deadline = timeout.map(|timeout| {
    let now = clock_gettime(ClockId::Monotonic);
    let now = Duration::new(now.tv_sec as u64, now.tv_nsec as u32);
    timespec(now.saturating_add(timeout))
  });
  match futex::waitv(
    &waits,
    futex::WaitvFlags::empty(),
    deadline.as_ref(),
    ClockId::Monotonic,
  ) {
    Ok(index) => Ok(WakeAny::Woken(index)),
    Err(Errno::AGAIN) => Ok(WakeAny::Changed),
    Err(Errno::TIMEDOUT) => Ok(WakeAny::TimedOut),
    Err(Errno::INTR) => Ok(WakeAny::Interrupted),
    // Before Linux 5.16, or filtered by a seccomp policy.
    Err(Errno::NOSYS | Errno::PERM) => Ok(WakeAny::Unsupported),
    Err(errno) => Err(os_error("futex_waitv")(errno)),
  }
}

/// CPUs online in the system, whatever this process's affinity: a process
/// pinned to one CPU can still meet a partner spinning on another.
pub(crate) fn cpu_count() -> usize {
  let parse = |text: &str| -> Option<usize> {
    // "0-3,8-11": ranges and single CPUs.
    text.trim().split(',').try_fold(0, |count, part| {
      let mut ends = part.split('-').map(|n| n.parse::<usize>().ok());
      match (ends.next().flatten(), ends.next()) {
        (Some(_), None) => Some(count + 1),
        (Some(first), Some(Some(last))) if last >= first => Some(count + last - first + 1),
        _ => None,
      }
    })
  };
  std::fs::read_to_string("/sys/devices/system/cpu/online")
    .ok()
    .and_then(|text| parse(&text))
    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

// ---- Who holds a lock, and is it still alive? ----
//
// A lock owner is a thread: its id (tid) plus a stamp that tells a later
// thread with the same recycled id apart. The stamp's top 12 bits come from
// the PID namespace (ids from another namespace cannot be checked here) and
// its low 20 bits from the thread's start time in clock ticks.

const NAMESPACE_BITS: u32 = 12;
const START_MASK: u32 = (1 << (32 - NAMESPACE_BITS)) - 1;

/// A tag of this process's PID namespace (the inode of /proc/self/ns/pid).
fn namespace_tag() -> u32 {
  static TAG: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
  *TAG.get_or_init(|| match fs::stat("/proc/self/ns/pid") {
    Ok(stat) => {
      let inode = stat.st_ino;
      let folded = (inode ^ (inode >> 12) ^ (inode >> 24) ^ (inode >> 36)) as u32;
      (folded & ((1 << NAMESPACE_BITS) - 1)) << (32 - NAMESPACE_BITS)
    }
    Err(_) => 0,
  })
}

/// State letter and start time (clock ticks since boot) of thread `tid`
/// from /proc/<tid>/stat (proc_pid_stat(5): fields 3 and 22).
fn thread_stat(tid: u32) -> std::result::Result<(u8, u64), Errno> {
  let fd = fs::open(
    format!("/proc/{tid}/stat"),
    OFlags::RDONLY | OFlags::CLOEXEC,
    Mode::empty(),
  )?;
  let mut buffer = [0u8; 512];
  let mut filled = 0;
  while filled < buffer.len() {
    match rustix::io::read(&fd, &mut buffer[filled..]) {
      Ok(0) => break,
      Ok(n) => filled += n,
      Err(Errno::INTR) => continue,
      Err(errno) => return Err(errno),
    }
  }
  let text = &buffer[..filled];
  // The command name (field 2) may hold spaces and parentheses: the fields
  // we want come after its last ')'.
  let close = text.iter().rposition(|&b| b == b')').ok_or(Errno::INVAL)?;
  let rest = std::str::from_utf8(&text[close + 1..]).map_err(|_| Errno::INVAL)?;
  let mut fields = rest.split_ascii_whitespace();
  let state = fields.next().and_then(|f| f.bytes().next());
  let start = fields.nth(18).and_then(|f| f.parse::<u64>().ok());
  match (state, start) {
    (Some(state), Some(start)) => Ok((state, start)),
    _ => Err(Errno::INVAL),
  }
}

/// This thread's id and stamp. Cheap enough, but callers cache it.
pub(crate) fn thread_identity() -> (u32, u32) {
  let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
  let start = thread_stat(tid).map_or(0, |(_, start)| start as u32 & START_MASK);
  (tid, namespace_tag() | start)
}

/// Whether the thread `(id, stamp)` still runs.
pub(crate) fn liveness(id: u32, stamp: u32) -> Liveness {
  let namespace_mask = !START_MASK;
  if stamp & namespace_mask != namespace_tag() {
    // The owner lives in another PID namespace: its id means nothing here.
    return Liveness::Unknown;
  }
  match thread_stat(id) {
    // A zombie ('Z') or dead ('X') task is no longer running anything.
    Ok((b'Z' | b'X', _)) => Liveness::Dead,
    Ok((_, start)) if start as u32 & START_MASK == stamp & START_MASK => Liveness::Alive,
    // The id was recycled by a thread that started later.
    Ok(_) => Liveness::Dead,
    Err(Errno::NOENT | Errno::SRCH) => Liveness::Dead,
    // No /proc, or hidden (hidepid): ask the kernel whether the id exists.
    Err(_) => {
      let Some(pid) = rustix::process::Pid::from_raw(id as i32) else {
        return Liveness::Unknown;
      };
      match rustix::process::test_kill_process(pid) {
        Err(Errno::SRCH) => Liveness::Dead,
        _ => Liveness::Alive,
      }
    }
  }
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
  fn the_temporary_name_fallback_publishes_only_when_told_and_leaves_nothing() {
    let os_name = format!("/named-shm-fallback-{}", std::process::id());
    let mode = Mode::from_bits_truncate(0o600);
    let hidden = |unnamed: &Unnamed| unnamed.temporary.as_ref().unwrap().0.clone();
    // Dropped unpublished: the hidden name goes, the real one never came.
    let unnamed = create_via_temporary(4096, mode, true).unwrap();
    let temporary = hidden(&unnamed);
    assert!(fs::access(&temporary, fs::Access::EXISTS).is_ok());
    assert_eq!(open(&os_name, true).unwrap_err().code(), "ENOENT");
    drop(unnamed);
    assert!(fs::access(&temporary, fs::Access::EXISTS).is_err());
    assert_eq!(open(&os_name, true).unwrap_err().code(), "ENOENT");
    // Published: the name appears, then the hidden one goes.
    let unnamed = create_via_temporary(4096, mode, true).unwrap();
    let temporary = hidden(&unnamed);
    publish(&unnamed, &os_name).unwrap();
    let taken = create_via_temporary(4096, mode, true).unwrap();
    assert_eq!(publish(&taken, &os_name).unwrap_err().code(), "EEXIST");
    drop(taken);
    let _fd = unnamed.into_handle();
    assert!(fs::access(&temporary, fs::Access::EXISTS).is_err());
    assert!(open(&os_name, true).is_ok());
    unlink(&os_name).unwrap();
  }

  /// An O_TMPFILE segment of 4 KiB, not yet named.
  fn unnamed() -> Unnamed {
    let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
    let fd = fs::open(SHM_DIR, flags, Mode::from_bits_truncate(0o600)).unwrap();
    prepare(&fd, 4096, true).unwrap();
    Unnamed {
      fd,
      temporary: None,
    }
  }

  #[test]
  fn both_linkers_publish_once_and_say_eexist_after() {
    for (linker, tag) in [(Linker::Descriptor, "descriptor"), (Linker::Proc, "proc")] {
      let os_name = format!("/named-shm-linker-{tag}-{}", std::process::id());
      let made = unnamed();
      publish_with(&made, &os_name, linker).unwrap();
      let ours = fs::fstat(made.handle()).unwrap();
      let named = fs::stat(path_of(&os_name)).unwrap();
      assert_eq!((named.st_ino, named.st_size), (ours.st_ino, 4096), "{tag}");
      let taken = publish_with(&unnamed(), &os_name, linker).unwrap_err();
      assert_eq!(
        (taken.code(), taken.syscall()),
        ("EEXIST", Some("shm_open")),
        "{tag}"
      );
      unlink(&os_name).unwrap();
    }
  }

  /// The kernel's release as (major, minor).
  fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut numbers = release
      .split(|c: char| !c.is_ascii_digit())
      .map(|n| n.parse().unwrap_or(0));
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0))
  }

  /// What the probe answers in a child process that dropped to `nobody`
  /// (without `CAP_DAC_READ_SEARCH`): exit status 1 for "links by descriptor".
  fn probe_as_nobody() -> i32 {
    // SAFETY: the child makes only system calls (no allocation, no locks)
    // before _exit, so forking a multi-threaded test process is sound.
    unsafe {
      match libc::fork() {
        0 => {
          if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
            libc::_exit(2);
          }
          let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
          let Ok(probe) = fs::open(SHM_DIR, flags, Mode::from_bits_truncate(0o600)) else {
            libc::_exit(3)
          };
          libc::_exit(i32::from(can_link_descriptor(&probe)));
        }
        child => {
          assert!(child > 0, "fork failed");
          let mut status = 0;
          assert_eq!(libc::waitpid(child, &mut status, 0), child);
          assert!(libc::WIFEXITED(status));
          libc::WEXITSTATUS(status)
        }
      }
    }
  }

  #[test]
  fn the_probe_learns_linking_by_descriptor_where_the_kernel_allows_it() {
    let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
    let probe = fs::open(SHM_DIR, flags, Mode::from_bits_truncate(0o600)).unwrap();
    let root = rustix::process::geteuid().is_root();
    let relaxed = kernel_version() >= (6, 10);
    // Root holds CAP_DAC_READ_SEARCH (CI and this suite run as root).
    assert_eq!(can_link_descriptor(&probe), root || relaxed);
    assert_eq!(tmpfiles().linker == Linker::Descriptor, root || relaxed);
    if root {
      // An unprivileged user: only Linux 6.10+ lets it; before, /proc it is.
      assert_eq!(probe_as_nobody(), i32::from(relaxed));
    }
  }

  #[test]
  fn the_temporary_name_cannot_be_taken_ahead_of_the_creator() {
    // The names an older scheme used, .named-shm-<pid>-<n>, taken as
    // another user could: the random part of ours makes them useless.
    let pid = rustix::process::getpid().as_raw_nonzero();
    let squatted: Vec<String> = (0..200)
      .map(|n| format!("{SHM_DIR}/.named-shm-{pid}-{n}"))
      .collect();
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC;
    let mode = Mode::from_bits_truncate(0o600);
    for path in &squatted {
      drop(fs::open(path, flags, mode).unwrap());
    }
    let os_name = format!("/named-shm-squatted-{pid}");
    let made = create_via_temporary(4096, mode, true);
    let published = match &made {
      Ok(made) => publish(made, &os_name).map_err(|e| e.code()),
      Err(error) => Err(error.code()),
    };
    drop(made);
    for path in &squatted {
      fs::unlink(path).unwrap();
    }
    assert_eq!(published, Ok(()));
    unlink(&os_name).unwrap();
  }

  #[test]
  fn prepare_sizes_the_file_with_and_without_reserve() {
    for reserve in [true, false] {
      let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
      let fd = fs::open(SHM_DIR, flags, Mode::from_bits_truncate(0o600)).unwrap();
      prepare(&fd, 3 * 4096 + 1, reserve).unwrap();
      let stat = fs::fstat(&fd).unwrap();
      assert_eq!(stat.st_size, 3 * 4096 + 1, "reserve {reserve}");
      // st_blocks counts 512-byte units: reserved pages are allocated.
      assert_eq!(stat.st_blocks >= 4 * 8, reserve, "reserve {reserve}");
    }
  }

  #[test]
  fn paths_are_built_on_the_stack_up_to_the_longest_name() {
    let longest = format!("/{}", "n".repeat(255));
    let built = with_path(&longest, |path| Ok(path.to_str().unwrap().to_owned())).unwrap();
    assert_eq!(built, path_of(&longest));
    let too_long = format!("/{}", "n".repeat(256));
    assert_eq!(with_path(&too_long, |_| Ok(())), Err(Errno::NAMETOOLONG));
    assert_eq!(with_path("/a\0b", |_| Ok(())), Err(Errno::INVAL));
  }

  #[test]
  fn umask_from_status() {
    let status = "Name:\tnode\nUmask:\t0022\nState:\tR (running)\n";
    assert_eq!(parse_umask(status), Some(0o022));
    assert_eq!(parse_umask("Name:\tnode\n"), None);
  }
}
