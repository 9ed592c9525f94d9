//! `NativeSegment`: one open segment and the views it handed out (the
//! state behind a `SharedMemory`; segment_calls.rs hands it to JavaScript).
//! The TypeScript facade validates arguments before they get here; this
//! layer still checks every bound, so a caller that skips the facade cannot
//! crash.

use std::collections::HashMap;
use std::sync::Arc;

use napi::bindgen_prelude::{Buffer, ToNapiValue};
use napi::{sys, Env};
use napi_derive::napi;

use named_shm_core::{Access, Mapping, Name, Namespace, OpenError, OpenOptions, Segment};

use crate::copied_init;
use crate::errors::{
  check, throw_code, throw_core, Kind, CLOSED, EXTERNAL_BUFFERS, INIT_DETACHED, NOT_ATTACHED,
  OUT_OF_RANGE,
};
use crate::in_heap::{self, SpareMemory, ZeroCopy};
use crate::segment_calls::ViewRequest;
use crate::views::View;

/// An open named segment and the views it handed out.
pub struct NativeSegment {
  segment: Option<Segment>,
  /// Keyed by the first byte's address: detach finds a view in O(1).
  views: HashMap<usize, View>,
  /// A mapping of our own for `read` and `write`, made on first use.
  copier: Option<Arc<Mapping>>,
  /// Prune collected views when `views` grows to this many.
  prune_at: usize,
  /// The memory of the last in-heap view detached, for the next one.
  spare: Option<SpareMemory>,
}

/// The smallest `prune_at`.
const PRUNE_MIN: usize = 16;

/// Parses `name` for this platform.
pub(crate) fn parse_name(env: &Env, name: &str, global: bool) -> napi::Result<Name> {
  let namespace = if global {
    Namespace::Global
  } else {
    Namespace::Local
  };
  Name::parse_in(name, namespace).map_err(|e| throw_core(env, &e))
}

/// Converts a JavaScript size or offset, already checked by the facade.
pub(crate) fn to_u64(env: &Env, value: f64, what: &str) -> napi::Result<u64> {
  if value.is_finite()
    && value >= 0.0
    && value.fract() == 0.0
    && value <= named_shm_core::MAX_SIZE as f64
  {
    Ok(value as u64)
  } else {
    Err(throw_code(
      env,
      Kind::RangeError,
      OUT_OF_RANGE,
      &format!("The value of \"{what}\" is out of range. It must be an integer >= 0 and <= 2^53 - 1. Received {value}"),
    ))
  }
}

/// The OS name `name` maps to on this platform.
#[napi]
pub fn os_name_of(env: Env, name: String, global: bool) -> napi::Result<String> {
  Ok(parse_name(&env, &name, global)?.os_name().to_owned())
}

/// Removes the segment `name` (`PR_DeleteSharedMemory`).
pub(crate) fn delete_segment(env: &Env, name: &str, global: bool) -> napi::Result<()> {
  let name = parse_name(env, name, global)?;
  Segment::delete(&name).map_err(|e| throw_core(env, &e))
}

impl NativeSegment {
  /// Opens or creates the segment `name` (`PR_OpenSharedMemory`). When this
  /// call creates it, `init` (if given) is called with an `ArrayBuffer` over
  /// the new segment before its name is published; the buffer is detached
  /// when `init` returns, and if `init` throws, nothing is published.
  /// `init`, when given, is a function (the caller checked).
  pub(crate) fn open(
    env: &Env,
    name: &str,
    size: f64,
    options: &OpenOptions,
    global: bool,
    init: Option<sys::napi_value>,
  ) -> napi::Result<Self> {
    let name = parse_name(env, name, global)?;
    let size = to_u64(env, size, "size")?;
    let env = *env;
    // Without `init` nothing maps the new segment: a sparse one larger than
    // the address space (`reserve: false`) must still open.
    let segment = match init {
      Some(init) => Segment::open_with(&name, size, options, |mapping| {
        run_init(&env, init, mapping)
      })
      .map_err(|error| match error {
        OpenError::Open(error) => throw_core(&env, &error),
        OpenError::Init(error) => error,
      })?,
      None => Segment::open(&name, size, options).map_err(|e| throw_core(&env, &e))?,
    };
    Ok(NativeSegment {
      segment: Some(segment),
      views: HashMap::new(),
      copier: None,
      prune_at: PRUNE_MIN,
      spare: None,
    })
  }

  /// The open segment; `None` once closed.
  pub(crate) fn segment(&self) -> Option<&Segment> {
    self.segment.as_ref()
  }

  /// The name the OS knows the segment by; empty once closed.
  fn os_name(&self) -> String {
    self
      .segment
      .as_ref()
      .map_or_else(String::new, |s| s.name().os_name().to_owned())
  }

  /// Maps the segment and returns a view of it (`PR_AttachSharedMemory`):
  /// an external buffer where the runtime allows them (a `SharedArrayBuffer`,
  /// or a `Buffer` over an `ArrayBuffer`), else (or when asked for an
  /// in-heap view) the segment mapped over a WebAssembly memory's buffer.
  /// The facade's copy view is always an external `ArrayBuffer`.
  pub(crate) fn attach(
    &mut self,
    env: &Env,
    read_only: bool,
    request: ViewRequest,
  ) -> napi::Result<sys::napi_value> {
    let in_heap = request == ViewRequest::InHeap;
    let env = *env;
    let segment = self.segment.as_ref().ok_or_else(|| closed(&env))?;
    let access = if read_only || segment.is_read_only() {
      Access::CopyOnWrite
    } else {
      Access::ReadWrite
    };
    let kind = match request {
      // Only ever an external buffer: the facade asks for it where attach() makes those.
      ViewRequest::Copies => match in_heap::zero_copy(env) {
        ZeroCopy::External => ZeroCopy::External,
        _ => {
          return Err(throw_code(
            &env,
            Kind::Error,
            EXTERNAL_BUFFERS,
            "This runtime forbids external buffers, so copies cannot go through a view of the handle's own",
          ))
        }
      },
      _ => in_heap::view_kind(&env, segment.size(), in_heap),
    };
    // Pruning walks every view: do it each time the list doubles, so that
    // attach stays O(1) amortized with thousands of live views.
    if self.views.len() >= self.prune_at {
      self.prune(&env);
      self.prune_at = (self.views.len() * 2).max(PRUNE_MIN);
    }
    let segment = self.segment.as_ref().ok_or_else(|| closed(&env))?;
    let (view, buffer) = match kind {
      ZeroCopy::External => {
        let mapping = segment.map(access).map_err(|e| throw_core(&env, &e))?;
        View::new(&env, mapping, request != ViewRequest::Copies)?
      }
      #[cfg(unix)]
      ZeroCopy::InHeap => View::in_heap(&env, segment, access, self.spare.take())?,
      _ if in_heap => return Err(in_heap::unsupported(&env)),
      _ => return Err(in_heap::no_view(&env)),
    };
    // A key still held by a collected view is stale: the kernel could only
    // hand out this address again after that view's memory was unmapped.
    if let Some(stale) = self.views.insert(view.address(), view) {
      stale.forget(&env);
    }
    Ok(buffer)
  }

  /// Unmaps the attachment whose buffer is `buffer` and detaches it
  /// (`PR_DetachSharedMemory`).
  pub(crate) fn detach(&mut self, env: &Env, buffer: sys::napi_value) -> napi::Result<()> {
    let env = *env;
    if self.segment.is_none() {
      return Err(closed(&env));
    }
    let data = arraybuffer_data(&env, buffer);
    let key = data as usize;
    let live = self
      .views
      .get(&key)
      .is_some_and(|view| view.starts_at(data) && view.is_own(&env, buffer));
    let Some(view) = live.then(|| self.views.remove(&key)).flatten() else {
      return Err(throw_code(
        &env,
        Kind::Error,
        NOT_ATTACHED,
        "The view is not attached to this segment (already detached, or from another handle)",
      ));
    };
    match view.detach(&env, Some(buffer)) {
      Ok(spare) => {
        self.keep_spare(&env, spare);
        Ok(())
      }
      Err(failed) => {
        let (view, error) = *failed;
        self.views.insert(key, view);
        Err(throw_core(&env, &error))
      }
    }
  }

  /// Keeps `spare` for the next in-heap view if none is kept yet.
  fn keep_spare(&mut self, env: &Env, spare: Option<SpareMemory>) {
    match spare {
      Some(spare) if self.spare.is_none() => self.spare = Some(spare),
      Some(spare) => spare.release(env),
      None => {}
    }
  }

  /// Gives the kept memory back to V8.
  fn release_spare(&mut self, env: &Env) {
    if let Some(spare) = self.spare.take() {
      spare.release(env);
    }
  }

  /// Copies `length` bytes from `offset` into a new Buffer.
  pub(crate) fn read(
    &mut self,
    env: &Env,
    offset: f64,
    length: f64,
  ) -> napi::Result<sys::napi_value> {
    let env = *env;
    let (offset, length) = (
      to_u64(&env, offset, "offset")?,
      to_u64(&env, length, "length")?,
    );
    let os_name = self.os_name();
    let copier = self.copier(&env)?;
    let (offset, length) = in_bounds(&env, copier, offset, length, "length")?;
    let bytes = copier
      .read_to_vec(offset, length)
      .map_err(|e| throw_core(&env, &e.for_name(&os_name)))?;
    self.check_shrunk(&env)?;
    // As napi-rs returns a Buffer: over the vector where the runtime takes
    // external buffers, else a copy.
    // SAFETY: the live env of this call.
    unsafe { ToNapiValue::to_napi_value(env.raw(), Buffer::from(bytes)) }
  }

  /// Copies from `offset` into `[target_ptr, target_ptr + target_len)`, as
  /// many bytes as fit; returns the count. Raw pointers, not slices: the
  /// target may be a view of this very segment, memory that Rust must not
  /// assume unaliased.
  ///
  /// # Safety
  /// `target_ptr` is valid for writes of `target_len` bytes for this call.
  pub(crate) unsafe fn read_into(
    &mut self,
    env: &Env,
    target_ptr: *mut u8,
    target_len: usize,
    offset: f64,
  ) -> napi::Result<f64> {
    let env = *env;
    let offset = to_u64(&env, offset, "offset")?;
    let copier = self.copier(&env)?;
    let available = (copier.len() as u64).saturating_sub(offset);
    let length = available.min(target_len as u64);
    let (offset, length) = in_bounds(&env, copier, offset, length, "offset")?;
    // SAFETY: `target_ptr` is valid for `length <= target_len` bytes.
    unsafe { copier.copy_out(offset, target_ptr, length) }.map_err(|e| throw_core(&env, &e))?;
    self.check_shrunk(&env)?;
    Ok(length as f64)
  }

  /// Copies `[source_ptr, source_ptr + source_len)` into the segment at
  /// `offset`; returns the count.
  ///
  /// # Safety
  /// `source_ptr` is valid for reads of `source_len` bytes for this call; it
  /// may alias the segment (see `read_into`).
  pub(crate) unsafe fn write(
    &mut self,
    env: &Env,
    source_ptr: *const u8,
    source_len: usize,
    offset: f64,
  ) -> napi::Result<f64> {
    let env = *env;
    let offset = to_u64(&env, offset, "offset")?;
    let copier = self.copier(&env)?;
    let (offset, length) = in_bounds(&env, copier, offset, source_len as u64, "source")?;
    // SAFETY: the caller's contract: `length <= source_len` readable bytes.
    unsafe { copier.copy_in(offset, source_ptr, length) }.map_err(|e| throw_core(&env, &e))?;
    self.check_shrunk(&env)?;
    Ok(length as f64)
  }

  /// Detaches every view, unmaps, and releases the OS handle
  /// (`PR_CloseSharedMemory`). A second call does nothing.
  pub(crate) fn close(&mut self, env: &Env) {
    for (_, view) in self.views.drain() {
      // A view whose zero pages could not be made keeps the segment's
      // memory until the garbage collector frees it: still no crash.
      if let Ok(Some(spare)) = view.detach(env, None) {
        spare.release(env);
      }
    }
    self.release_spare(env);
    self.copier = None;
    self.segment = None;
  }

  fn copier(&mut self, env: &Env) -> napi::Result<&Mapping> {
    let segment = self.segment.as_ref().ok_or_else(|| closed(env))?;
    if self.copier.is_none() {
      let access = if segment.is_read_only() {
        Access::ReadOnly
      } else {
        Access::ReadWrite
      };
      self.copier = Some(segment.map(access).map_err(|e| throw_core(env, &e))?);
    }
    Ok(self.copier.as_ref().unwrap_or_else(|| unreachable!()))
  }

  /// Throws `ERR_SHM_SIZE` if the last copy met pages past the segment's
  /// end (another process shrank it), `ENOSPC` if tmpfs had no page for it:
  /// the copy read zeros or wrote nowhere.
  /// The copier goes, so the next copy maps again and says what size the
  /// segment has now.
  fn check_shrunk(&mut self, env: &Env) -> napi::Result<()> {
    if !self
      .copier
      .as_ref()
      .is_some_and(|copier| copier.was_shrunk())
    {
      return Ok(());
    }
    self.copier = None;
    let error = self.segment.as_ref().map(Segment::fault_error);
    Err(error.map_or_else(|| closed(env), |error| throw_core(env, &error)))
  }

  /// Forgets views whose buffers the garbage collector already freed.
  fn prune(&mut self, env: &Env) {
    let collected: Vec<usize> = self
      .views
      .iter()
      .filter(|(_, view)| view.is_collected(env))
      .map(|(key, _)| *key)
      .collect();
    for key in collected {
      if let Some(view) = self.views.remove(&key) {
        // Its memory may live on in a transferred buffer: the finalizer unmaps.
        view.forget(env);
      }
    }
  }
}

impl NativeSegment {
  /// Collected without `close()`: views still reachable keep working (each
  /// buffer holds its mapping); only our references go, and the OS handle.
  pub(crate) fn finalize(mut self, env: &Env) {
    for (_, view) in self.views.drain() {
      view.forget(env);
    }
    self.release_spare(env);
  }
}

/// Calls the JavaScript `init` with an `ArrayBuffer` over the unpublished
/// segment, then detaches the buffer. Its exception, if any, stays pending
/// and becomes the error of `open`.
fn run_init(env: &Env, init: sys::napi_value, mapping: Arc<Mapping>) -> napi::Result<()> {
  if !in_heap::external_buffers_allowed(env) {
    return copied_init::run(env, init, &mapping);
  }
  // An ArrayBuffer, which detach empties: init's view has length 0 after.
  let (view, buffer) = View::new(env, mapping, false)?;
  let mut this = std::ptr::null_mut();
  let mut returned = std::ptr::null_mut();
  // SAFETY: live env; `init` and `buffer` are values of this call; the
  // out-pointers are valid.
  let status = unsafe {
    check(sys::napi_get_undefined(env.raw(), &mut this))?;
    sys::napi_call_function(env.raw(), this, init, 1, &buffer, &mut returned)
  };
  // Whether `init` left the buffer over the memory, before detaching it.
  let kept = view.is_live_buffer(env, buffer);
  // A SharedArrayBuffer cannot fail to detach here but for ENOMEM, and then
  // keeps the memory until collected: nothing to report over init.
  let _ = view.detach(env, Some(buffer));
  if status == sys::Status::napi_pending_exception {
    return Err(napi::Error::from_status(napi::Status::PendingException));
  }
  check(status)?;
  if !kept {
    // Transferred (structuredClone, postMessage, transfer()): the memory
    // would outlive `init` in a buffer no handle knows of.
    return Err(throw_code(
      env,
      Kind::Error,
      INIT_DETACHED,
      "init detached or transferred its view; nothing was published",
    ));
  }
  Ok(())
}

/// `ERR_SHM_CLOSED`.
pub(crate) fn closed(env: &Env) -> napi::Error {
  throw_code(
    env,
    Kind::Error,
    CLOSED,
    "The shared memory handle is closed",
  )
}

/// Checks `offset + length <= len` and converts both to `usize`.
fn in_bounds(
  env: &Env,
  mapping: &Mapping,
  offset: u64,
  length: u64,
  what: &str,
) -> napi::Result<(usize, usize)> {
  let size = mapping.len() as u64;
  if offset > size || length > size - offset {
    return Err(throw_code(
      env,
      Kind::RangeError,
      OUT_OF_RANGE,
      &format!("The value of \"{what}\" is out of range: {length} bytes at offset {offset} exceed the segment's {size} bytes"),
    ));
  }
  Ok((offset as usize, length as usize))
}

/// The data pointer of `value` if it is an `ArrayBuffer` or (where views are
/// shared) a `SharedArrayBuffer`, else null (see `builtins::buffer_bytes`).
fn arraybuffer_data(env: &Env, value: sys::napi_value) -> *mut std::ffi::c_void {
  crate::builtins::buffer_bytes(env, value).map_or(std::ptr::null_mut(), |(data, _)| data)
}
