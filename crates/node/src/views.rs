//! The JavaScript side of a mapping: one external `ArrayBuffer` over it,
//! detached (Node-API 7, `napi_detach_arraybuffer`) before the memory goes.
//!
//! Ownership: the `ArrayBuffer`'s finalizer holds one `Arc<Mapping>`, the
//! handle that made it holds another plus a weak reference to the buffer.
//! Memory is unmapped when the handle detaches a live buffer over it
//! (`detach`, `close`) or when the garbage collector frees the last buffer
//! holding it, whichever is first; it is never unmapped while JavaScript can
//! reach it.
//!
//! Finding a view's mapping by address is the core's job
//! (`Mapping::containing`): a mapping registers itself as it is made and
//! leaves the registry as it is unmapped.

use std::ffi::c_void;
use std::ptr;
use std::sync::Arc;

use named_shm_core::Mapping;
use napi::{sys, Env};

use crate::errors::{check, throw_code, Kind, EXTERNAL_BUFFERS, OUT_OF_RANGE};

/// A mapping handed to JavaScript.
pub struct View {
  mapping: Arc<Mapping>,
  /// Weak: the handle must not keep the buffer alive.
  buffer: sys::napi_ref,
  address: usize,
}

impl View {
  /// Wraps `mapping` in an external `ArrayBuffer`.
  ///
  /// # Errors
  /// `ERR_SHM_EXTERNAL_BUFFERS` where the runtime forbids external buffers
  /// (Electron ≥ 21): a copy would silently stop being shared.
  pub fn new(env: &Env, mapping: Arc<Mapping>) -> napi::Result<(View, sys::napi_value)> {
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
    Ok((
      View {
        address: mapping.as_ptr() as usize,
        mapping,
        buffer: reference,
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

  /// Whether `buffer` is still a live `ArrayBuffer` over this view's memory
  /// (JavaScript may have detached or transferred it).
  pub fn is_live_buffer(&self, env: &Env, buffer: sys::napi_value) -> bool {
    self.is_over_memory(env, buffer)
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
  /// reports length 0, then unmaps.
  ///
  /// Only a live buffer that still holds our memory proves that nothing else
  /// does. Our own buffer may have been detached by JavaScript instead:
  /// `ArrayBuffer.prototype.transfer()` (Node >= 21) moves the memory into a
  /// new buffer we do not know. Then the memory stays mapped until the
  /// finalizer runs, which happens when the last buffer holding it is freed.
  pub fn detach(self, env: &Env, buffer: Option<sys::napi_value>) {
    if let Some(buffer) = buffer.or_else(|| self.buffer_value(env)) {
      if self.is_over_memory(env, buffer) {
        // SAFETY: `buffer` is a live external ArrayBuffer over our memory.
        let status = unsafe { sys::napi_detach_arraybuffer(env.raw(), buffer) };
        if status == sys::Status::napi_ok {
          // SAFETY: the only buffer over the memory is now detached, so
          // JavaScript cannot reach it; waiter threads pin what they read,
          // deferring the unmap.
          unsafe { self.mapping.unmap() };
        }
      }
    }
    self.forget(env);
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
}
