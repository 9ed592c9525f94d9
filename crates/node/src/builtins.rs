//! JavaScript built-ins the binding calls, taken once per env when the module
//! loads, so that code running later cannot swap them for look-alikes:
//! - `WebAssembly.Memory` and the getter of its `buffer`, which make the
//!   memory of an in-heap view (in_heap.rs); the getter is V8's, which
//!   refuses any receiver that is not a real WebAssembly memory;
//! - `structuredClone`, which gives a second `SharedArrayBuffer` object over
//!   the same memory (what keeps that memory allocated while we need it);
//! - the getter of `SharedArrayBuffer.prototype.byteLength` (it throws for
//!   anything but a `SharedArrayBuffer`, and runs no code of the caller's)
//!   and `Uint8Array`: where Node-API cannot say where a `SharedArrayBuffer`'s
//!   bytes are (Node before 22.21), a `Uint8Array` over it can.
//!
//! What is left to trust: that these globals were the runtime's own when this
//! module loaded. Code that replaced them before the first `require` could
//! hand the binding memory that is not a WebAssembly memory's; the checks in
//! in_heap.rs (64 KiB alignment, the exact length, a `SharedArrayBuffer`
//! whose clone has the same bytes) make that hard, not impossible.

use std::ffi::c_void;
use std::ptr;

use napi::bindgen_prelude::Object;
use napi::{sys, Env};
use napi_derive::napi;

use crate::views::clear_pending_exception;

/// What the module-load script returns, by property name.
const SCRIPT: &str = r#"(() => {
  const own = (object, key) => {
    try { return Object.getOwnPropertyDescriptor(object, key)?.get } catch { return undefined }
  }
  const memory = typeof WebAssembly === 'object' && WebAssembly !== null && typeof WebAssembly.Memory === 'function'
    ? WebAssembly.Memory : undefined
  const shared = typeof SharedArrayBuffer === 'function' ? SharedArrayBuffer : undefined
  return {
    memory,
    memoryBuffer: memory && own(memory.prototype, 'buffer'),
    sharedByteLength: shared && own(shared.prototype, 'byteLength'),
    uint8Array: Uint8Array,
    structuredClone: typeof structuredClone === 'function' ? structuredClone : undefined,
  }
})()"#;

/// The built-ins of one env (strong references, deleted with the env).
pub struct Builtins {
  memory: sys::napi_ref,
  memory_buffer: sys::napi_ref,
  shared_byte_length: sys::napi_ref,
  uint8_array: sys::napi_ref,
  structured_clone: sys::napi_ref,
}

/// Takes the built-ins of this env as the module loads.
#[napi(module_exports)]
pub fn take_builtins(_exports: Object<'_>, env: Env) -> napi::Result<()> {
  let builtins = capture(&env);
  env.set_instance_data(builtins, (), |context| {
    let raw = context.env.raw();
    let builtins = context.value;
    for reference in [
      builtins.memory,
      builtins.memory_buffer,
      builtins.shared_byte_length,
      builtins.uint8_array,
      builtins.structured_clone,
    ] {
      if !reference.is_null() {
        // SAFETY: a reference this env made, deleted once, as the env goes.
        unsafe { sys::napi_delete_reference(raw, reference) };
      }
    }
  })
}

/// Runs [`SCRIPT`] and keeps each function it found; null where absent.
fn capture(env: &Env) -> Builtins {
  let raw = env.raw();
  let mut builtins = Builtins {
    memory: ptr::null_mut(),
    memory_buffer: ptr::null_mut(),
    shared_byte_length: ptr::null_mut(),
    uint8_array: ptr::null_mut(),
    structured_clone: ptr::null_mut(),
  };
  let mut source = ptr::null_mut();
  let mut found = ptr::null_mut();
  // SAFETY: live env (module load); valid out-pointers; `SCRIPT` is UTF-8.
  let ran = unsafe {
    sys::napi_create_string_utf8(
      raw,
      SCRIPT.as_ptr().cast(),
      SCRIPT.len() as isize,
      &mut source,
    ) == sys::Status::napi_ok
      && sys::napi_run_script(raw, source, &mut found) == sys::Status::napi_ok
  };
  if !ran {
    clear_pending_exception(env);
    return builtins;
  }
  let keep = |key: &std::ffi::CStr| -> sys::napi_ref {
    let mut value = ptr::null_mut();
    let mut kind = 0;
    let mut reference = ptr::null_mut();
    // SAFETY: `found` is the script's object; valid out-pointers.
    let ok = unsafe {
      sys::napi_get_named_property(raw, found, key.as_ptr(), &mut value) == sys::Status::napi_ok
        && sys::napi_typeof(raw, value, &mut kind) == sys::Status::napi_ok
        && kind == sys::ValueType::napi_function
        && sys::napi_create_reference(raw, value, 1, &mut reference) == sys::Status::napi_ok
    };
    if ok {
      reference
    } else {
      ptr::null_mut()
    }
  };
  builtins.memory = keep(c"memory");
  builtins.memory_buffer = keep(c"memoryBuffer");
  builtins.shared_byte_length = keep(c"sharedByteLength");
  builtins.uint8_array = keep(c"uint8Array");
  builtins.structured_clone = keep(c"structuredClone");
  clear_pending_exception(env);
  builtins
}

/// This env's built-ins; `None` before the module loaded (never, in practice).
fn of(env: &Env) -> Option<&'static Builtins> {
  env
    .get_instance_data::<Builtins>()
    .ok()
    .flatten()
    .map(|b| &*b)
}

/// The value behind one of our references, if it was found.
fn referenced(env: &Env, reference: sys::napi_ref) -> Option<sys::napi_value> {
  if reference.is_null() {
    return None;
  }
  let mut value = ptr::null_mut();
  // SAFETY: a strong reference of this env, alive until the env goes.
  let status = unsafe { sys::napi_get_reference_value(env.raw(), reference, &mut value) };
  (status == sys::Status::napi_ok && !value.is_null()).then_some(value)
}

/// Whether this env has `WebAssembly.Memory`.
pub fn has_webassembly(env: &Env) -> bool {
  of(env).is_some_and(|builtins| !builtins.memory.is_null())
}

/// What in-heap views need, found at load: the memory constructor and the
/// getter of its buffer.
#[cfg(unix)]
pub struct MemoryBuiltins {
  pub constructor: sys::napi_value,
  pub buffer_getter: sys::napi_value,
}

/// `WebAssembly.Memory` and its `buffer` getter, where this runtime has them.
#[cfg(unix)]
pub fn memory(env: &Env) -> Option<MemoryBuiltins> {
  let builtins = of(env)?;
  Some(MemoryBuiltins {
    constructor: referenced(env, builtins.memory)?,
    buffer_getter: referenced(env, builtins.memory_buffer)?,
  })
}

/// Whether this env has every built-in that an in-heap view over a shared
/// WebAssembly memory takes (whether the engine's memories can carry a
/// segment at all is in_heap.rs's question).
#[cfg(unix)]
pub fn shared_memory_possible(env: &Env) -> bool {
  of(env).is_some_and(|builtins| {
    [
      builtins.memory,
      builtins.memory_buffer,
      builtins.shared_byte_length,
      builtins.uint8_array,
      builtins.structured_clone,
    ]
    .iter()
    .all(|reference| !reference.is_null())
  })
}

/// Calls `function` with `this` undefined and `args`; `None` (nothing left
/// pending) if it threw.
pub fn call(
  env: &Env,
  function: sys::napi_value,
  this: Option<sys::napi_value>,
  args: &[sys::napi_value],
) -> Option<sys::napi_value> {
  let raw = env.raw();
  let mut receiver = ptr::null_mut();
  let mut result = ptr::null_mut();
  // SAFETY: live env; `function` and `args` are values of this call.
  let status = unsafe {
    if let Some(this) = this {
      receiver = this;
    } else if sys::napi_get_undefined(raw, &mut receiver) != sys::Status::napi_ok {
      return None;
    }
    sys::napi_call_function(
      raw,
      receiver,
      function,
      args.len(),
      args.as_ptr(),
      &mut result,
    )
  };
  if status == sys::Status::napi_ok {
    Some(result)
  } else {
    clear_pending_exception(env);
    None
  }
}

/// `structuredClone(value)` with the function found at load.
#[cfg(unix)]
pub fn structured_clone(env: &Env, value: sys::napi_value) -> Option<sys::napi_value> {
  let clone = referenced(env, of(env)?.structured_clone)?;
  call(env, clone, None, &[value])
}

/// Where the bytes of `value` lie, if it is an `ArrayBuffer` or a
/// `SharedArrayBuffer`: `(data, byte length)`. Runs no code of the caller's.
pub fn buffer_bytes(env: &Env, value: sys::napi_value) -> Option<(*mut c_void, usize)> {
  let mut data = ptr::null_mut();
  let mut length = 0;
  // SAFETY: `value` is a value of this call; both out-pointers are valid.
  // Node-API answers napi_invalid_arg for anything else and, before Node
  // 22.21, for a SharedArrayBuffer.
  let status = unsafe { sys::napi_get_arraybuffer_info(env.raw(), value, &mut data, &mut length) };
  if status == sys::Status::napi_ok {
    return Some((data, length));
  }
  shared_buffer_bytes(env, value)
}

/// [`buffer_bytes`] for a `SharedArrayBuffer`, through a `Uint8Array` over
/// it: the `byteLength` getter proves what it is first, so that the
/// `Uint8Array` constructor never meets an object of the caller's (whose
/// `length` or iterator it would call).
fn shared_buffer_bytes(env: &Env, value: sys::napi_value) -> Option<(*mut c_void, usize)> {
  let raw = env.raw();
  let builtins = of(env)?;
  let byte_length = referenced(env, builtins.shared_byte_length)?;
  let uint8_array = referenced(env, builtins.uint8_array)?;
  call(env, byte_length, Some(value), &[])?;
  let mut view = ptr::null_mut();
  // SAFETY: live env; `uint8_array` is a constructor; one valid argument.
  if unsafe { sys::napi_new_instance(raw, uint8_array, 1, &value, &mut view) }
    != sys::Status::napi_ok
  {
    clear_pending_exception(env);
    return None;
  }
  let mut kind = 0;
  let mut length = 0;
  let mut data = ptr::null_mut();
  let mut buffer = ptr::null_mut();
  let mut offset = 0;
  let mut same = false;
  // SAFETY: `view` was just made; every out-pointer is valid.
  let ok = unsafe {
    sys::napi_get_typedarray_info(
      raw,
      view,
      &mut kind,
      &mut length,
      &mut data,
      &mut buffer,
      &mut offset,
    ) == sys::Status::napi_ok
      && sys::napi_strict_equals(raw, buffer, value, &mut same) == sys::Status::napi_ok
  };
  (ok && same && offset == 0 && kind == sys::TypedarrayType::uint8_array).then_some((data, length))
}
