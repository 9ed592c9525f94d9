//! `SharedMemory`'s calls into the addon (`segmentCalls()`), as plain
//! Node-API callbacks, as in hot.rs: a whole create-to-delete lifecycle is a
//! few microseconds of system calls, and napi-rs's class machinery (a
//! wrapped object per handle, a type-tag check and an unwrap per call, an
//! options object read property by property, a getter call per property)
//! cost as much again. Here a handle is an external of ours, type-tagged,
//! holding one [`NativeSegment`]; `open` takes its options as arguments and
//! hands back everything the facade shows in one go.

use std::cell::RefCell;
use std::ffi::c_void;
use std::ptr;

use named_shm_core::OpenOptions;
use napi::{sys, Env};
use napi_derive::napi;

use crate::channel::bytes;
use crate::errors::{check, throw_code, ErrorCode, Kind};
use crate::hot::{args, boolean, number, object_of_calls, respond, type_error};
use crate::segment::{delete_segment, NativeSegment};

/// Marks the externals that hold a segment handle, so no other external is
/// taken for one.
const TAG: sys::napi_type_tag = sys::napi_type_tag {
  lower: 0x6e61_6d65_642d_7368,
  upper: 0x6d2d_7365_676d_656e,
};

/// What each external owns.
type Cell = RefCell<NativeSegment>;

/// The calls of `SharedMemory`, as an object of plain functions.
#[napi(
  ts_return_type = "{ open(name: string, size: number, create: boolean, exclusive: boolean, readOnly: boolean, reserve: boolean, global: boolean, mode: number, init: ((buffer: ArrayBuffer) => void) | undefined, info: Float64Array): [handle: object, osName: string]; attach(handle: object, readOnly: boolean, inHeap: boolean): ArrayBuffer; detach(handle: object, buffer: ArrayBuffer | SharedArrayBuffer): void; read(handle: object, offset: number, length: number): Buffer; readInto(handle: object, target: Uint8Array, offset: number): number; write(handle: object, source: Uint8Array, offset: number): number; close(handle: object): void; closed(handle: object): boolean; delete(name: string, global: boolean): void }"
)]
pub fn segment_calls(env: Env) -> napi::Result<napi::bindgen_prelude::Object<'static>> {
  object_of_calls(
    &env,
    &[
      (c"open", open_call),
      (c"attach", attach_call),
      (c"detach", detach_call),
      (c"read", read_call),
      (c"readInto", read_into_call),
      (c"write", write_call),
      (c"close", close_call),
      (c"closed", closed_call),
      (c"delete", delete_call),
    ],
  )
}

/// How many numbers `open` writes into its `info` argument: the size, the
/// owner's uid and the mode (NaN where the OS has none), and 1 if this call
/// created the segment, else 0.
const INFO_LEN: usize = 4;

/// The handle an argument holds.
fn handle(env: &Env, value: sys::napi_value) -> napi::Result<&Cell> {
  let mut tagged = false;
  let mut data = ptr::null_mut();
  // SAFETY: `value` is an argument of the running call. Only externals we
  // made carry TAG, and they hold a `Box<Cell>` until their finalizer runs,
  // which cannot happen while the value is an argument of this call.
  unsafe {
    if sys::napi_check_object_type_tag(env.raw(), value, &TAG, &mut tagged) == sys::Status::napi_ok
      && tagged
      && sys::napi_get_value_external(env.raw(), value, &mut data) == sys::Status::napi_ok
      && !data.is_null()
    {
      return Ok(&*data.cast::<Cell>());
    }
  }
  Err(type_error(env, "handle", "a handle from open()"))
}

/// Runs `body` on the segment an argument holds. Nothing a call does runs
/// JavaScript, so a second borrow can only come from a caller that reached
/// the handle some other way: an error, never a panic.
fn with_segment<T>(
  env: &Env,
  value: sys::napi_value,
  body: impl FnOnce(&mut NativeSegment) -> napi::Result<T>,
) -> napi::Result<T> {
  let cell = handle(env, value)?;
  let mut segment = cell.try_borrow_mut().map_err(|_| {
    throw_code(
      env,
      Kind::Error,
      ErrorCode::ERR_SHM_NODE_API,
      "The handle is in use by a call that has not returned",
    )
  })?;
  body(&mut segment)
}

/// A string argument: read in one call when it fits a buffer on the stack
/// (every valid name does), else measured first.
fn string(env: &Env, value: sys::napi_value, what: &str) -> napi::Result<String> {
  const ROOM: usize = 1024;
  let mut stack = [0u8; ROOM];
  let mut written = 0;
  // SAFETY: `value` is an argument of the running call; `stack` has room
  // for ROOM bytes, the NUL included.
  let status = unsafe {
    sys::napi_get_value_string_utf8(
      env.raw(),
      value,
      stack.as_mut_ptr().cast(),
      ROOM,
      &mut written,
    )
  };
  if status != sys::Status::napi_ok {
    return Err(type_error(env, what, "of type string"));
  }
  // V8 writes whole characters only (at most 4 bytes each): with room for
  // one more left over, the string was whole.
  let bytes = if written + 4 < ROOM {
    stack[..written].to_vec()
  } else {
    // It may not have fitted: ask its length, then read it whole.
    let mut length = 0;
    // SAFETY: as above; a null buffer asks for the length in bytes.
    check(unsafe {
      sys::napi_get_value_string_utf8(env.raw(), value, ptr::null_mut(), 0, &mut length)
    })?;
    let mut bytes = vec![0u8; length + 1];
    // SAFETY: `bytes` has room for `length` bytes and the NUL.
    check(unsafe {
      sys::napi_get_value_string_utf8(
        env.raw(),
        value,
        bytes.as_mut_ptr().cast(),
        bytes.len(),
        &mut written,
      )
    })?;
    bytes.truncate(written);
    bytes
  };
  // Node-API writes UTF-8; a lone surrogate comes out as U+FFFD.
  String::from_utf8(bytes).map_err(|_| type_error(env, what, "a string"))
}

/// The `Float64Array` an argument holds, with at least `len` elements.
fn float64s(env: &Env, value: sys::napi_value, len: usize, what: &str) -> napi::Result<*mut f64> {
  let mut is = false;
  let mut kind = 0;
  let mut length = 0;
  let mut data = ptr::null_mut();
  let mut arraybuffer = ptr::null_mut();
  let mut offset = 0;
  // SAFETY: `value` is an argument of the running call; valid out-pointers.
  let ok = unsafe {
    sys::napi_is_typedarray(env.raw(), value, &mut is) == sys::Status::napi_ok
      && is
      && sys::napi_get_typedarray_info(
        env.raw(),
        value,
        &mut kind,
        &mut length,
        &mut data,
        &mut arraybuffer,
        &mut offset,
      ) == sys::Status::napi_ok
  };
  if !ok || kind != sys::TypedarrayType::float64_array || length < len || data.is_null() {
    return Err(type_error(
      env,
      what,
      &format!("a Float64Array of {len} numbers"),
    ));
  }
  Ok(data.cast())
}

/// Returns `value` from a callback, or throws `error` (unless already pending).
///
/// # Safety
/// `raw` is the env of the running callback.
unsafe fn finish(raw: sys::napi_env, result: napi::Result<sys::napi_value>) -> sys::napi_value {
  match result {
    Ok(value) => value,
    // SAFETY: the caller's contract.
    Err(error) => unsafe { respond(raw, |_| Err(error)) },
  }
}

/// A JavaScript number.
fn number_value(env: &Env, value: f64) -> napi::Result<sys::napi_value> {
  let mut result = ptr::null_mut();
  // SAFETY: live env; valid out-pointer.
  check(unsafe { sys::napi_create_double(env.raw(), value, &mut result) })?;
  Ok(result)
}

unsafe extern "C" fn finalize(raw: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
  // SAFETY: `data` is the `Box<Cell>` leaked in `open_call`, finalized once.
  let cell = unsafe { Box::from_raw(data.cast::<Cell>()) };
  cell.into_inner().finalize(&Env::from_raw(raw));
}

/// `open(name, size, create, exclusive, readOnly, reserve, global, mode,
/// init, info)`: `[handle, osName]`, and the numbers of [`INFO_LEN`] in `info`.
unsafe extern "C" fn open_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  let env = Env::from_raw(raw);
  let result = (|| -> napi::Result<sys::napi_value> {
    let [name, size, create, exclusive, read_only, reserve, global, mode, init, out_value] =
      args::<10>(&env, info)?;
    let name = string(&env, name, "name")?;
    let size = number(&env, size, "size")?;
    let options = OpenOptions {
      create: boolean(&env, create, "create")?,
      exclusive: boolean(&env, exclusive, "exclusive")?,
      read_only: boolean(&env, read_only, "readOnly")?,
      reserve: boolean(&env, reserve, "reserve")?,
      mode: number(&env, mode, "mode")? as u32,
    };
    let global = boolean(&env, global, "global")?;
    // Checked before anything is made, so a wrong `info` publishes nothing.
    float64s(&env, out_value, INFO_LEN, "info")?;
    let mut kind = 0;
    // SAFETY: `init` is an argument of this call.
    check(unsafe { sys::napi_typeof(raw, init, &mut kind) })?;
    let init = match kind {
      sys::ValueType::napi_undefined => None,
      sys::ValueType::napi_function => Some(init),
      _ => return Err(type_error(&env, "init", "of type function")),
    };
    let segment = NativeSegment::open(&env, &name, size, &options, global, init)?;
    // `init` ran JavaScript, which could have detached `info`'s buffer
    // (transfer()): look at it again rather than write where it was.
    let out = float64s(&env, out_value, INFO_LEN, "info")?;
    let Some(opened) = segment.segment() else {
      return Err(type_error(&env, "handle", "an open segment"));
    };
    let ownership = opened.ownership();
    let numbers = [
      opened.size() as f64,
      ownership.map_or(f64::NAN, |o| f64::from(o.uid)),
      ownership.map_or(f64::NAN, |o| f64::from(o.mode)),
      if opened.created() { 1.0 } else { 0.0 },
    ];
    let os_name = opened.name().os_name().to_owned();
    // SAFETY: `out` holds at least INFO_LEN numbers (checked just above,
    // after the last JavaScript this call runs).
    unsafe { ptr::copy_nonoverlapping(numbers.as_ptr(), out, INFO_LEN) };
    let data = Box::into_raw(Box::new(RefCell::new(segment))).cast::<c_void>();
    let mut external = ptr::null_mut();
    // SAFETY: live env; `data` is ours until `finalize` takes it back.
    let status = unsafe {
      sys::napi_create_external(raw, data, Some(finalize), ptr::null_mut(), &mut external)
    };
    if status != sys::Status::napi_ok {
      // SAFETY: not handed to Node: still ours to free.
      drop(unsafe { Box::from_raw(data.cast::<Cell>()) });
      check(status)?;
    }
    let mut pair = ptr::null_mut();
    let mut os_name_value = ptr::null_mut();
    // SAFETY: `external` was just created in this env; valid out-pointers.
    unsafe {
      check(sys::napi_type_tag_object(raw, external, &TAG))?;
      check(sys::napi_create_string_utf8(
        raw,
        os_name.as_ptr().cast(),
        os_name.len() as isize,
        &mut os_name_value,
      ))?;
      check(sys::napi_create_array_with_length(raw, 2, &mut pair))?;
      check(sys::napi_set_element(raw, pair, 0, external))?;
      check(sys::napi_set_element(raw, pair, 1, os_name_value))?;
    }
    Ok(pair)
  })();
  // SAFETY: the env of this call.
  unsafe { finish(raw, result) }
}

/// `attach(handle, readOnly, inHeap)`: a new view's buffer.
unsafe extern "C" fn attach_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  let env = Env::from_raw(raw);
  let result = (|| {
    let [value, read_only, in_heap] = args::<3>(&env, info)?;
    let read_only = boolean(&env, read_only, "readOnly")?;
    let in_heap = boolean(&env, in_heap, "inHeap")?;
    with_segment(&env, value, |segment| {
      segment.attach(&env, read_only, in_heap)
    })
  })();
  // SAFETY: the env of this call.
  unsafe { finish(raw, result) }
}

/// `detach(handle, buffer)`: unmaps the view whose buffer is `buffer`.
unsafe extern "C" fn detach_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  // SAFETY: called by Node-API with the env of this call.
  unsafe {
    respond(raw, |env| {
      let [value, buffer] = args::<2>(env, info)?;
      with_segment(env, value, |segment| segment.detach(env, buffer))?;
      Ok(None)
    })
  }
}

/// `read(handle, offset, length)`: a new Buffer of the bytes.
unsafe extern "C" fn read_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  let env = Env::from_raw(raw);
  let result = (|| {
    let [value, offset, length] = args::<3>(&env, info)?;
    let offset = number(&env, offset, "offset")?;
    let length = number(&env, length, "length")?;
    with_segment(&env, value, |segment| segment.read(&env, offset, length))
  })();
  // SAFETY: the env of this call.
  unsafe { finish(raw, result) }
}

/// `readInto(handle, target, offset)`: how many bytes it copied.
unsafe extern "C" fn read_into_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  let env = Env::from_raw(raw);
  let result = (|| {
    let [value, target, offset] = args::<3>(&env, info)?;
    let (target, len) = bytes(&env, target, "target")?;
    let offset = number(&env, offset, "offset")?;
    // SAFETY: the target array is an argument, alive for this call, and
    // writable memory of `len` bytes (or a dangling pointer with `len` 0).
    let copied = with_segment(&env, value, |segment| unsafe {
      segment.read_into(&env, target.cast_mut(), len, offset)
    })?;
    number_value(&env, copied)
  })();
  // SAFETY: the env of this call.
  unsafe { finish(raw, result) }
}

/// `write(handle, source, offset)`: how many bytes it copied.
unsafe extern "C" fn write_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  let env = Env::from_raw(raw);
  let result = (|| {
    let [value, source, offset] = args::<3>(&env, info)?;
    let (source, len) = bytes(&env, source, "source")?;
    let offset = number(&env, offset, "offset")?;
    // SAFETY: the source array is an argument, alive for this call.
    let copied = with_segment(&env, value, |segment| unsafe {
      segment.write(&env, source, len, offset)
    })?;
    number_value(&env, copied)
  })();
  // SAFETY: the env of this call.
  unsafe { finish(raw, result) }
}

/// `close(handle)`: detaches every view and releases the OS handle.
unsafe extern "C" fn close_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  // SAFETY: called by Node-API with the env of this call.
  unsafe {
    respond(raw, |env| {
      let [value] = args::<1>(env, info)?;
      with_segment(env, value, |segment| {
        segment.close(env);
        Ok(None)
      })
    })
  }
}

/// `closed(handle)`: whether `close` has run.
unsafe extern "C" fn closed_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  let env = Env::from_raw(raw);
  let result = (|| {
    let [value] = args::<1>(&env, info)?;
    let closed = with_segment(&env, value, |segment| Ok(segment.segment().is_none()))?;
    let mut result = ptr::null_mut();
    // SAFETY: live env; valid out-pointer.
    check(unsafe { sys::napi_get_boolean(raw, closed, &mut result) })?;
    Ok(result)
  })();
  // SAFETY: the env of this call.
  unsafe { finish(raw, result) }
}

/// `delete(name, global)`: removes the name (`PR_DeleteSharedMemory`).
unsafe extern "C" fn delete_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  // SAFETY: called by Node-API with the env of this call.
  unsafe {
    respond(raw, |env| {
      let [name, global] = args::<2>(env, info)?;
      let name = string(env, name, "name")?;
      let global = boolean(env, global, "global")?;
      delete_segment(env, &name, global)?;
      Ok(None)
    })
  }
}
