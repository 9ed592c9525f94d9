//! macOS and the other POSIX systems: `shm_open(3)` names are not files, so
//! a creator cannot size a segment before naming it. It creates with
//! `O_EXCL` and sizes at once; openers wait out the short size-0 window
//! (see `wait_until_sized` in `segment.rs`).
//!
//! A segment created for an `init` cannot be hidden either, so it says so
//! itself: it is created with the sticky bit in its mode (xnu keeps all of
//! `ALLPERMS`; nothing else sets it on shared memory), one extra
//! [`Trailer`] after the caller's bytes records whether `init` runs, ended or
//! failed, and openers that see the bit wait (at most [`INIT_GRACE`]) until
//! the trailer says done. The trailer lives in the segment, so a process
//! that opened it mid-`init` learns how it ended whatever became of the name.

use rustix::fs::{fstat, ftruncate, Mode, RawMode};
use rustix::shm;

use super::gate::{poll_until, InitState, Initializing, Trailer, INIT_GRACE, TRAILER_BYTES};
use super::posix::{map, os_error, unmap, Handle};
use super::CreateOptions;
use crate::error::{Error, Result};
use crate::mapping::Access;

/// The mode bit that marks a segment created for an `init`.
const INIT_MARK: u32 = 0o1000;

/// Opens an existing segment; one created for an `init` only once that
/// `init` has returned.
pub(crate) fn open(os_name: &str, read_only: bool) -> Result<Handle> {
  let access = if read_only {
    shm::OFlags::RDONLY
  } else {
    shm::OFlags::RDWR
  };
  let fd = shm::open(os_name, access, Mode::empty()).map_err(os_error("shm_open"))?;
  if !is_marked(&fd)? {
    return Ok(fd);
  }
  if Initializing::contains(os_name) {
    // This process's own `init` opening its name: not published yet.
    return Err(os_error("shm_open")(Errno::NOENT));
  }
  let outcome = poll_until(INIT_GRACE, || match trailer_state(&fd) {
    Ok(InitState::Unmarked) => None,
    Ok(InitState::Running { id, stamp }) => {
      (super::liveness(id, stamp) == Liveness::Dead).then_some(Ok(InitState::Failed))
    }
    other => Some(other),
  });
  match outcome {
    Some(Ok(InitState::Done)) => Ok(fd),
    Some(Ok(_)) => {
      // Failed, or its creator died inside `init`: it is garbage. Remove the
      // name if it still shows this very state, so the next creator can go.
      drop(fd);
      remove_if_abandoned(os_name);
      Err(os_error("shm_open")(Errno::NOENT))
    }
    Some(Err(error)) => Err(error),
    None => Err(os_error("shm_open")(Errno::TIMEDOUT).with_detail(format!(
      "another process is still initializing it after {} ms",
      INIT_GRACE.as_millis()
    ))),
  }
}

/// Removes `os_name` if the segment it names is one whose `init` failed or
/// whose creator died. (Between that look and the unlink another process
/// could replace the name; macOS offers no way to unlink only a given object.)
fn remove_if_abandoned(os_name: &str) {
  let Ok(fd) = shm::open(os_name, shm::OFlags::RDONLY, Mode::empty()) else {
    return;
  };
  let abandoned = match trailer_state(&fd) {
    Ok(InitState::Failed) => true,
    Ok(InitState::Running { id, stamp }) => super::liveness(id, stamp) == Liveness::Dead,
    _ => false,
  };
  if abandoned {
    let _ = shm::unlink(os_name);
  }
}

fn is_marked(fd: &Handle) -> Result<bool> {
  let stat = fstat(fd).map_err(os_error("fstat"))?;
  Ok(u32::from(stat.st_mode) & INIT_MARK != 0)
}

/// The whole segment, mapped for a look at its trailer; unmapped on drop.
struct Whole {
  ptr: *mut u8,
  len: usize,
}

impl Whole {
  fn map(fd: &Handle, access: Access) -> Result<Option<Whole>> {
    let size = fstat(fd).map_err(os_error("fstat"))?.st_size;
    let len = usize::try_from(size).unwrap_or(0);
    if (len as u64) < TRAILER_BYTES {
      return Ok(None); // not sized yet
    }
    Ok(Some(Whole {
      ptr: map(fd, len, access)?,
      len,
    }))
  }

  fn trailer(&self) -> &Trailer {
    // SAFETY: the mapping is `len` bytes, a whole number of pages, so its
    // last TRAILER_BYTES are 8-byte aligned and live while `self` is.
    unsafe { Trailer::at(self.ptr.add(self.len - TRAILER_BYTES as usize)) }
  }
}

impl Drop for Whole {
  fn drop(&mut self) {
    // SAFETY: mapped by `Whole::map`, used only through `self`.
    unsafe { unmap(self.ptr, self.len) };
  }
}

fn trailer_state(fd: &Handle) -> Result<InitState> {
  Ok(match Whole::map(fd, Access::ReadOnly)? {
    Some(whole) => whole.trailer().state(),
    None => InitState::Unmarked,
  })
}

/// The caller's size of the segment: `fstat`'s, or for a segment made for an
/// `init`, the size its trailer records (0 until it is written).
pub(crate) fn size_of(fd: &Handle) -> Result<u64> {
  if !is_marked(fd)? {
    return super::posix::size_of(fd);
  }
  Ok(match Whole::map(fd, Access::ReadOnly)? {
    Some(whole) if whole.trailer().state() != InitState::Unmarked => whole.trailer().size(),
    _ => 0,
  })
}

/// A created segment that openers cannot use yet: plain for a create without
/// `init` (published at once), marked and holding its trailer otherwise.
#[derive(Debug)]
pub(crate) struct Unnamed {
  fd: Handle,
  pending: Option<Pending>,
}

/// What an `init` creation holds until [`publish`]; dropped before that, it
/// records the failure and removes the name.
struct Pending {
  whole: Whole,
  os_name: String,
  published: std::cell::Cell<bool>,
  _initializing: Initializing,
}

impl std::fmt::Debug for Pending {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("Pending")
      .field("os_name", &self.os_name)
      .finish()
  }
}

impl Drop for Pending {
  fn drop(&mut self) {
    if !self.published.get() {
      // Tell anyone who opened it meanwhile, then remove it.
      self.whole.trailer().finish(false);
      let _ = shm::unlink(self.os_name.as_str());
    }
  }
}

impl Unnamed {
  /// The read-write descriptor.
  pub(crate) fn handle(&self) -> &Handle {
    &self.fd
  }

  /// The descriptor of the published segment.
  pub(crate) fn into_handle(self) -> Handle {
    let Unnamed { fd, pending } = self;
    drop(pending);
    fd
  }
}

/// Creates a segment of `size` zero bytes under `os_name`. Without
/// `for_init` it is usable at once; with it, openers wait until [`publish`].
///
/// macOS has no `fallocate`: its shared memory is wired on `ftruncate`,
/// which fails rather than overcommits, so `reserve` needs nothing more here.
///
/// What xnu's `posix_shm.c` does differently from Linux, for the docs:
/// `shm_open` stores `mode & ALLPERMS` without the umask; `ftruncate` works
/// once per object and rounds the size up to whole pages (so `fstat`, and an
/// opener asking for size 0, see the rounded size).
pub(crate) fn create_unnamed(os_name: &str, size: u64, options: &CreateOptions) -> Result<Unnamed> {
  let initializing = options.for_init.then(|| Initializing::new(os_name));
  let mut mode = options.mode & 0o777;
  let mut total = size;
  if options.for_init {
    mode |= INIT_MARK;
    total = size
      .checked_add(TRAILER_BYTES)
      .ok_or_else(|| os_error("ftruncate")(Errno::FBIG))?;
  }
  let flags = shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR;
  let fd = shm::open(os_name, flags, Mode::from_bits_truncate(mode as RawMode))
    .map_err(os_error("shm_open"))?;
  // Do not leave a half-made segment behind under the name. (Should another
  // process delete and recreate the name in this instant, this removes
  // theirs: macOS offers no way to check that the name is still ours.)
  let undo = |error: Error| {
    let _ = shm::unlink(os_name);
    error
  };
  ftruncate(&fd, total).map_err(|errno| undo(os_error("ftruncate")(errno)))?;
  let pending = match initializing {
    None => None,
    Some(initializing) => {
      let whole = Whole::map(&fd, Access::ReadWrite)
        .map_err(undo)?
        .ok_or_else(|| undo(os_error("ftruncate")(Errno::INVAL)))?;
      whole.trailer().start(size, thread_identity());
      Some(Pending {
        whole,
        os_name: os_name.to_owned(),
        published: std::cell::Cell::new(false),
        _initializing: initializing,
      })
    }
  };
  Ok(Unnamed { fd, pending })
}

/// Lets openers in: the trailer says `init` is done.
pub(crate) fn publish(unnamed: &Unnamed, _os_name: &str) -> Result<()> {
  if let Some(pending) = &unnamed.pending {
    pending.whole.trailer().finish(true);
    pending.published.set(true);
  }
  Ok(())
}

/// Removes the name (shm_unlink(3)).
pub(crate) fn unlink(os_name: &str) -> Result<()> {
  shm::unlink(os_name).map_err(os_error("shm_unlink"))
}

// ---- Waiting on a word ----
//
// macOS 14.4+ has a public, shared-memory aware futex:
// `os_sync_wait_on_address` with `OS_SYNC_WAIT_ON_ADDRESS_SHARED`. It is
// looked up at run time so that one binary also runs on older systems, which
// get the private but long-stable `__ulock_wait` with
// `UL_COMPARE_AND_WAIT_SHARED` (the call libc++ and Chromium use).

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::atomic::AtomicU32;
use std::sync::OnceLock;
use std::time::Duration;

use rustix::io::Errno;

use super::{Liveness, Wake};

const OS_SYNC_WAIT_ON_ADDRESS_SHARED: u32 = 0x1;
const OS_SYNC_WAKE_BY_ADDRESS_SHARED: u32 = 0x1;
const OS_CLOCK_MACH_ABSOLUTE_TIME: u32 = 32;
const UL_COMPARE_AND_WAIT_SHARED: u32 = 3;
const ULF_WAKE_ALL: u32 = 0x0000_0100;
const ULF_NO_ERRNO: u32 = 0x0100_0000;
/// dlfcn.h: `RTLD_DEFAULT` is `((void *) -2)` on Darwin.
const RTLD_DEFAULT: *mut c_void = -2isize as *mut c_void;

extern "C" {
  fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
  fn __ulock_wait(operation: u32, addr: *mut c_void, value: u64, timeout_us: u32) -> c_int;
  fn __ulock_wake(operation: u32, addr: *mut c_void, wake_value: u64) -> c_int;
  fn pthread_threadid_np(thread: *mut c_void, id: *mut u64) -> c_int;
}

type WaitFn = unsafe extern "C" fn(*mut c_void, u64, usize, u32) -> c_int;
type WaitTimeoutFn = unsafe extern "C" fn(*mut c_void, u64, usize, u32, u32, u64) -> c_int;
type WakeFn = unsafe extern "C" fn(*mut c_void, usize, u32) -> c_int;

/// The `os_sync_*` functions, when this macOS has them.
struct OsSync {
  wait: WaitFn,
  wait_with_timeout: WaitTimeoutFn,
  wake_any: WakeFn,
  wake_all: WakeFn,
}

fn os_sync() -> Option<&'static OsSync> {
  static API: OnceLock<Option<OsSync>> = OnceLock::new();
  API
    .get_or_init(|| {
      let find = |name: &CStr| {
        // SAFETY: `name` is NUL-terminated; RTLD_DEFAULT searches every image.
        unsafe { dlsym(RTLD_DEFAULT, name.as_ptr()) }
      };
      let wait = find(c"os_sync_wait_on_address");
      let wait_with_timeout = find(c"os_sync_wait_on_address_with_timeout");
      let wake_any = find(c"os_sync_wake_by_address_any");
      let wake_all = find(c"os_sync_wake_by_address_all");
      if [wait, wait_with_timeout, wake_any, wake_all]
        .iter()
        .any(|f| f.is_null())
      {
        return None;
      }
      // SAFETY: the symbols have these C signatures (os/os_sync_wait_on_address.h).
      unsafe {
        Some(OsSync {
          wait: std::mem::transmute::<*mut c_void, WaitFn>(wait),
          wait_with_timeout: std::mem::transmute::<*mut c_void, WaitTimeoutFn>(wait_with_timeout),
          wake_any: std::mem::transmute::<*mut c_void, WakeFn>(wake_any),
          wake_all: std::mem::transmute::<*mut c_void, WakeFn>(wake_all),
        })
      }
    })
    .as_ref()
}

fn last_errno() -> Errno {
  Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

fn wake_status(errno: Errno) -> Result<Wake> {
  match errno {
    Errno::TIMEDOUT => Ok(Wake::TimedOut),
    Errno::INTR | Errno::AGAIN => Ok(Wake::Interrupted),
    errno => Err(os_error("os_sync_wait_on_address")(errno)),
  }
}

/// Sleeps while `word` holds `expected`, at most `timeout`. The OS does not
/// say whether it saw another value or was woken: both are `Woken`.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Result<Wake> {
  let addr = word.as_ptr().cast::<c_void>();
  if timeout == Some(Duration::ZERO) {
    return Ok(Wake::TimedOut);
  }
  if let Some(api) = os_sync() {
    let flags = OS_SYNC_WAIT_ON_ADDRESS_SHARED;
    // SAFETY: `addr` is a live, aligned 4-byte word (the caller holds it).
    let status = unsafe {
      match timeout {
        None => (api.wait)(addr, expected.into(), 4, flags),
        Some(timeout) => (api.wait_with_timeout)(
          addr,
          expected.into(),
          4,
          flags,
          OS_CLOCK_MACH_ABSOLUTE_TIME,
          u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX),
        ),
      }
    };
    return if status >= 0 {
      Ok(Wake::Woken)
    } else {
      wake_status(last_errno())
    };
  }
  // __ulock_wait takes microseconds in 32 bits, 0 meaning forever: longer
  // waits end early as `Interrupted` and the caller waits again.
  let (micros, capped) = match timeout {
    None => (0, false),
    Some(timeout) => {
      let micros = timeout.as_micros().max(1);
      (
        u32::try_from(micros).unwrap_or(u32::MAX),
        micros > u128::from(u32::MAX),
      )
    }
  };
  // SAFETY: as above.
  let status = unsafe {
    __ulock_wait(
      UL_COMPARE_AND_WAIT_SHARED | ULF_NO_ERRNO,
      addr,
      expected.into(),
      micros,
    )
  };
  if status >= 0 {
    Ok(Wake::Woken)
  } else {
    match wake_status(Errno::from_raw_os_error(-status)) {
      Ok(Wake::TimedOut) if capped => Ok(Wake::Interrupted),
      other => other,
    }
  }
}

/// Wakes up to `count` waiters on `word`. The OS tells only whether it woke
/// someone, so this counts single wake-ups, and says 1 for "all".
pub(crate) fn wake(word: &AtomicU32, count: u32) -> Result<usize> {
  let addr = word.as_ptr().cast::<c_void>();
  let wake_one = |all: bool| -> bool {
    // SAFETY: `addr` is a live, aligned 4-byte word (the caller holds it).
    unsafe {
      match os_sync() {
        Some(api) => {
          let function = if all { api.wake_all } else { api.wake_any };
          function(addr, 4, OS_SYNC_WAKE_BY_ADDRESS_SHARED) == 0
        }
        None => {
          let all = if all { ULF_WAKE_ALL } else { 0 };
          __ulock_wake(UL_COMPARE_AND_WAIT_SHARED | ULF_NO_ERRNO | all, addr, 0) >= 0
        }
      }
    }
  };
  if count == u32::MAX {
    return Ok(usize::from(wake_one(true)));
  }
  let mut woken = 0;
  while woken < count as usize && wake_one(false) {
    woken += 1;
  }
  Ok(woken)
}

// ---- Who holds a lock ----
//
// The owner is the process id plus the low half of the thread's 64-bit id.
// Only the process can be checked (kill(pid, 0)): a dead worker thread of a
// live process, or a recycled pid, is not detected here.

/// This thread's id (the pid) and stamp (its thread id's low 32 bits).
pub(crate) fn thread_identity() -> (u32, u32) {
  let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
  let mut thread = 0u64;
  // SAFETY: a null thread means the calling thread; `thread` is writable.
  unsafe { pthread_threadid_np(std::ptr::null_mut(), &mut thread) };
  (pid, thread as u32)
}

/// Whether the process `id` still runs (the stamp cannot be checked here).
pub(crate) fn liveness(id: u32, _stamp: u32) -> Liveness {
  let Some(pid) = rustix::process::Pid::from_raw(id as i32) else {
    return Liveness::Unknown;
  };
  match rustix::process::test_kill_process(pid) {
    Err(Errno::SRCH) => Liveness::Dead,
    _ => Liveness::Alive,
  }
}
