//! Finding the word a JavaScript view points at: the view must lie in a live
//! mapping of this process (`Mapping::containing`), the word in the view,
//! aligned.

use std::ptr;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use named_shm_core::{Mapping, Place, SharedWord, MUTEX_BYTES};
use napi::{sys, Env};

use crate::errors::{
  throw_code, throw_core, Kind, INVALID_ARG_TYPE, INVALID_ARG_VALUE, NOT_ATTACHED, OUT_OF_RANGE,
  READ_ONLY,
};

/// The memory of a TypedArray or DataView.
struct ViewInfo {
  data: usize,
  byte_length: usize,
  int32: bool,
}

fn view_info(env: &Env, value: sys::napi_value) -> Option<ViewInfo> {
  let raw = env.raw();
  let mut is = false;
  let mut data = ptr::null_mut();
  let mut arraybuffer = ptr::null_mut();
  let mut byte_offset = 0;
  // SAFETY: `value` is an argument of this call; every out-pointer is valid.
  unsafe {
    if sys::napi_is_typedarray(raw, value, &mut is) == sys::Status::napi_ok && is {
      let mut kind = 0;
      let mut length = 0;
      if sys::napi_get_typedarray_info(
        raw,
        value,
        &mut kind,
        &mut length,
        &mut data,
        &mut arraybuffer,
        &mut byte_offset,
      ) != sys::Status::napi_ok
      {
        return None;
      }
      let width = match kind {
        sys::TypedarrayType::int8_array
        | sys::TypedarrayType::uint8_array
        | sys::TypedarrayType::uint8_clamped_array => 1,
        sys::TypedarrayType::int16_array | sys::TypedarrayType::uint16_array => 2,
        sys::TypedarrayType::bigint64_array
        | sys::TypedarrayType::biguint64_array
        | sys::TypedarrayType::float64_array => 8,
        _ => 4,
      };
      return Some(ViewInfo {
        data: data as usize,
        byte_length: length.saturating_mul(width),
        int32: kind == sys::TypedarrayType::int32_array,
      });
    }
    if sys::napi_is_dataview(raw, value, &mut is) == sys::Status::napi_ok && is {
      let mut length = 0;
      if sys::napi_get_dataview_info(
        raw,
        value,
        &mut length,
        &mut data,
        &mut arraybuffer,
        &mut byte_offset,
      ) != sys::Status::napi_ok
      {
        return None;
      }
      return Some(ViewInfo {
        data: data as usize,
        byte_length: length,
        int32: false,
      });
    }
  }
  None
}

/// A word found: its address in the caller's view, and where that view
/// shares its words.
struct Found {
  address: usize,
  place: Place,
}

impl Found {
  /// Where the word is shared with other processes (the view, or its alias).
  fn shared(&self) -> *mut u8 {
    self.place.shared_ptr(self.address)
  }
}

/// Checks that the `width`-byte word at `byte_index` of `view` lies, aligned,
/// in a live mapping of this process, and finds that mapping.
fn resolve(
  env: &Env,
  view: sys::napi_value,
  byte_index: f64,
  width: usize,
  int32_only: bool,
) -> napi::Result<Found> {
  let info = view_info(env, view).filter(|info| info.int32 || !int32_only);
  let Some(info) = info else {
    let expected = if int32_only {
      "an Int32Array"
    } else {
      "a Buffer, TypedArray or DataView"
    };
    return Err(throw_code(
      env,
      Kind::TypeError,
      INVALID_ARG_TYPE,
      &format!("The \"view\" argument must be {expected} over an attached segment"),
    ));
  };
  // The view must start in a mapping; the word, checked below, must lie in
  // it too (an in-heap view's buffer runs on past the segment's end).
  if Mapping::place(info.data, info.byte_length.min(1)).is_none() {
    return Err(not_attached(env));
  }
  let fits = byte_index.is_finite()
    && byte_index >= 0.0
    && byte_index.fract() == 0.0
    && byte_index + width as f64 <= info.byte_length as f64;
  if !fits {
    let (what, limit, shown) = if int32_only {
      (
        "index",
        format!("< {}", info.byte_length / 4),
        byte_index / 4.0,
      )
    } else {
      let limit = info.byte_length.saturating_sub(width);
      ("byteOffset", format!("<= {limit}"), byte_index)
    };
    return Err(throw_code(
      env,
      Kind::RangeError,
      OUT_OF_RANGE,
      &format!(
        "The value of \"{what}\" is out of range. It must be an integer >= 0 and {limit}. Received {shown}"
      ),
    ));
  }
  let address = info.data + byte_index as usize;
  if !address.is_multiple_of(width) {
    return Err(throw_code(
      env,
      Kind::TypeError,
      INVALID_ARG_VALUE,
      &format!(
        "The word at byte {byte_index} of the view is not {width}-byte aligned in the segment"
      ),
    ));
  }
  let place = Mapping::place(address, width).ok_or_else(|| not_attached(env))?;
  let found = Found { address, place };
  // Touch the word before trusting it: a segment another process shrank
  // faults here, and the fault handler marks the mapping.
  // SAFETY: an aligned word in a live mapping (found above, and the caller's
  // view keeps it mapped for this call).
  let _ = unsafe { ptr::read_volatile(found.shared().cast::<u32>()) };
  if let Err(error) = found.place.check_shrunk() {
    return Err(throw_core(env, &error));
  }
  Ok(found)
}

fn not_attached(env: &Env) -> napi::Error {
  throw_code(
    env,
    Kind::Error,
    NOT_ATTACHED,
    "The view does not lie in an attached segment (a plain or shared buffer, or detached)",
  )
}

/// The 4-byte word for a call that ends before JavaScript runs again.
///
/// Why no pin is needed: `view` is an argument of the running call, so its
/// ArrayBuffer stays alive, and its memory is unmapped only when that buffer
/// is detached (by `detach`/`close` on this same thread, which is busy in
/// this call) or collected (impossible while it is an argument); see
/// views.rs. An alias lives exactly as long as its view. The returned
/// reference borrows `env`, which lives only as long as the call.
pub(crate) fn word(env: &Env, view: sys::napi_value, index: f64) -> napi::Result<&AtomicU32> {
  let found = resolve(env, view, index * 4.0, 4, true)?;
  // SAFETY: an aligned word inside a live mapping that stays mapped while
  // `view` is borrowed, as explained above.
  Ok(unsafe { AtomicU32::from_ptr(found.shared().cast()) })
}

/// The 8-byte mutex word for a call that ends before JavaScript runs again
/// (see [`word`]); the view must be read-write.
pub(crate) fn mutex_word(
  env: &Env,
  view: sys::napi_value,
  byte_offset: f64,
) -> napi::Result<&AtomicU64> {
  let found = resolve(env, view, byte_offset, MUTEX_BYTES, false)?;
  if !found.place.is_writable() {
    return Err(read_only(env));
  }
  // SAFETY: as in `word`, for an aligned 8-byte word.
  Ok(unsafe { AtomicU64::from_ptr(found.shared().cast()) })
}

pub(crate) fn read_only(env: &Env) -> napi::Error {
  throw_code(
    env,
    Kind::Error,
    READ_ONLY,
    "A SharedMutex needs a read-write view; this one is read-only",
  )
}

/// The word pinned, for a wait that outlives the call (waiter threads).
pub(crate) fn shared_word(
  env: &Env,
  view: sys::napi_value,
  byte_index: f64,
  width: usize,
  int32_only: bool,
) -> napi::Result<SharedWord> {
  let found = resolve(env, view, byte_index, width, int32_only)?;
  Mapping::containing(found.address, width)
    .and_then(|mapping| SharedWord::new(&mapping, found.address - mapping.as_ptr() as usize, width))
    .ok_or_else(|| throw_code(env, Kind::Error, NOT_ATTACHED, "The view was detached"))
}

/// A timeout in milliseconds: `None` for +Infinity.
pub(crate) fn timeout(env: &Env, ms: f64) -> napi::Result<Option<Duration>> {
  if ms.is_nan() || ms < 0.0 {
    return Err(throw_code(
      env,
      Kind::RangeError,
      OUT_OF_RANGE,
      &format!("The value of \"timeout\" is out of range. It must be >= 0. Received {ms}"),
    ));
  }
  Ok(Duration::try_from_secs_f64(ms / 1000.0).ok())
}
