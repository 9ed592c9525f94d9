//! No SIGBUS from a segment another process shrank (Linux).
//!
//! A file in `/dev/shm` can be truncated by anyone who may write it. Our
//! mappings keep their length, and touching a page past the new end raises
//! SIGBUS, which kills the process by default: a JavaScript view, a copy of
//! `read()`, a waiter thread reading its word. This handler turns that fault
//! into something the library can report instead: when the address lies in
//! a mapping of ours (found in the signal-safe table of ranges.rs), it maps
//! private zero pages over the rest of that mapping, marks the mapping, and
//! returns, so the access completes and reads zeros. The library's calls then
//! see the mark and throw `ERR_SHM_SIZE`.
//!
//! Every other SIGBUS goes where it went before: to the handler that was
//! installed when ours was (called as it asked to be called), or, if that
//! was the default action, to the default action, which ends the process
//! as it would have without us. Node installs no SIGBUS handler on Linux
//! (only SIGSEGV, for WebAssembly), so usually that is the default.

use std::ffi::{c_int, c_void};
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

use crate::ranges;

/// The handler that was there before ours.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();
/// The page size, read once outside the handler (`sysconf` is not
/// async-signal-safe).
static PAGE: AtomicUsize = AtomicUsize::new(4096);

/// Installs the handler, once per process (at the first mapping).
pub(crate) fn catch_faults() {
  static INSTALL: Once = Once::new();
  INSTALL.call_once(|| {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if let Ok(page) = usize::try_from(page) {
      if page.is_power_of_two() {
        PAGE.store(page, Ordering::Relaxed);
      }
    }
    let mut previous = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: reading the current action into a zeroed struct of the
    // right type.
    if unsafe { libc::sigaction(libc::SIGBUS, ptr::null(), previous.as_mut_ptr()) } != 0 {
      return;
    }
    // SAFETY: sigaction filled it.
    let _ = PREVIOUS.set(unsafe { previous.assume_init() });
    // SAFETY: a zeroed sigaction is a valid empty one; we fill in the
    // handler, flags and an empty mask.
    let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
    ours.sa_sigaction = on_sigbus as *const () as usize;
    ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    // SAFETY: `ours.sa_mask` is a valid sigset_t to empty; installing a
    // handler that only makes async-signal-safe calls.
    unsafe {
      libc::sigemptyset(&mut ours.sa_mask);
      libc::sigaction(libc::SIGBUS, &ours, ptr::null_mut());
    }
  });
}

/// The SIGBUS handler. Async-signal-safe: atomics, `mmap`, `sigaction`,
/// `raise`, and the previous handler.
extern "C" fn on_sigbus(signal: c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
  // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
  let (code, address) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
  if code == libc::BUS_ADRERR && cover(address) {
    return;
  }
  chain(signal, info, context);
}

/// Maps private zero pages from the page of `address` to the end of the
/// mapping of ours that holds it, and marks that mapping; `false` if the
/// address is not ours or the pages cannot be mapped.
fn cover(address: usize) -> bool {
  let Some((slot, start, len)) = ranges::find(address) else {
    return false;
  };
  let page = PAGE.load(Ordering::Relaxed);
  let from = address & !(page - 1);
  let end = (start + len).div_ceil(page) * page;
  // SAFETY: errno is thread-local; the handler must leave it as it found it.
  let saved_errno = unsafe { *libc::__errno_location() };
  // SAFETY: `[from, end)` lies in a mapping of ours (found above), which is
  // live: a fault there means someone was using it, and we unmap only what
  // nothing uses. MAP_FIXED replaces those pages of it with anonymous ones;
  // munmap of the whole mapping later removes them too.
  let mapped = unsafe {
    libc::mmap(
      from as *mut c_void,
      end - from,
      libc::PROT_READ | libc::PROT_WRITE,
      libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
      -1,
      0,
    )
  };
  // SAFETY: as above.
  unsafe { *libc::__errno_location() = saved_errno };
  if mapped == libc::MAP_FAILED {
    return false;
  }
  ranges::mark_faulted(slot);
  true
}

/// Hands a SIGBUS that is not ours to whoever had it before.
fn chain(signal: c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
  let previous = PREVIOUS.get();
  let handler = previous.map_or(libc::SIG_DFL, |previous| previous.sa_sigaction);
  if handler == libc::SIG_IGN {
    return;
  }
  if handler == libc::SIG_DFL {
    // SAFETY: restoring the default action and raising the signal again:
    // it is blocked while we run, so it ends the process as soon as we
    // return, exactly as it would have without us.
    unsafe {
      let mut default: libc::sigaction = std::mem::zeroed();
      default.sa_sigaction = libc::SIG_DFL;
      libc::sigemptyset(&mut default.sa_mask);
      libc::sigaction(signal, &default, ptr::null_mut());
      libc::raise(signal);
    }
    return;
  }
  let flags = previous.map_or(0, |previous| previous.sa_flags);
  if flags & libc::SA_SIGINFO != 0 {
    // SAFETY: the previous handler asked for the three-argument form.
    let call: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) =
      unsafe { std::mem::transmute(handler) };
    call(signal, info, context);
  } else {
    // SAFETY: the previous handler is a plain one-argument handler.
    let call: extern "C" fn(c_int) = unsafe { std::mem::transmute(handler) };
    call(signal);
  }
}
