//! Core errors become JavaScript errors shaped like Node's own: `code`,
//! and for OS errors `errno` (negative, as on `fs` errors) and `syscall`.

use std::ptr;

use named_shm_core as core;
use napi::{sys, Env, Error, Status};

pub use crate::codes::ErrorCode;

/// Library codes the binding raises itself (all in [`ErrorCode`]).
pub const CLOSED: ErrorCode = ErrorCode::ERR_SHM_CLOSED;
pub const NOT_ATTACHED: ErrorCode = ErrorCode::ERR_SHM_NOT_ATTACHED;
pub const EXTERNAL_BUFFERS: ErrorCode = ErrorCode::ERR_SHM_EXTERNAL_BUFFERS;
pub const IN_HEAP_UNSUPPORTED: ErrorCode = ErrorCode::ERR_SHM_IN_HEAP_UNSUPPORTED;
pub const OUT_OF_RANGE: ErrorCode = ErrorCode::ERR_OUT_OF_RANGE;
pub const INIT_DETACHED: ErrorCode = ErrorCode::ERR_SHM_INIT_DETACHED;
pub const INVALID_ARG_TYPE: ErrorCode = ErrorCode::ERR_INVALID_ARG_TYPE;
pub const INVALID_ARG_VALUE: ErrorCode = ErrorCode::ERR_INVALID_ARG_VALUE;
pub const READ_ONLY: ErrorCode = ErrorCode::ERR_SHM_READ_ONLY;

/// Which JavaScript constructor an error uses.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
  Error,
  TypeError,
  RangeError,
}

/// Throws a JavaScript error for a core error and returns the marker that
/// tells napi-rs an exception is already pending.
pub fn throw_core(env: &Env, error: &core::Error) -> Error {
  let kind = match error {
    core::Error::InvalidName { .. } | core::Error::InvalidArgument(_) => Kind::TypeError,
    _ => Kind::Error,
  };
  let errno = error.errno().map(|errno| -errno);
  throw(
    env,
    kind,
    error.code(),
    &error.to_string(),
    errno,
    error.syscall(),
  )
}

/// Throws `code: message` and returns the pending-exception marker.
pub fn throw_code(env: &Env, kind: Kind, code: ErrorCode, message: &str) -> Error {
  throw(env, kind, code.as_str(), message, None, None)
}

fn throw(
  env: &Env,
  kind: Kind,
  code: &str,
  message: &str,
  errno: Option<i32>,
  syscall: Option<&str>,
) -> Error {
  match build(env, kind, code, message, errno, syscall) {
    // SAFETY: `env` is the live env of this call; `value` is an error object
    // created in it.
    Ok(value) if unsafe { sys::napi_throw(env.raw(), value) } == sys::Status::napi_ok => {
      Error::from_status(Status::PendingException)
    }
    // Could not build or throw our own: let napi-rs throw a plain one.
    _ => Error::new(Status::GenericFailure, format!("{code}: {message}")),
  }
}

fn build(
  env: &Env,
  kind: Kind,
  code: &str,
  message: &str,
  errno: Option<i32>,
  syscall: Option<&str>,
) -> napi::Result<sys::napi_value> {
  let raw = env.raw();
  let code_value = string(env, code)?;
  let message_value = string(env, message)?;
  let mut error = ptr::null_mut();
  let create = match kind {
    Kind::Error => sys::napi_create_error,
    Kind::TypeError => sys::napi_create_type_error,
    Kind::RangeError => sys::napi_create_range_error,
  };
  // SAFETY: live env, values created in it, `error` is a valid out-pointer.
  check(unsafe { create(raw, code_value, message_value, &mut error) })?;
  if let Some(errno) = errno {
    let mut value = ptr::null_mut();
    // SAFETY: as above.
    check(unsafe { sys::napi_create_int32(raw, errno, &mut value) })?;
    set(env, error, c"errno", value)?;
  }
  if let Some(syscall) = syscall {
    set(env, error, c"syscall", string(env, syscall)?)?;
  }
  Ok(error)
}

fn string(env: &Env, text: &str) -> napi::Result<sys::napi_value> {
  let mut value = ptr::null_mut();
  // SAFETY: `text` is valid UTF-8 of the given length; live env.
  check(unsafe {
    sys::napi_create_string_utf8(
      env.raw(),
      text.as_ptr().cast(),
      text.len() as isize,
      &mut value,
    )
  })?;
  Ok(value)
}

fn set(
  env: &Env,
  object: sys::napi_value,
  key: &std::ffi::CStr,
  value: sys::napi_value,
) -> napi::Result<()> {
  // SAFETY: `object` and `value` live in `env`; `key` is NUL-terminated.
  check(unsafe { sys::napi_set_named_property(env.raw(), object, key.as_ptr(), value) })
}

pub fn check(status: sys::napi_status) -> napi::Result<()> {
  if status == sys::Status::napi_ok {
    Ok(())
  } else {
    Err(Error::new(Status::from(status), "Node-API call failed"))
  }
}
