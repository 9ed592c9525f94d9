//! `SharedMemory`'s calls into the addon (`segmentCalls()`), as plain
//! Node-API callbacks, as in hot.rs: a whole create-to-delete lifecycle is a
//! few microseconds of system calls, and napi-rs's class machinery (a
//! wrapped object per handle, a type-tag check and an unwrap per call, an
//! options object read property by property, a getter call per property)
//! cost as much again. Here a handle is a number, the id of one
//! [`NativeSegment`] in this thread's table (handles.rs), and the object
//! that owns it (the facade's `SharedMemory`) carries the finalizer; `open`
//! takes its options as arguments and hands back everything the facade
//! shows in one go.

use std::borrow::Cow;
use std::ffi::c_void;
use std::ptr;

use named_shm_core::OpenOptions;
use napi::{sys, Env};
use napi_derive::napi;

use crate::channel::bytes;
use crate::errors::{check, throw_code, ErrorCode, Kind};
use crate::handles::{self, Cell, Id};
use crate::hot::{args, boolean, number, object_of_calls, respond, type_error, typed_array};
use crate::segment::{closed, delete_segment, NativeSegment};

/// The calls of `SharedMemory`, as an object of plain functions.
#[napi(
  ts_return_type = "{ open(owner: object, name: string, size: number, create: boolean, exclusive: boolean, readOnly: boolean, reserve: boolean, global: boolean, mode: number, init: ((buffer: ArrayBuffer) => void) | undefined, info: Float64Array): number; attach(handle: number, readOnly: boolean, request: ViewRequest): Buffer | ArrayBuffer | SharedArrayBuffer; detach(handle: number, buffer: ArrayBuffer | SharedArrayBuffer): void; read(handle: number, offset: number, length: number): Buffer; readInto(handle: number, target: Uint8Array, offset: number): number; write(handle: number, source: Uint8Array, offset: number): number; close(handle: number): void; closed(handle: number): boolean; delete(name: string, global: boolean): void }"
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

/// The id a handle argument holds, open or closed.
fn handle_id(env: &Env, value: sys::napi_value) -> napi::Result<Id> {
  let mut number = 0.0;
  // SAFETY: `value` is an argument of the running call; valid out-pointer.
  let status = unsafe { sys::napi_get_value_double(env.raw(), value, &mut number) };
  match handles::id_of(number) {
    Some(id) if status == sys::Status::napi_ok => Ok(id),
    _ => Err(type_error(env, "handle", "a handle from open()")),
  }
}

/// The state of the open handle an argument holds; `None` once closed.
fn handle<'call>(env: &Env, value: sys::napi_value) -> napi::Result<Option<&'call Cell>> {
  let id = handle_id(env, value)?;
  // SAFETY: handles::get's contract: nothing removes the entry while this
  // call, which received the handle, runs; the reference ends with it.
  Ok(handles::get(id).map(|cell| unsafe { &*cell.as_ptr() }))
}

/// Runs `body` on the segment an argument holds; `ERR_SHM_CLOSED` once the
/// handle is closed. Nothing a call does runs JavaScript, so a second
/// borrow can only come from a caller that reached the handle some other
/// way: an error, never a panic.
fn with_segment<T>(
  env: &Env,
  value: sys::napi_value,
  body: impl FnOnce(&mut NativeSegment) -> napi::Result<T>,
) -> napi::Result<T> {
  let cell = handle(env, value)?.ok_or_else(|| closed(env))?;
  let mut segment = borrow(env, cell)?;
  body(&mut segment)
}

fn borrow<'a>(env: &Env, cell: &'a Cell) -> napi::Result<std::cell::RefMut<'a, NativeSegment>> {
  cell.try_borrow_mut().map_err(|_| {
    throw_code(
      env,
      Kind::Error,
      ErrorCode::ERR_SHM_NODE_API,
      "The handle is in use by a call that has not returned",
    )
  })
}

/// Room for a string argument on the stack: every valid name fits.
const STRING_ROOM: usize = 1024;

/// A string argument: read in one call into `stack` when it fits (every
/// valid name does, and is then not copied again), else measured first.
fn string<'stack>(
  env: &Env,
  value: sys::napi_value,
  what: &str,
  stack: &'stack mut [u8; STRING_ROOM],
) -> napi::Result<Cow<'stack, str>> {
  let mut written = 0;
  // SAFETY: `value` is an argument of the running call; `stack` has room
  // for STRING_ROOM bytes, the NUL included.
  let status = unsafe {
    sys::napi_get_value_string_utf8(
      env.raw(),
      value,
      stack.as_mut_ptr().cast(),
      STRING_ROOM,
      &mut written,
    )
  };
  if status != sys::Status::napi_ok {
    return Err(type_error(env, what, "of type string"));
  }
  // Node-API writes UTF-8; a lone surrogate comes out as U+FFFD.
  let not_utf8 = |_| type_error(env, what, "a string");
  // V8 writes whole characters only (at most 4 bytes each): with room for
  // one more left over, the string was whole.
  if written + 4 < STRING_ROOM {
    return std::str::from_utf8(&stack[..written])
      .map(Cow::Borrowed)
      .map_err(not_utf8);
  }
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
  String::from_utf8(bytes)
    .map(Cow::Owned)
    .map_err(|_| type_error(env, what, "a string"))
}

/// The `Float64Array` an argument holds, with at least `len` elements.
fn float64s(env: &Env, value: sys::napi_value, len: usize, what: &str) -> napi::Result<*mut f64> {
  match typed_array(env, value) {
    Some((sys::TypedarrayType::float64_array, data, length))
      if length >= len && !data.is_null() =>
    {
      Ok(data.cast())
    }
    _ => Err(type_error(
      env,
      what,
      &format!("a Float64Array of {len} numbers"),
    )),
  }
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

/// A handle dropped open: close what it held. `data` is its id.
unsafe extern "C" fn finalize(raw: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
  let env = Env::from_raw(raw);
  // An id that `close` already removed finds nothing here.
  if let Some(open) = handles::remove(data as Id) {
    // SAFETY: the reference napi_add_finalizer made for this finalizer,
    // deleted once, by whoever removed the entry: here.
    unsafe { sys::napi_delete_reference(raw, open.finalizer) };
    open.segment.into_inner().finalize(&env);
  }
}

/// `open(owner, name, size, create, exclusive, readOnly, reserve, global,
/// mode, init, info)`: the handle, and the numbers of [`INFO_LEN`] in
/// `info`. The handle is closed when `owner` is collected, unless `close`
/// came first. The OS name is the facade's to ask for (`osNameOf`, a pure
/// function of the name): handing back a pair cost an array and two element
/// stores per open.
unsafe extern "C" fn open_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  let env = Env::from_raw(raw);
  let result = (|| -> napi::Result<sys::napi_value> {
    let [owner, name, size, create, exclusive, read_only, reserve, global, mode, init, out_value] =
      args::<11>(&env, info)?;
    let mut kind = 0;
    // SAFETY: `owner` is an argument of this call.
    check(unsafe { sys::napi_typeof(raw, owner, &mut kind) })?;
    if kind != sys::ValueType::napi_object {
      return Err(type_error(&env, "owner", "an object"));
    }
    let mut room = [0u8; STRING_ROOM];
    let name = string(&env, name, "name", &mut room)?;
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
    let out = float64s(&env, out_value, INFO_LEN, "info")?;
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
    let out = match init {
      Some(_) => float64s(&env, out_value, INFO_LEN, "info")?,
      None => out,
    };
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
    // SAFETY: `out` holds at least INFO_LEN numbers (checked after the last
    // JavaScript this call runs: before the segment was made, or after `init`).
    unsafe { ptr::copy_nonoverlapping(numbers.as_ptr(), out, INFO_LEN) };
    let id = handles::insert(segment).map_err(|segment| {
      segment.into_inner().finalize(&env);
      throw_code(
        &env,
        Kind::Error,
        ErrorCode::ERR_SHM_NODE_API,
        "Too many handles open in this thread",
      )
    })?;
    watch(&env, owner, id).inspect_err(|_| {
      if let Some(open) = handles::remove(id) {
        if !open.finalizer.is_null() {
          // SAFETY: made for this entry, not yet deleted.
          unsafe { sys::napi_delete_reference(raw, open.finalizer) };
        }
        open.segment.into_inner().finalize(&env);
      }
    })
  })();
  // SAFETY: the env of this call.
  unsafe { finish(raw, result) }
}

/// Hands the open handle `id` to JavaScript: a finalizer on `owner`
/// closes it should `owner` be collected first; the id, as a number.
fn watch(env: &Env, owner: sys::napi_value, id: Id) -> napi::Result<sys::napi_value> {
  let raw = env.raw();
  let mut finalizer = ptr::null_mut();
  let mut handle = ptr::null_mut();
  // SAFETY: live env; `owner` is an object argument of this call; valid
  // out-pointers. The finalizer's data is the id, not memory.
  unsafe {
    check(sys::napi_add_finalizer(
      raw,
      owner,
      id as *mut c_void,
      Some(finalize),
      ptr::null_mut(),
      &mut finalizer,
    ))?;
    handles::set_finalizer(id, finalizer);
    check(sys::napi_create_double(raw, id as f64, &mut handle))?;
  }
  Ok(handle)
}

/// What kind of view `attach(handle, readOnly, request)` is asked for.
#[napi]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewRequest {
  /// `attach()`: the runtime's zero-copy view (see `SharedMemory.zeroCopy`).
  Auto = 0,
  /// `attach({ inHeap: true })`: an in-heap view.
  InHeap = 1,
  /// The facade's own view for `read`, `readInto` and `write`: an external
  /// `ArrayBuffer`, never shared (V8's copies of a few KiB into and out of
  /// a `SharedArrayBuffer` take two to four times as long) nor handed to users.
  Copies = 2,
}

impl ViewRequest {
  fn of(env: &Env, value: sys::napi_value) -> napi::Result<ViewRequest> {
    match number(env, value, "request")? {
      0.0 => Ok(ViewRequest::Auto),
      1.0 => Ok(ViewRequest::InHeap),
      2.0 => Ok(ViewRequest::Copies),
      _ => Err(type_error(env, "request", "a ViewRequest")),
    }
  }
}

/// `attach(handle, readOnly, request)`: a new view: a Buffer over an
/// external `ArrayBuffer`, or the `SharedArrayBuffer` or `ArrayBuffer` itself.
unsafe extern "C" fn attach_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  let env = Env::from_raw(raw);
  let result = (|| {
    let [value, read_only, request] = args::<3>(&env, info)?;
    let read_only = boolean(&env, read_only, "readOnly")?;
    let request = ViewRequest::of(&env, request)?;
    with_segment(&env, value, |segment| {
      segment.attach(&env, read_only, request)
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

/// `close(handle)`: detaches every view, releases the OS handle, and drops
/// the handle's finalizer with its state. A closed handle: nothing to do.
unsafe extern "C" fn close_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  // SAFETY: called by Node-API with the env of this call.
  unsafe {
    respond(raw, |env| {
      let [value] = args::<1>(env, info)?;
      let id = handle_id(env, value)?;
      let Some(cell) = handles::get(id) else {
        return Ok(None);
      };
      // SAFETY: as in `handle`; the reference is not used past `remove`.
      drop(borrow(env, &*cell.as_ptr())?);
      if let Some(open) = handles::remove(id) {
        // Deleted before the handle is collected, so its finalizer never runs.
        sys::napi_delete_reference(raw, open.finalizer);
        open.segment.into_inner().close(env);
      }
      Ok(None)
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
    let closed = handle(&env, value)?.is_none();
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
      let mut room = [0u8; STRING_ROOM];
      let name = string(env, name, "name", &mut room)?;
      let global = boolean(env, global, "global")?;
      delete_segment(env, &name, global)?;
      Ok(None)
    })
  }
}
