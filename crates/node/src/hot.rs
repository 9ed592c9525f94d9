//! The calls a ping-pong makes on every round trip (`wait`, `notify`,
//! `lock`, `tryLock`, `unlock`) as plain Node-API callbacks. napi-rs's
//! generated wrappers open a borrow scope per call that costs about as much
//! as the work itself (~150 ns of ~300); these read their few arguments
//! directly. `syncCalls()` hands them to the facade as one object.

use std::ffi::CStr;
use std::ptr;

use named_shm_core::{notify, wait, LockOutcome, SharedMutex, WaitOutcome};
use napi::{sys, Env};
use napi_derive::napi;

use crate::errors::{check, throw_code, throw_core, ErrorCode, Kind};
use crate::outcome::SyncOutcome;
use crate::words::{mutex_word, timeout, word};

pub(crate) fn lock_code(outcome: LockOutcome) -> u32 {
  match outcome {
    LockOutcome::Ok => SyncOutcome::Ok,
    LockOutcome::OwnerDied => SyncOutcome::OwnerDied,
    LockOutcome::TimedOut => SyncOutcome::TimedOut,
    LockOutcome::Busy => SyncOutcome::Busy,
  }
  .code()
}

/// The hot synchronous calls, as an object of plain functions.
#[napi(
  ts_return_type = "{ wait(view: Int32Array, index: number, expected: number, timeoutMs: number, spin: boolean): number; notify(view: Int32Array, index: number, count: number): number; lock(view: ArrayBufferView, byteOffset: number, timeoutMs: number, spin: boolean): number; tryLock(view: ArrayBufferView, byteOffset: number): number; unlock(view: ArrayBufferView, byteOffset: number): void }"
)]
pub fn sync_calls(env: Env) -> napi::Result<napi::bindgen_prelude::Object<'static>> {
  object_of_calls(
    &env,
    &[
      (c"wait", wait_call),
      (c"notify", notify_call),
      (c"lock", lock_call),
      (c"tryLock", try_lock_call),
      (c"unlock", unlock_call),
    ],
  )
}

/// An object whose properties are `calls`, each a plain Node-API function
/// (no napi-rs argument conversion on the way in: these are the hot paths).
pub(crate) fn object_of_calls(
  env: &Env,
  calls: &[(&CStr, Callback)],
) -> napi::Result<napi::bindgen_prelude::Object<'static>> {
  let raw = env.raw();
  let mut object = ptr::null_mut();
  // SAFETY: live env of this call; `object` is a valid out-pointer.
  check(unsafe { sys::napi_create_object(raw, &mut object) })?;
  for &(name, call) in calls {
    let mut function = ptr::null_mut();
    // SAFETY: `name` is NUL-terminated; `call` has the napi_callback ABI.
    check(unsafe {
      sys::napi_create_function(
        raw,
        name.as_ptr(),
        name.to_bytes().len() as isize,
        Some(call),
        ptr::null_mut(),
        &mut function,
      )
    })?;
    // SAFETY: both values live in this env.
    check(unsafe { sys::napi_set_named_property(raw, object, name.as_ptr(), function) })?;
  }
  Ok(napi::bindgen_prelude::Object::from_raw(raw, object))
}

pub(crate) type Callback =
  unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;

/// The call's arguments, `undefined` past those given.
pub(crate) fn args<const N: usize>(
  env: &Env,
  info: sys::napi_callback_info,
) -> napi::Result<[sys::napi_value; N]> {
  let mut argv = [ptr::null_mut(); N];
  let mut argc = N;
  // SAFETY: `info` belongs to the running callback; `argv` has room for `argc`.
  check(unsafe {
    sys::napi_get_cb_info(
      env.raw(),
      info,
      &mut argc,
      argv.as_mut_ptr(),
      ptr::null_mut(),
      ptr::null_mut(),
    )
  })?;
  Ok(argv)
}

pub(crate) fn type_error(env: &Env, what: &str, expected: &str) -> napi::Error {
  throw_code(
    env,
    Kind::TypeError,
    ErrorCode::ERR_INVALID_ARG_TYPE,
    &format!("The \"{what}\" argument must be {expected}"),
  )
}

/// The kind, data pointer and element count of a typed-array argument, or
/// `None` when `value` is no typed array.
pub(crate) fn typed_array(
  env: &Env,
  value: sys::napi_value,
) -> Option<(sys::napi_typedarray_type, *mut std::ffi::c_void, usize)> {
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
  ok.then_some((kind, data, length))
}

pub(crate) fn number(env: &Env, value: sys::napi_value, what: &str) -> napi::Result<f64> {
  let mut number = 0.0;
  // SAFETY: `value` is an argument of the running call.
  match unsafe { sys::napi_get_value_double(env.raw(), value, &mut number) } {
    sys::Status::napi_ok => Ok(number),
    _ => Err(type_error(env, what, "of type number")),
  }
}

fn int32(env: &Env, value: sys::napi_value, what: &str) -> napi::Result<i32> {
  let mut number = 0;
  // SAFETY: as above. Node-API converts like ToInt32.
  match unsafe { sys::napi_get_value_int32(env.raw(), value, &mut number) } {
    sys::Status::napi_ok => Ok(number),
    _ => Err(type_error(env, what, "of type number")),
  }
}

pub(crate) fn boolean(env: &Env, value: sys::napi_value, what: &str) -> napi::Result<bool> {
  let mut flag = false;
  // SAFETY: as above.
  match unsafe { sys::napi_get_value_bool(env.raw(), value, &mut flag) } {
    sys::Status::napi_ok => Ok(flag),
    _ => Err(type_error(env, what, "of type boolean")),
  }
}

/// Runs `body` and turns its result into the callback's return value; an
/// error has already been thrown, so return nothing.
///
/// # Safety
/// `raw` is the env of the running callback.
pub(crate) unsafe fn respond(
  raw: sys::napi_env,
  body: impl FnOnce(&Env) -> napi::Result<Option<u32>>,
) -> sys::napi_value {
  let env = Env::from_raw(raw);
  let mut value = ptr::null_mut();
  match body(&env) {
    // SAFETY: live env; `value` is a valid out-pointer.
    Ok(Some(code)) => unsafe {
      sys::napi_create_uint32(raw, code, &mut value);
    },
    Ok(None) => {}
    // Our own errors are pending exceptions already; throw anything else.
    Err(error) if error.status != napi::Status::PendingException => {
      let message = format!("{}: {}", error.status, error.reason);
      throw_code(&env, Kind::Error, ErrorCode::ERR_SHM_NODE_API, &message);
    }
    Err(_) => {}
  }
  value
}

/// `wait(view, index, expected, timeoutMs, spin)`: `Atomics.wait` across processes.
unsafe extern "C" fn wait_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  // SAFETY: called by Node-API with the env of this call.
  unsafe {
    respond(raw, |env| {
      let [view, index, expected, timeout_ms, spin] = args::<5>(env, info)?;
      let index = number(env, index, "index")?;
      let expected = int32(env, expected, "expected")? as u32;
      let timeout_ms = timeout(env, number(env, timeout_ms, "timeout")?)?;
      let spin = boolean(env, spin, "spin")?;
      let word = word(env, view, index)?;
      let outcome = wait(word, expected, timeout_ms, spin).map_err(|e| throw_core(env, &e))?;
      let outcome = match outcome {
        WaitOutcome::Ok => SyncOutcome::Ok,
        WaitOutcome::NotEqual => SyncOutcome::NotEqual,
        WaitOutcome::TimedOut => SyncOutcome::TimedOut,
      };
      Ok(Some(outcome.code()))
    })
  }
}

/// `notify(view, index, count)`: wakes up to `count` waiters (≥ 2^32 − 1 or
/// +Infinity: all) in every process; returns how many the OS reports.
unsafe extern "C" fn notify_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  // SAFETY: called by Node-API with the env of this call.
  unsafe {
    respond(raw, |env| {
      let [view, index, count] = args::<3>(env, info)?;
      let index = number(env, index, "index")?;
      let count = number(env, count, "count")?;
      let count = if count.is_nan() || count < 0.0 {
        0
      } else if count >= f64::from(u32::MAX) {
        u32::MAX
      } else {
        count as u32
      };
      let woken = notify(word(env, view, index)?, count).map_err(|e| throw_core(env, &e))?;
      Ok(Some(u32::try_from(woken).unwrap_or(u32::MAX)))
    })
  }
}

/// `lock(view, byteOffset, timeoutMs, spin)`: locks the `SharedMutex`.
unsafe extern "C" fn lock_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  // SAFETY: called by Node-API with the env of this call.
  unsafe {
    respond(raw, |env| {
      let [view, byte_offset, timeout_ms, spin] = args::<4>(env, info)?;
      let byte_offset = number(env, byte_offset, "byteOffset")?;
      let timeout_ms = timeout(env, number(env, timeout_ms, "timeout")?)?;
      let spin = boolean(env, spin, "spin")?;
      let mutex = SharedMutex::new(mutex_word(env, view, byte_offset)?);
      let outcome = mutex
        .lock(timeout_ms, spin)
        .map_err(|e| throw_core(env, &e))?;
      Ok(Some(lock_code(outcome)))
    })
  }
}

/// The mutex named by the arguments `(view, byteOffset)` of this call.
fn mutex_at(env: &Env, info: sys::napi_callback_info) -> napi::Result<SharedMutex<'_>> {
  let [view, byte_offset] = args::<2>(env, info)?;
  let byte_offset = number(env, byte_offset, "byteOffset")?;
  Ok(SharedMutex::new(mutex_word(env, view, byte_offset)?))
}

/// `tryLock(view, byteOffset)`: takes the mutex if free or its owner died.
unsafe extern "C" fn try_lock_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  // SAFETY: called by Node-API with the env of this call.
  unsafe {
    respond(raw, |env| {
      let mutex = mutex_at(env, info)?;
      Ok(Some(lock_code(mutex.try_lock())))
    })
  }
}

/// `unlock(view, byteOffset)`: `ERR_SHM_NOT_OWNER` unless this thread holds it.
unsafe extern "C" fn unlock_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  // SAFETY: called by Node-API with the env of this call.
  unsafe {
    respond(raw, |env| {
      mutex_at(env, info)?
        .unlock()
        .map_err(|e| throw_core(env, &e))?;
      Ok(None)
    })
  }
}
