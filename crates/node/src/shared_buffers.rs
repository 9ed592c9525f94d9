//! External `SharedArrayBuffer`s (`node_api_create_external_sharedarraybuffer`,
//! Node 22.22+ and 24.16+; looked up at run time, absent elsewhere).
//!
//! Why views use them where they can: V8 counts an external `ArrayBuffer` at
//! its whole length as external memory and starts a full garbage collection
//! whenever that count grows by more than 64 MiB, so every attach of a large
//! segment cost one. A shared backing store is not counted at all (it may
//! belong to several isolates), so attach costs the same at any size.
//!
//! The price: a `SharedArrayBuffer` cannot be detached. On detach the binding
//! puts zero pages over the memory instead (`Mapping::zero_in_place`), and
//! unmaps when the garbage collector frees the buffer. Unix only: Windows
//! cannot swap a view for zero pages in place.

use std::ffi::c_void;
use std::sync::OnceLock;

use napi::sys;

/// `node_api_noenv_finalize`: a shared buffer may outlive the env that made
/// it, so its finalizer gets no env and may run on any thread.
pub type Finalize = unsafe extern "C" fn(data: *mut c_void, hint: *mut c_void);

type Create = unsafe extern "C" fn(
  env: sys::napi_env,
  data: *mut c_void,
  length: usize,
  finalize: Option<Finalize>,
  hint: *mut c_void,
  result: *mut sys::napi_value,
) -> sys::napi_status;

/// The runtime's `node_api_create_external_sharedarraybuffer`, if it has one.
fn create_function() -> Option<Create> {
  static CREATE: OnceLock<Option<Create>> = OnceLock::new();
  *CREATE.get_or_init(|| {
    #[cfg(unix)]
    {
      let host = libloading::os::unix::Library::this();
      // SAFETY: the symbol, where present, has the signature Node-API
      // documents for it, which `Create` spells out.
      let symbol = unsafe { host.get::<Create>(b"node_api_create_external_sharedarraybuffer\0") };
      // The symbol lives in the executable, loaded for the whole process.
      symbol.ok().map(|symbol| *symbol)
    }
    #[cfg(not(unix))]
    {
      None
    }
  })
}

/// Whether this runtime makes external `SharedArrayBuffer`s.
#[cfg(unix)]
pub fn available() -> bool {
  create_function().is_some()
}

/// Creates a `SharedArrayBuffer` over `[data, data + length)`; `None` where
/// the runtime cannot.
///
/// # Safety
/// `env` is the env of the running call; the memory stays valid until
/// `finalize` runs with `hint`.
pub unsafe fn create(
  env: sys::napi_env,
  data: *mut c_void,
  length: usize,
  finalize: Finalize,
  hint: *mut c_void,
  result: &mut sys::napi_value,
) -> Option<sys::napi_status> {
  let create = create_function()?;
  // SAFETY: the caller's contract; `result` is a valid out-pointer.
  Some(unsafe { create(env, data, length, Some(finalize), hint, result) })
}

/// An `ArrayBuffer` over the process-wide counter of faults past a
/// segment's end (`named_shm_core::fault_count`), for the facade's copy
/// view: a copy during which the counter moved may have met a shrunk
/// segment, and is redone by the addon, which reports `ERR_SHM_SIZE`.
#[napi_derive::napi(ts_return_type = "ArrayBuffer")]
pub fn fault_counter(env: napi::Env) -> napi::Result<napi::bindgen_prelude::Unknown<'static>> {
  let counter = named_shm_core::fault_count();
  let mut buffer = std::ptr::null_mut();
  // SAFETY: the counter is a static, valid for the whole process, so no
  // finalizer is needed; JavaScript only reads it (with Atomics.load).
  let status = unsafe {
    sys::napi_create_external_arraybuffer(
      env.raw(),
      counter.as_ptr().cast(),
      std::mem::size_of_val(counter),
      None,
      std::ptr::null_mut(),
      &mut buffer,
    )
  };
  if status != sys::Status::napi_ok {
    return Err(napi::Error::new(
      napi::Status::GenericFailure,
      "no external buffers in this runtime",
    ));
  }
  // SAFETY: `buffer` is a live value created in `env` during this call.
  Ok(unsafe { napi::bindgen_prelude::Unknown::from_raw_unchecked(env.raw(), buffer) })
}
