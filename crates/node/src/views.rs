//! The JavaScript side of a mapping: one external buffer over it. Where the
//! runtime can make one, a `SharedArrayBuffer` (see `shared_buffers.rs`:
//! no garbage collection per attach), which detach cannot detach, so it puts
//! zero pages over the memory and the finalizer unmaps; elsewhere an
//! `ArrayBuffer`, detached (Node-API 7, `napi_detach_arraybuffer`) before the
//! memory goes.
//!
//! Ownership: the buffer's finalizer holds one `Arc<Mapping>`, the
//! handle that made it holds another plus a weak reference to the buffer.
//! Memory is unmapped when the handle detaches a live buffer over it
//! (`detach`, `close`) or when the garbage collector frees the last buffer
//! holding it, whichever is first; it is never unmapped while JavaScript can
//! reach it.
//!
//! Finding a view's mapping by address is the core's job
//! (`Mapping::containing`): a mapping registers itself as it is made and
//! leaves the registry as it is unmapped.
//!
//! An in-heap view (in_heap.rs) is the segment mapped over a WebAssembly
//! memory's buffer, which V8 owns and cannot detach: `detach` and `close`
//! put zero pages back over it while the memory is sure to be allocated, and
//! the garbage collector frees it. Over a shared memory the binding holds
//! the memory itself ([`in_heap::Hold`]) until the overlay is gone, so the
//! finalizer of the view's buffer puts zero pages back too (copies of the
//! buffer posted to other threads then read zeros). Over a private memory
//! the view's buffer is the only hold: detach needs it in hand, and its
//! finalizer only forgets the overlay, which V8 freed with the memory.

use std::ffi::c_void;
use std::ptr;
#[cfg(unix)]
use std::rc::Rc;
use std::sync::Arc;

#[cfg(unix)]
use named_shm_core::{Access, Segment};
use named_shm_core::{Error, Mapping};
use napi::{sys, Env};

use crate::builtins;
use crate::errors::{check, throw_code, Kind, EXTERNAL_BUFFERS, OUT_OF_RANGE};
use crate::in_heap::SpareMemory;
#[cfg(unix)]
use crate::in_heap::{self, Hold};
use crate::shared_buffers;

/// A mapping handed to JavaScript.
pub struct View {
  mapping: Arc<Mapping>,
  /// Weak: the handle must not keep the buffer alive.
  buffer: sys::napi_ref,
  address: usize,
  /// A `SharedArrayBuffer`: detached by zero pages, unmapped by its finalizer.
  shared: bool,
  /// The buffer's length: the mapping's, or whole WebAssembly pages in-heap.
  capacity: usize,
  /// In-heap over a shared memory: what keeps the memory allocated until
  /// detach, close or the buffer's finalizer has put zero pages back.
  #[cfg(unix)]
  hold: Option<Rc<Hold>>,
}

/// What an in-heap view's finalizer owns: the mapping, and the hold on a
/// shared memory (shared with the view).
#[cfg(unix)]
struct Overlay {
  mapping: Arc<Mapping>,
  hold: Option<Rc<Hold>>,
}

impl View {
  /// Wraps `mapping` in an external buffer: with `shareable` (an attach), a
  /// `SharedArrayBuffer` where the runtime makes them, else a `Buffer` over
  /// an `ArrayBuffer`; without (init's view), an `ArrayBuffer`.
  ///
  /// # Errors
  /// `ERR_SHM_EXTERNAL_BUFFERS` where the runtime forbids external buffers
  /// (Electron ≥ 21): a copy would silently stop being shared.
  pub fn new(
    env: &Env,
    mapping: Arc<Mapping>,
    shareable: bool,
  ) -> napi::Result<(View, sys::napi_value)> {
    let hint = Box::into_raw(Box::new(Arc::clone(&mapping)));
    let mut buffer = ptr::null_mut();
    // SAFETY: the memory stays mapped until `release_shared` runs; `hint` is
    // a leaked Box that it reclaims exactly once.
    let shared = shareable
      .then(|| unsafe {
        shared_buffers::create(
          env.raw(),
          mapping.as_ptr().cast(),
          mapping.len(),
          release_shared,
          hint.cast(),
          &mut buffer,
        )
      })
      .flatten();
    let status = match shared {
      Some(status) => status,
      // An attach's view: a Buffer over the memory, made in the one call
      // that Node-API's external ArrayBuffer is made by anyway (Node builds
      // that from a Buffer and hands back its ArrayBuffer), so the facade
      // need not wrap the ArrayBuffer in a second one.
      // SAFETY: as below.
      None if shareable => unsafe {
        sys::napi_create_external_buffer(
          env.raw(),
          mapping.len(),
          mapping.as_ptr().cast(),
          Some(release),
          hint.cast(),
          &mut buffer,
        )
      },
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
    // The handle holds (weakly) and detaches the ArrayBuffer, under the
    // Buffer where there is one: whoever holds any view on it holds that.
    let arraybuffer = if shareable && shared.is_none() {
      let mut arraybuffer = ptr::null_mut();
      // SAFETY: `buffer` is the Buffer just made in `env`; valid out-pointer.
      check(unsafe {
        sys::napi_get_typedarray_info(
          env.raw(),
          buffer,
          ptr::null_mut(),
          ptr::null_mut(),
          ptr::null_mut(),
          &mut arraybuffer,
          ptr::null_mut(),
        )
      })?;
      arraybuffer
    } else {
      buffer
    };
    let mut reference = ptr::null_mut();
    // SAFETY: `arraybuffer` was just created in `env`; count 0 makes it weak.
    check(unsafe { sys::napi_create_reference(env.raw(), arraybuffer, 0, &mut reference) })?;
    Ok((
      View {
        address: mapping.as_ptr() as usize,
        capacity: mapping.len(),
        mapping,
        buffer: reference,
        shared: shared.is_some(),
        #[cfg(unix)]
        hold: None,
      },
      buffer,
    ))
  }

  /// Maps `segment` over the buffer of a WebAssembly memory (see
  /// in_heap.rs), `spare` if its handle kept one: the in-heap view, for
  /// runtimes that refuse external buffers or count them against garbage
  /// collection. Its buffer is whole 64 KiB pages, the segment's bytes first.
  ///
  /// # Errors
  /// As [`in_heap::memory_for`] and [`Segment::map_over`].
  #[cfg(unix)]
  pub fn in_heap(
    env: &Env,
    segment: &Segment,
    access: Access,
    spare: Option<SpareMemory>,
  ) -> napi::Result<(View, sys::napi_value)> {
    let len = usize::try_from(segment.size()).unwrap_or(usize::MAX);
    let mut memory = in_heap::memory_for(env, len, spare)?;
    // SAFETY: V8 keeps the memory allocated while `memory.buffer` lives
    // (here, held by this call) and, over a shared memory, while the hold
    // lives. Later: a shared memory's overlay goes (detach, close or the
    // finalizer put zero pages back) before its hold is released; a private
    // memory's goes by detach or close while they hold its buffer, or is
    // forgotten by the finalizer once V8 freed it. The memory object went to
    // no one, and the buffer cannot be detached, so nothing else maps or
    // frees the range. A spare's alias came from this handle's last overlay,
    // of this same segment.
    let mapped = unsafe {
      segment.map_over_reusing(memory.data, memory.capacity, access, memory.alias.take())
    };
    let mapping = match mapped {
      Ok(mapping) => mapping,
      Err(error) => {
        if let Some(hold) = &memory.hold {
          hold.release(env.raw());
        }
        return Err(crate::errors::throw_core(env, &error));
      }
    };
    let held = Box::into_raw(Box::new(Overlay {
      mapping: Arc::clone(&mapping),
      hold: memory.hold.clone(),
    }));
    // SAFETY: `held` is a leaked Box that `release_overlay` reclaims once;
    // the buffer is an object of this env.
    let status = unsafe {
      sys::napi_add_finalizer(
        env.raw(),
        memory.buffer,
        held.cast(),
        Some(release_overlay),
        ptr::null_mut(),
        ptr::null_mut(),
      )
    };
    if status != sys::Status::napi_ok {
      // SAFETY: refused, so Node never took `held`; dropping the last
      // mapping puts zero pages back while this call holds the buffer.
      let held = unsafe { Box::from_raw(held) };
      drop(mapping);
      drop(held.mapping);
      if let Some(hold) = &held.hold {
        hold.release(env.raw());
      }
      return Err(napi::Error::new(
        napi::Status::from(status),
        "napi_add_finalizer failed",
      ));
    }
    let mut reference = ptr::null_mut();
    // SAFETY: `buffer` was just created in `env`; count 0 makes it weak.
    check(unsafe { sys::napi_create_reference(env.raw(), memory.buffer, 0, &mut reference) })?;
    Ok((
      View {
        address: mapping.as_ptr() as usize,
        capacity: memory.capacity,
        mapping,
        buffer: reference,
        shared: false,
        hold: memory.hold,
      },
      memory.buffer,
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

  /// Whether `buffer`, which starts where this view does, is the one we
  /// made. Over a shared memory it must be: the handle reuses such a memory
  /// for its next view, so an earlier view's buffer, and clones of ours,
  /// start at the same address.
  pub fn is_own(&self, env: &Env, buffer: sys::napi_value) -> bool {
    #[cfg(unix)]
    if self.hold.is_some() {
      return self
        .buffer_value(env)
        .is_some_and(|own| strict_equals(env, own, buffer));
    }
    let _ = (env, buffer);
    true
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

  /// Whether `buffer` is a live `ArrayBuffer` (or `SharedArrayBuffer`)
  /// over this view's memory.
  fn is_over_memory(&self, env: &Env, buffer: sys::napi_value) -> bool {
    builtins::buffer_bytes(env, buffer)
      .is_some_and(|(data, length)| self.starts_at(data) && length == self.capacity)
  }

  /// Detaches `buffer` (by default the one we made) so that every view on it
  /// reports length 0, then unmaps. A `SharedArrayBuffer` cannot be
  /// detached: its memory turns into zero pages instead, which its finalizer
  /// unmaps. An in-heap view over a shared memory gives that memory back, to
  /// be reused by the handle's next in-heap view (see [`SpareMemory`]).
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
  pub fn detach(
    self,
    env: &Env,
    buffer: Option<sys::napi_value>,
  ) -> Result<Option<SpareMemory>, Box<(View, Error)>> {
    if self.shared {
      #[cfg(unix)]
      if let Err(error) = self.mapping.zero_in_place() {
        return Err(Box::new((self, error)));
      }
      self.forget(env);
      return Ok(None);
    }
    #[cfg(unix)]
    if let Some(hold) = &self.hold {
      let mut spare = None;
      if hold.is_held() {
        // SAFETY: the hold keeps the memory allocated for this call; once
        // the zero pages are back, nothing reaches the segment through any
        // buffer over it, here or in another thread.
        let alias = unsafe { self.mapping.unmap_keeping_alias() };
        spare = SpareMemory::keep(env, self.address as *mut u8, self.capacity, hold, alias);
      }
      self.forget(env);
      return Ok(spare);
    }
    if self.mapping.is_overlay() {
      self.detach_overlay(env, buffer);
      return Ok(None);
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
        }
      }
    }
    self.forget(env);
    Ok(None)
  }

  /// An in-heap view's detach: zero pages go back over the segment, so every
  /// view on the buffer (which cannot be detached) reads zeros. Only while
  /// our own buffer is alive and in hand: then V8 has not freed the memory.
  fn detach_overlay(self, env: &Env, given: Option<sys::napi_value>) {
    if let Some(own) = self.buffer_value(env) {
      let same = given.is_none_or(|given| strict_equals(env, own, given));
      if same && self.is_over_memory(env, own) {
        // SAFETY: `own` keeps the memory allocated for this call; once the
        // zero pages are back, nothing reaches the segment through it.
        unsafe { self.mapping.unmap() };
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

/// Whether `a === b`.
fn strict_equals(env: &Env, a: sys::napi_value, b: sys::napi_value) -> bool {
  let mut equal = false;
  // SAFETY: both are values of this env; valid out-pointer.
  let status = unsafe { sys::napi_strict_equals(env.raw(), a, b, &mut equal) };
  status == sys::Status::napi_ok && equal
}

/// Drops an exception Node left pending, so that ours replaces it.
pub(crate) fn clear_pending_exception(env: &Env) {
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

/// The `SharedArrayBuffer` finalizer, on any thread: no isolate holds the
/// buffer any more.
unsafe extern "C" fn release_shared(_data: *mut c_void, hint: *mut c_void) {
  // SAFETY: `hint` is the Box leaked in `View::new`, reclaimed only here.
  let mapping = unsafe { Box::from_raw(hint.cast::<Arc<Mapping>>()) };
  // SAFETY: no JavaScript can reach the memory any more; waiter threads
  // hold pins, which defer the unmap.
  unsafe { mapping.unmap() };
}

/// An in-heap view's finalizer: the garbage collector freed its buffer.
/// Over a shared memory still held, copies of the buffer in other threads
/// may still reach the memory: zero pages go back over it, then the hold.
/// Otherwise V8 frees (or has freed) the memory, overlay and all.
#[cfg(unix)]
unsafe extern "C" fn release_overlay(env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
  // SAFETY: `data` is the Box leaked in `View::in_heap` (napi_add_finalizer's
  // `finalize_data`), reclaimed only here.
  let overlay = unsafe { Box::from_raw(data.cast::<Overlay>()) };
  match &overlay.hold {
    Some(hold) if hold.is_held() => {
      // SAFETY: the hold keeps the memory allocated for this call.
      unsafe { overlay.mapping.unmap() };
      hold.release(env);
    }
    // SAFETY: the buffer is gone and the memory not held (a released hold
    // came after its overlay went), so V8 may already have reused it:
    // forget it without touching it.
    _ => unsafe { overlay.mapping.forget_overlay() },
  }
}
