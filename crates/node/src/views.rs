//! The JavaScript side of a mapping: one external `ArrayBuffer` over it,
//! detached (Node-API 7, `napi_detach_arraybuffer`) before the memory goes.
//!
//! Ownership: the `ArrayBuffer`'s finalizer holds one `Arc<Mapping>`, the
//! handle that made it holds another plus a weak reference to the buffer.
//! Memory is unmapped when the handle detaches the buffer (`detach`,
//! `close`) or when the garbage collector frees the buffer, whichever is
//! first; it is never unmapped while JavaScript can reach it.
//!
//! Every live attachment is also in a process-wide registry, so that `wait`,
//! `notify` and `SharedMutex` can check that a view lies in an attached
//! segment and find the mapping to pin (see `named_shm_core::SharedWord`).

use std::ffi::c_void;
use std::ptr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use named_shm_core::{waiter, Mapping};
use napi::{sys, Env};

use crate::errors::{check, throw_code, Kind, EXTERNAL_BUFFERS};

/// One registered attachment.
struct Registered {
  view: Weak<Mapping>,
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

/// The live attachment whose memory holds `[addr, addr + len)`: its mapping,
/// and the mapping to wait in (itself, or its shared alias).
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
  let mut entries = registry();
  entries.retain(|entry| entry.view.strong_count() > 0);
  entries.push(Registered {
    view: Arc::downgrade(view),
    alias,
  });
}

/// Drops `view` (unmapped) from the registry, with its alias, and tells the
/// waiter threads so that waits on it end.
fn forget(view: &Mapping) {
  let mut gone = Vec::new();
  registry().retain_mut(|entry| {
    let live = entry
      .view
      .upgrade()
      .is_some_and(|v| !ptr::eq(Arc::as_ptr(&v), view));
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
    // SAFETY: the memory stays mapped until `release` runs or the handle
    // detaches the buffer first; `hint` is a leaked Box that `release`
    // reclaims exactly once.
    let status = unsafe {
      sys::napi_create_external_arraybuffer(
        env.raw(),
        mapping.as_ptr().cast(),
        mapping.len(),
        Some(release),
        hint.cast(),
        &mut buffer,
      )
    };
    if status != sys::Status::napi_ok {
      // SAFETY: the buffer was not created, so `release` will never see `hint`.
      drop(unsafe { Box::from_raw(hint) });
      if status == sys::Status::napi_no_external_buffers_allowed {
        return Err(throw_code(
          env,
          Kind::Error,
          EXTERNAL_BUFFERS,
          "This runtime forbids external buffers (Electron >= 21), so attach() cannot share memory here; use read() and write() instead",
        ));
      }
      check(status)?;
    }
    let mut reference = ptr::null_mut();
    // SAFETY: `buffer` was just created in `env`; count 0 makes it weak.
    check(unsafe { sys::napi_create_reference(env.raw(), buffer, 0, &mut reference) })?;
    register(&mapping, alias.map(Arc::new));
    Ok((
      View {
        mapping,
        buffer: reference,
      },
      buffer,
    ))
  }

  /// Whether `data` is the first byte of this view's live mapping.
  pub fn starts_at(&self, data: *mut c_void) -> bool {
    !data.is_null() && self.mapping.as_ptr().cast() == data
  }

  /// The mapping behind this view.
  pub fn mapping(&self) -> &Mapping {
    &self.mapping
  }

  /// Whether the garbage collector has freed the buffer.
  pub fn is_collected(&self, env: &Env) -> bool {
    self.buffer_value(env).is_none()
  }

  fn buffer_value(&self, env: &Env) -> Option<sys::napi_value> {
    let mut value = ptr::null_mut();
    // SAFETY: `self.buffer` is a live reference created in this env.
    let status = unsafe { sys::napi_get_reference_value(env.raw(), self.buffer, &mut value) };
    (status == sys::Status::napi_ok && !value.is_null()).then_some(value)
  }

  /// Detaches the buffer (every view on it reports length 0), then unmaps.
  pub fn detach(self, env: &Env) {
    if let Some(buffer) = self.buffer_value(env) {
      // SAFETY: `buffer` is our external ArrayBuffer, detachable by
      // construction. Failure leaves it attached; then we must not unmap.
      let status = unsafe { sys::napi_detach_arraybuffer(env.raw(), buffer) };
      if status != sys::Status::napi_ok {
        self.forget(env);
        return;
      }
    }
    // SAFETY: the buffer is detached or collected: JavaScript cannot reach
    // the memory; waiter threads pin what they read, deferring the unmap.
    unsafe { self.mapping.unmap() };
    forget(&self.mapping);
    self.forget(env);
  }

  /// Drops the handle's hold without touching the buffer, which keeps working
  /// until the garbage collector frees it.
  pub fn forget(self, env: &Env) {
    // SAFETY: deleting our own reference once; `self` is consumed.
    unsafe { sys::napi_delete_reference(env.raw(), self.buffer) };
  }
}

/// The `ArrayBuffer` finalizer: the garbage collector freed the buffer.
unsafe extern "C" fn release(_env: sys::napi_env, _data: *mut c_void, hint: *mut c_void) {
  // SAFETY: `hint` is the Box leaked in `View::new`, reclaimed only here.
  let mapping = unsafe { Box::from_raw(hint.cast::<Arc<Mapping>>()) };
  // SAFETY: the buffer is gone, so nothing in JavaScript reaches the memory;
  // the handle unmaps only after detaching or seeing the buffer collected.
  unsafe { mapping.unmap() };
  forget(&mapping);
}
