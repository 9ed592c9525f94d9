//! `open(..., { create: true, init })` where the runtime refuses external
//! buffers (Electron): `init` fills an ordinary `ArrayBuffer`, which is then
//! copied into the segment, still unpublished, so that nobody can tell the
//! difference but the one copy. (An in-heap view needs the segment's handle,
//! which `init` does not get.)

use std::ptr;
use std::sync::Arc;

use named_shm_core::Mapping;
use napi::{sys, Env};

use crate::errors::{check, throw_code, throw_core, Kind, INIT_DETACHED, OUT_OF_RANGE};
use crate::views::clear_pending_exception;

/// Calls `init` with a zero-filled `ArrayBuffer` of the segment's size, copies
/// what it wrote into `mapping`, and detaches the buffer. `init`'s exception,
/// if any, stays pending and becomes the error of `open`.
pub fn run(env: &Env, init: sys::napi_value, mapping: &Arc<Mapping>) -> napi::Result<()> {
  let raw = env.raw();
  let len = mapping.len();
  let mut data = ptr::null_mut();
  let mut buffer = ptr::null_mut();
  // SAFETY: live env; valid out-pointers. V8 zero-fills the buffer.
  if unsafe { sys::napi_create_arraybuffer(raw, len, &mut data, &mut buffer) }
    != sys::Status::napi_ok
  {
    clear_pending_exception(env);
    return Err(throw_code(
      env,
      Kind::RangeError,
      OUT_OF_RANGE,
      &format!("Could not allocate {len} bytes for init's copy of the segment; create it without init and write() instead"),
    ));
  }
  let mut this = ptr::null_mut();
  let mut returned = ptr::null_mut();
  // SAFETY: live env; `init` and `buffer` are values of this call.
  let status = unsafe {
    check(sys::napi_get_undefined(raw, &mut this))?;
    sys::napi_call_function(raw, this, init, 1, &buffer, &mut returned)
  };
  if status == sys::Status::napi_pending_exception {
    return Err(napi::Error::from_status(napi::Status::PendingException));
  }
  check(status)?;
  // Whether `init` left the buffer as it was made (not detached or moved).
  let mut now = ptr::null_mut();
  let mut now_len = 0;
  // SAFETY: `buffer` is a value of this call; valid out-pointers.
  let kept = unsafe { sys::napi_get_arraybuffer_info(raw, buffer, &mut now, &mut now_len) }
    == sys::Status::napi_ok
    && now == data
    && now_len == len;
  if !kept {
    return Err(throw_code(
      env,
      Kind::Error,
      INIT_DETACHED,
      "init detached or transferred its view; nothing was published",
    ));
  }
  // SAFETY: `buffer` is alive (a value of this call) and holds `len` bytes
  // at `data`; no JavaScript runs during the copy.
  let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) };
  mapping
    .write_at(0, bytes)
    .map_err(|e| throw_core(env, &e))?;
  // Views `init` kept now turn length 0, as over a segment's own memory.
  // SAFETY: `buffer` is an ArrayBuffer of this env.
  unsafe { sys::napi_detach_arraybuffer(raw, buffer) };
  Ok(())
}
