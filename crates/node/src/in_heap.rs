//! In-heap views: zero-copy where the runtime refuses external buffers.
//!
//! Electron (V8's memory cage) refuses `ArrayBuffer`s over memory V8 did not
//! allocate. There the binding asks V8 for a private, non-growable
//! `WebAssembly.Memory`: its buffer is page-aligned, owned by V8's page
//! allocator, and JavaScript can neither detach nor transfer it. The segment
//! is then mapped over that memory (`Segment::map_over`), and the buffer V8
//! made IS the segment. Never over `napi_create_arraybuffer` memory: small
//! buffers live in allocator slots that are recycled without being unmapped,
//! and any such buffer can be freed at any moment by `transfer()`.
//!
//! This file decides which kind of view a runtime gets ([`ZeroCopy`]) and
//! makes the WebAssembly memory; views.rs owns the result like any view.

use std::ptr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;

use napi::{sys, Env};
use napi_derive::napi;

#[cfg(unix)]
use crate::errors::{check, throw_core, OUT_OF_RANGE};
use crate::errors::{throw_code, Kind, EXTERNAL_BUFFERS, IN_HEAP_UNSUPPORTED};
use crate::views::clear_pending_exception;

/// What `attach()` gives in this runtime (`SharedMemory.zeroCopy`).
#[napi(string_enum = "kebab-case")]
#[derive(Debug, PartialEq, Eq)]
pub enum ZeroCopy {
  /// A buffer over the process's own mapping of the segment (Node, Bun, Deno).
  External,
  /// The segment mapped over a WebAssembly memory V8 allocated (Electron on
  /// Linux and macOS, or `NAMED_SHM_FORCE_IN_HEAP=1`).
  InHeap,
  /// No zero-copy view: `attach()` throws `ERR_SHM_EXTERNAL_BUFFERS`, and
  /// `read`, `readInto` and `write` copy (Electron on Windows, or without
  /// WebAssembly, as under `--jitless`, or where external buffers are
  /// refused and WebAssembly memories cannot carry a segment: Bun with
  /// `NAMED_SHM_FORCE_IN_HEAP=1`).
  Copy,
}

/// What this runtime gives `attach()`.
#[napi]
pub fn zero_copy(env: Env) -> ZeroCopy {
  if external_buffers_allowed(&env) {
    ZeroCopy::External
  } else if memories_carry_segments(&env) {
    ZeroCopy::InHeap
  } else {
    ZeroCopy::Copy
  }
}

/// Bytes in a WebAssembly page: the granularity of in-heap views.
#[cfg(unix)]
const WASM_PAGE: usize = 64 * 1024;

/// The most pages a WebAssembly memory has (4 GiB, V8's limit for the
/// 32-bit memories every runtime supports).
#[cfg(unix)]
const MAX_PAGES: usize = 65_536;

/// `NAMED_SHM_FORCE_IN_HEAP=1`: behave as Electron does (external buffers
/// refused), so that plain Node exercises in-heap views.
fn forced_in_heap() -> bool {
  static FORCED: OnceLock<bool> = OnceLock::new();
  *FORCED.get_or_init(|| std::env::var_os("NAMED_SHM_FORCE_IN_HEAP").is_some_and(|v| v == "1"))
}

/// Whether this runtime takes external buffers: asked once per process
/// (Electron refuses them everywhere, at compile time).
pub fn external_buffers_allowed(env: &Env) -> bool {
  const UNKNOWN: u8 = 0;
  const ALLOWED: u8 = 1;
  const REFUSED: u8 = 2;
  static ANSWER: AtomicU8 = AtomicU8::new(UNKNOWN);
  if forced_in_heap() {
    return false;
  }
  match ANSWER.load(Ordering::Relaxed) {
    ALLOWED => true,
    REFUSED => false,
    _ => {
      // Bytes no one else uses, shared-mutable (atomic), so that even a
      // write through the probe's buffer would be sound. The buffer is never
      // handed to JavaScript and needs no finalizer: the memory is static.
      static PROBE: AtomicU64 = AtomicU64::new(0);
      let mut buffer = ptr::null_mut();
      // SAFETY: live env; `PROBE` is valid for 8 bytes for ever.
      let status = unsafe {
        sys::napi_create_external_arraybuffer(
          env.raw(),
          PROBE.as_ptr().cast(),
          8,
          None,
          ptr::null_mut(),
          &mut buffer,
        )
      };
      let refused = status == sys::Status::napi_no_external_buffers_allowed;
      ANSWER.store(if refused { REFUSED } else { ALLOWED }, Ordering::Relaxed);
      !refused
    }
  }
}

/// Whether this runtime's WebAssembly memories can carry a segment: asked
/// once per process, by making a one-page memory and checking it as
/// [`new_memory`] checks every one. V8's can; JavaScriptCore's (Bun) are not
/// 64 KiB-aligned pages of their own, so there no in-heap view is possible.
/// False without WebAssembly (not remembered: that is this env's globals).
#[cfg(unix)]
fn memories_carry_segments(env: &Env) -> bool {
  const UNKNOWN: u8 = 0;
  const YES: u8 = 1;
  const NO: u8 = 2;
  static ANSWER: AtomicU8 = AtomicU8::new(UNKNOWN);
  let Some(constructor) = memory_constructor(env) else {
    return false;
  };
  match ANSWER.load(Ordering::Relaxed) {
    YES => true,
    NO => false,
    _ => match allocate(env, constructor, 1) {
      Ok(buffer) => {
        let genuine = genuine(env, buffer, 1).is_some();
        ANSWER.store(if genuine { YES } else { NO }, Ordering::Relaxed);
        genuine
      }
      // No address space for even one page just now: remember nothing, and
      // let attach() report the ENOMEM it meets.
      Err(_) => {
        clear_pending_exception(env);
        true
      }
    },
  }
}

/// Windows cannot map a segment inside memory V8 allocated.
#[cfg(not(unix))]
fn memories_carry_segments(_env: &Env) -> bool {
  false
}

/// Why `attach()` cannot give an in-heap view here, for
/// `ERR_SHM_EXTERNAL_BUFFERS` and `ERR_SHM_IN_HEAP_UNSUPPORTED`.
fn why_no_in_heap(env: &Env) -> &'static str {
  if cfg!(windows) {
    "Windows cannot map a segment inside memory V8 allocated"
  } else if memory_constructor(env).is_none() {
    "in-heap views need WebAssembly, which this runtime lacks (--jitless?)"
  } else {
    "this runtime's WebAssembly memories are not whole 64 KiB pages of their own (JavaScriptCore, in Bun)"
  }
}

/// The error `attach()` throws where no zero-copy view is possible.
pub fn no_view(env: &Env) -> napi::Error {
  throw_code(
    env,
    Kind::Error,
    EXTERNAL_BUFFERS,
    &format!(
      "This runtime forbids external buffers (Electron >= 21) and {}, so attach() cannot share memory here; use read(), readInto() and write() instead",
      why_no_in_heap(env)
    ),
  )
}

/// The error `attach({ inHeap: true })` throws where in-heap views are impossible.
pub fn unsupported(env: &Env) -> napi::Error {
  throw_code(
    env,
    Kind::Error,
    IN_HEAP_UNSUPPORTED,
    &format!("In-heap views are unavailable: {}", why_no_in_heap(env)),
  )
}

/// `globalThis.WebAssembly.Memory`, if this runtime has WebAssembly.
fn memory_constructor(env: &Env) -> Option<sys::napi_value> {
  let raw = env.raw();
  let mut global = ptr::null_mut();
  // SAFETY: live env; valid out-pointer.
  if unsafe { sys::napi_get_global(raw, &mut global) } != sys::Status::napi_ok {
    return None;
  }
  let wasm = property(env, global, c"WebAssembly")?;
  let memory = property(env, wasm, c"Memory")?;
  let mut kind = 0;
  // SAFETY: `memory` is a value of this env; valid out-pointer.
  let status = unsafe { sys::napi_typeof(raw, memory, &mut kind) };
  (status == sys::Status::napi_ok && kind == sys::ValueType::napi_function).then_some(memory)
}

/// `object[key]` when `object` is an object and reading it throws nothing.
fn property(env: &Env, object: sys::napi_value, key: &std::ffi::CStr) -> Option<sys::napi_value> {
  let raw = env.raw();
  let mut kind = 0;
  let mut value = ptr::null_mut();
  // SAFETY: `object` is a value of this env; `key` is NUL-terminated.
  unsafe {
    if sys::napi_typeof(raw, object, &mut kind) != sys::Status::napi_ok
      || (kind != sys::ValueType::napi_object && kind != sys::ValueType::napi_function)
      || sys::napi_get_named_property(raw, object, key.as_ptr(), &mut value) != sys::Status::napi_ok
    {
      clear_pending_exception(env);
      return None;
    }
  }
  Some(value)
}

/// The buffer of a fresh WebAssembly memory, and where its bytes lie.
#[cfg(unix)]
pub struct HeapMemory {
  /// The memory's `ArrayBuffer`: it keeps the memory allocated while it lives.
  pub buffer: sys::napi_value,
  /// Its first byte (64 KiB-aligned).
  pub data: *mut u8,
  /// Its length: `len` rounded up to whole WebAssembly pages.
  pub capacity: usize,
}

/// Makes a private, non-growable `WebAssembly.Memory` of at least `len`
/// bytes and returns its buffer. The memory object itself goes to no one,
/// so nothing can grow it (which would detach the buffer) or replace it.
///
/// # Errors
/// `ERR_SHM_IN_HEAP_UNSUPPORTED` without WebAssembly, or where its memories
/// cannot carry a segment; `ERR_OUT_OF_RANGE` beyond 4 GiB; `ENOMEM` when
/// V8 cannot reserve the memory.
#[cfg(unix)]
pub fn new_memory(env: &Env, len: usize) -> napi::Result<HeapMemory> {
  if !memories_carry_segments(env) {
    return Err(unsupported(env));
  }
  let constructor = memory_constructor(env).ok_or_else(|| unsupported(env))?;
  let pages = len.div_ceil(WASM_PAGE);
  if pages > MAX_PAGES {
    return Err(throw_code(
      env,
      Kind::RangeError,
      OUT_OF_RANGE,
      &format!("The value of \"size\" is out of range. It must be <= 4 GiB for an in-heap view. Received {len}"),
    ));
  }
  let buffer = allocate(env, constructor, pages)?;
  let Some((data, capacity)) = genuine(env, buffer, pages) else {
    return Err(throw_code(
      env,
      Kind::Error,
      IN_HEAP_UNSUPPORTED,
      "In-heap views are unavailable: WebAssembly.Memory did not give a WebAssembly memory of whole 64 KiB pages (was it replaced, or is this not V8?)",
    ));
  };
  Ok(HeapMemory {
    buffer,
    data,
    capacity,
  })
}

/// `new constructor({ initial: pages, maximum: pages }).buffer`.
///
/// # Errors
/// `ENOMEM` when the engine cannot allocate the memory;
/// `ERR_SHM_IN_HEAP_UNSUPPORTED` when what it made has no `buffer`.
#[cfg(unix)]
fn allocate(
  env: &Env,
  constructor: sys::napi_value,
  pages: usize,
) -> napi::Result<sys::napi_value> {
  let raw = env.raw();
  let mut descriptor = ptr::null_mut();
  let mut count = ptr::null_mut();
  // SAFETY: live env; valid out-pointers; `pages` <= 65536 fits a u32.
  unsafe {
    check(sys::napi_create_object(raw, &mut descriptor))?;
    check(sys::napi_create_uint32(raw, pages as u32, &mut count))?;
    check(sys::napi_set_named_property(
      raw,
      descriptor,
      c"initial".as_ptr(),
      count,
    ))?;
    check(sys::napi_set_named_property(
      raw,
      descriptor,
      c"maximum".as_ptr(),
      count,
    ))?;
  }
  let mut memory = ptr::null_mut();
  // SAFETY: `constructor` is a function of this env; one valid argument.
  let status = unsafe { sys::napi_new_instance(raw, constructor, 1, &descriptor, &mut memory) };
  if status != sys::Status::napi_ok {
    // V8 throws a RangeError ("could not allocate memory") once its address
    // space for WebAssembly is spent, even after collecting garbage.
    // Its own mmap failed, or its budget of address space is spent.
    clear_pending_exception(env);
    let error = named_shm_core::Error::Os {
      code: "ENOMEM",
      errno: 12,
      syscall: "mmap",
      name: None,
      detail: Some(format!(
        "V8 could not allocate {} bytes of WebAssembly memory for an in-heap view, which reserves 8 to 10 GiB of address space; detach views no longer used",
        pages * WASM_PAGE
      )),
    };
    return Err(throw_core(env, &error));
  }
  property(env, memory, c"buffer").ok_or_else(|| unsupported(env))
}

/// The first byte and length of `buffer` if it is what makes the overlay
/// sound: memory of V8's page allocator, `pages` whole WebAssembly pages that
/// no other buffer shares, which cannot be detached (a WebAssembly memory's
/// buffer never is). All of it is checked, in case `WebAssembly.Memory` was
/// replaced by something else, or the engine's memories are not like V8's.
#[cfg(unix)]
fn genuine(env: &Env, buffer: sys::napi_value, pages: usize) -> Option<(*mut u8, usize)> {
  let raw = env.raw();
  let mut data = ptr::null_mut();
  let mut capacity = 0;
  // SAFETY: valid out-pointers; a non-ArrayBuffer gives an error status.
  let status = unsafe { sys::napi_get_arraybuffer_info(raw, buffer, &mut data, &mut capacity) };
  let genuine = status == sys::Status::napi_ok
    && capacity == pages * WASM_PAGE
    && (data as usize).is_multiple_of(WASM_PAGE)
    // SAFETY: `buffer` is an ArrayBuffer of this env; Node refuses
    // non-detachable buffers before detaching anything.
    && unsafe { sys::napi_detach_arraybuffer(raw, buffer) }
      == sys::Status::napi_detachable_arraybuffer_expected;
  if genuine {
    Some((data.cast(), capacity))
  } else {
    clear_pending_exception(env);
    None
  }
}
