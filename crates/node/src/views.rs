//! The JavaScript side of a mapping: one external buffer over it. Where the
//! runtime can make one, a `SharedArrayBuffer` (see `shared_buffers.rs`:
//! no garbage collection per attach), which detach cannot detach, so it puts
//! zero pages over the memory and the finalizer unmaps; elsewhere an
//! `ArrayBuffer`, detached (Node-API 7, `napi_detach_arraybuffer`) before the
//! memory goes.
//!
//! Ownership: the `ArrayBuffer`'s finalizer holds one `Arc<Mapping>`, the
//! handle that made it holds another plus a weak reference to the buffer.
//! Memory is unmapped when the handle detaches a live buffer over it
//! (`detach`, `close`) or when the garbage collector frees the last buffer
//! holding it, whichever is first; it is never unmapped while JavaScript can
//! reach it.
//!
//! Every live attachment is also in a process-wide registry, so that `wait`,
//! `notify` and `SharedMutex` can check that a view lies in an attached
//! segment and find the mapping to pin (see `named_shm_core::SharedWord`).

use std::ffi::c_void;
use std::ptr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use named_shm_core::{waiter, Error, Mapping};
use napi::{sys, Env};

use crate::errors::{check, throw_code, Kind, EXTERNAL_BUFFERS, OUT_OF_RANGE};
use crate::shared_buffers;

/// One registered attachment.
struct Registered {
  view: Weak<Mapping>,
  /// The view's memory, `[start, start + len)`, while it is registered.
  start: usize,
  len: usize,
  /// Where its words are waited on: `start`, or the alias's first byte.
  target: usize,
  writable: bool,
  /// For a copy-on-write view: a shared read-only mapping of the same
  /// segment, where words are waited on (a private page would meet no other
  /// process's futex, and a futex wait would even copy the page, cutting the
  /// view off from later writes by others).
  alias: Option<Arc<Mapping>>,
}

static REGISTRY: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

fn registry() -> MutexGuard<'static, Vec<Registered>> {
  REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where a word of an attached view lies, for a call that ends before
/// JavaScript runs again.
#[derive(Clone, Copy)]
pub struct Place {
  /// The same byte in the mapping to wait in: the view's own, or its alias.
  pub target: usize,
  /// Whether writes through the view reach the segment.
  pub writable: bool,
}

/// Where `[addr, addr + len)` lies, if in a live attachment. No reference
/// counts change: the caller's view keeps the memory mapped for the call.
pub fn place(addr: usize, len: usize) -> Option<Place> {
  let fits = |entry: &&Registered| {
    entry.view.strong_count() > 0
      && addr >= entry.start
      && addr
        .checked_add(len)
        .is_some_and(|end| end <= entry.start + entry.len)
  };
  let entries = registry();
  let entry = entries.iter().find(fits)?;
  Some(Place {
    target: entry.target + (addr - entry.start),
    writable: entry.writable,
  })
}

/// The live attachment whose memory holds `[addr, addr + len)`: its mapping,
/// and the mapping to wait in (itself, or its shared alias), for a wait that
/// outlives the call (it pins them).
pub fn find(addr: usize, len: usize) -> Option<(Arc<Mapping>, Arc<Mapping>)> {
  registry().iter().find_map(|entry| {
    let view = entry.view.upgrade()?;
    if !view.contains(addr, len) {
      return None;
    }
    let target = entry.alias.clone().unwrap_or_else(|| Arc::clone(&view));
    Some((view, target))
  })
}

fn register(view: &Arc<Mapping>, alias: Option<Arc<Mapping>>) {
  let start = view.as_ptr() as usize;
  let mut entries = registry();
  entries.retain(|entry| entry.view.strong_count() > 0);
  entries.push(Registered {
    view: Arc::downgrade(view),
    start,
    len: view.len(),
    target: alias
      .as_ref()
      .map_or(start, |alias| alias.as_ptr() as usize),
    writable: view.access() == named_shm_core::Access::ReadWrite,
    alias,
  });
}

/// Drops `view` (unmapped) from the registry, with its alias, and tells the
/// waiter threads so that waits on it end. Called wherever a view's mapping
/// is unmapped, so the registry lists exactly the memory JavaScript reaches.
fn forget(view: &Mapping) {
  let mut gone = Vec::new();
  registry().retain_mut(|entry| {
    let live = entry.view.strong_count() > 0 && !ptr::eq(entry.view.as_ptr(), view);
    if !live {
      gone.extend(entry.alias.take());
    }
    live
  });
  for alias in gone {
    // SAFETY: JavaScript never sees an alias; waiter threads hold pins,
    // which defer the unmap until they let go.
    unsafe { alias.unmap() };
  }
  waiter::poke();
}

/// A mapping handed to JavaScript.
pub struct View {
  mapping: Arc<Mapping>,
  /// Weak: the handle must not keep the buffer alive.
  buffer: sys::napi_ref,
  address: usize,
  /// A `SharedArrayBuffer`: detached by zero pages, unmapped by its finalizer.
  shared: bool,
}

impl View {
  /// Wraps `mapping` in an external `ArrayBuffer`.
  ///
  /// # Errors
  /// `ERR_SHM_EXTERNAL_BUFFERS` where the runtime forbids external buffers
  /// (Electron ≥ 21): a copy would silently stop being shared.
  pub fn new(
    env: &Env,
    mapping: Mapping,
    alias: Option<Mapping>,
  ) -> napi::Result<(View, sys::napi_value)> {
    let mapping = Arc::new(mapping);
    let hint = Box::into_raw(Box::new(Arc::clone(&mapping)));
    let mut buffer = ptr::null_mut();
    // SAFETY: the memory stays mapped until `release_shared` runs; `hint` is
    // a leaked Box that it reclaims exactly once.
    let shared = unsafe {
      shared_buffers::create(
        env.raw(),
        mapping.as_ptr().cast(),
        mapping.len(),
        release_shared,
        hint.cast(),
        &mut buffer,
      )
    };
    let status = match shared {
      Some(status) => status,
      // SAFETY: the memory stays mapped until `release` runs or the handle
      // detaches the buffer first; `hint` is a leaked Box that `release`
      // reclaims exactly once.
      None => unsafe {
        sys::napi_create_external_arraybuffer(
          env.raw(),
          mapping.as_ptr().cast(),
          mapping.len(),
          Some(release),
          hint.cast(),
          &mut buffer,
        )
      },
    };
    if status == sys::Status::napi_no_external_buffers_allowed {
      // SAFETY: refused before Node took the finalizer, so `release` will
      // never see `hint`.
      drop(unsafe { Box::from_raw(hint) });
      return Err(throw_code(
        env,
        Kind::Error,
        EXTERNAL_BUFFERS,
        "This runtime forbids external buffers (Electron >= 21), so attach() cannot share memory here; use read() and write() instead",
      ));
    }
    if status != sys::Status::napi_ok {
      // Other failures may come after Node took the finalizer: Node's
      // Buffer::New calls it at once when the length is over its limit, so
      // freeing `hint` here too was a double free. Leave it to `release`
      // (at worst a leak) and replace Node's uncoded exception with ours.
      clear_pending_exception(env);
      return Err(throw_code(
        env,
        Kind::RangeError,
        OUT_OF_RANGE,
        &format!(
          "Could not make a view of {} bytes (more than this runtime's buffers hold?); open the segment with a smaller size, or use read() and write()",
          mapping.len()
        ),
      ));
    }
    let mut reference = ptr::null_mut();
    // SAFETY: `buffer` was just created in `env`; count 0 makes it weak.
    check(unsafe { sys::napi_create_reference(env.raw(), buffer, 0, &mut reference) })?;
    register(&mapping, alias.map(Arc::new));
    Ok((
      View {
        address: mapping.as_ptr() as usize,
        mapping,
        buffer: reference,
        shared: shared.is_some(),
      },
      buffer,
    ))
  }

  /// The address of the first byte, fixed at creation (the key of a view).
  pub fn address(&self) -> usize {
    self.address
  }

  /// Whether `data` is the first byte of this view's live mapping.
  pub fn starts_at(&self, data: *mut c_void) -> bool {
    !data.is_null() && self.mapping.as_ptr().cast() == data
  }

  /// Whether the garbage collector has freed the buffer we made.
  pub fn is_collected(&self, env: &Env) -> bool {
    self.buffer_value(env).is_none()
  }

  fn buffer_value(&self, env: &Env) -> Option<sys::napi_value> {
    let mut value = ptr::null_mut();
    // SAFETY: `self.buffer` is a live reference created in this env.
    let status = unsafe { sys::napi_get_reference_value(env.raw(), self.buffer, &mut value) };
    (status == sys::Status::napi_ok && !value.is_null()).then_some(value)
  }

  /// Whether `buffer` is a live `ArrayBuffer` over this view's memory.
  fn is_over_memory(&self, env: &Env, buffer: sys::napi_value) -> bool {
    let mut data = ptr::null_mut();
    let mut length = 0;
    // SAFETY: `buffer` is a value of this env; both out-pointers are valid.
    let status =
      unsafe { sys::napi_get_arraybuffer_info(env.raw(), buffer, &mut data, &mut length) };
    status == sys::Status::napi_ok && self.starts_at(data) && length == self.mapping.len()
  }

  /// Detaches `buffer` (by default the one we made) so that every view on it
  /// reports length 0, then unmaps. A `SharedArrayBuffer` cannot be
  /// detached: its memory turns into zero pages instead, which its finalizer
  /// unmaps.
  ///
  /// # Errors
  /// The `mmap` error when the zero pages cannot be made (the view then
  /// stays attached).
  ///
  /// Only a live buffer that still holds our memory proves that nothing else
  /// does. Our own buffer may have been detached by JavaScript instead:
  /// `ArrayBuffer.prototype.transfer()` (Node >= 21) moves the memory into a
  /// new buffer we do not know. Then the memory stays mapped until the
  /// finalizer runs, which happens when the last buffer holding it is freed.
  pub fn detach(self, env: &Env, buffer: Option<sys::napi_value>) -> Result<(), (View, Error)> {
    if self.shared {
      #[cfg(unix)]
      if let Err(error) = self.mapping.zero_in_place() {
        return Err((self, error));
      }
      forget(&self.mapping);
      self.forget(env);
      return Ok(());
    }
    if let Some(buffer) = buffer.or_else(|| self.buffer_value(env)) {
      if self.is_over_memory(env, buffer) {
        // SAFETY: `buffer` is a live external ArrayBuffer over our memory.
        let status = unsafe { sys::napi_detach_arraybuffer(env.raw(), buffer) };
        if status == sys::Status::napi_ok {
          // SAFETY: the only buffer over the memory is now detached, so
          // JavaScript cannot reach it; waiter threads pin what they read,
          // deferring the unmap.
          unsafe { self.mapping.unmap() };
          forget(&self.mapping);
        }
      }
    }
    self.forget(env);
    Ok(())
  }

  /// Drops the handle's hold without touching the buffer, which keeps working
  /// until the garbage collector frees it.
  pub fn forget(self, env: &Env) {
    // SAFETY: deleting our own reference once; `self` is consumed.
    unsafe { sys::napi_delete_reference(env.raw(), self.buffer) };
  }
}

/// Drops an exception Node left pending, so that ours replaces it.
fn clear_pending_exception(env: &Env) {
  let mut pending = false;
  // SAFETY: live env; valid out-pointers.
  unsafe {
    if sys::napi_is_exception_pending(env.raw(), &mut pending) == sys::Status::napi_ok && pending {
      let mut exception = ptr::null_mut();
      sys::napi_get_and_clear_last_exception(env.raw(), &mut exception);
    }
  }
}

/// The `ArrayBuffer` finalizer: the garbage collector freed the buffer.
unsafe extern "C" fn release(_env: sys::napi_env, _data: *mut c_void, hint: *mut c_void) {
  // SAFETY: `hint` is the Box leaked in `View::new`, reclaimed only here.
  let mapping = unsafe { Box::from_raw(hint.cast::<Arc<Mapping>>()) };
  // SAFETY: the last buffer holding the memory is gone, so nothing in
  // JavaScript reaches it; the handle unmaps earlier only after detaching a
  // buffer that held it.
  unsafe { mapping.unmap() };
  forget(&mapping);
}

/// The `SharedArrayBuffer` finalizer, on any thread: no isolate holds the
/// buffer any more.
unsafe extern "C" fn release_shared(_data: *mut c_void, hint: *mut c_void) {
  // SAFETY: `hint` is the Box leaked in `View::new`, reclaimed only here.
  let mapping = unsafe { Box::from_raw(hint.cast::<Arc<Mapping>>()) };
  // SAFETY: no JavaScript can reach the memory any more; waiter threads
  // hold pins, which defer the unmap.
  unsafe { mapping.unmap() };
  forget(&mapping);
}
