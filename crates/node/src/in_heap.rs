//! In-heap views: zero-copy without external buffers.
//!
//! Electron (V8's memory cage) refuses `ArrayBuffer`s over memory V8 did not
//! allocate, and on Node 20 an external buffer of a large segment costs a
//! full garbage collection every few attaches. There the binding asks V8 for
//! a non-growable `WebAssembly.Memory`: its buffer is page-aligned, owned by
//! V8's page allocator, and JavaScript can neither detach nor transfer it.
//! The segment is then mapped over that memory (`Segment::map_over`), and
//! the buffer V8 made IS the segment. The memory is shared where the runtime
//! allows (its buffer a `SharedArrayBuffer`, which V8 does not count as
//! external memory, so attach costs no garbage collection at any size), and
//! private elsewhere. Never over `napi_create_arraybuffer` memory: small
//! buffers live in allocator slots that are recycled without being unmapped,
//! and any such buffer can be freed at any moment by `transfer()`.
//!
//! This file decides which kind of view an attach gets ([`ZeroCopy`],
//! [`view_kind`]) and makes the WebAssembly memory; views.rs owns the result
//! like any view.

#[cfg(unix)]
use std::cell::Cell;
use std::ptr;
#[cfg(unix)]
use std::rc::Rc;
#[cfg(unix)]
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;

#[cfg(unix)]
use named_shm_core::Alias;
use napi::{sys, Env};
use napi_derive::napi;

use crate::builtins;
#[cfg(unix)]
use crate::builtins::MemoryBuiltins;
#[cfg(unix)]
use crate::errors::{check, throw_core, OUT_OF_RANGE};
use crate::errors::{throw_code, Kind, EXTERNAL_BUFFERS, IN_HEAP_UNSUPPORTED};
#[cfg(unix)]
use crate::shared_buffers;
#[cfg(unix)]
use crate::views::clear_pending_exception;

/// What `attach()` gives in this runtime (`SharedMemory.zeroCopy`).
#[napi(string_enum = "kebab-case")]
#[derive(Debug, PartialEq, Eq)]
pub enum ZeroCopy {
  /// A buffer over the process's own mapping of the segment (Node, Bun,
  /// Deno); on Node 20, segments of 64 MiB or more get in-heap views.
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
  let Some(builtins) = builtins::memory(env) else {
    return false;
  };
  match ANSWER.load(Ordering::Relaxed) {
    YES => true,
    NO => false,
    _ => match construct(env, &builtins, 1, false) {
      Some(memory) => {
        let genuine = private_buffer(env, &builtins, memory, 1).is_some();
        ANSWER.store(if genuine { YES } else { NO }, Ordering::Relaxed);
        genuine
      }
      // No address space for even one page just now: remember nothing, and
      // let attach() report the ENOMEM it meets.
      None => true,
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
  } else if !builtins::has_webassembly(env) {
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

/// The buffer of a fresh WebAssembly memory, and where its bytes lie.
#[cfg(unix)]
pub struct HeapMemory {
  /// The memory's buffer, for the view: while it lives, V8 keeps the memory
  /// allocated.
  pub buffer: sys::napi_value,
  /// Its first byte (64 KiB-aligned).
  pub data: *mut u8,
  /// Its length: `len` rounded up to whole WebAssembly pages.
  pub capacity: usize,
  /// A shared memory's second hold (see [`Hold`]); `None` for a private one.
  pub hold: Option<Rc<Hold>>,
  /// The segment's own mapping that the last overlay of this memory left,
  /// for the next one (see [`SpareMemory`]).
  pub alias: Option<Alias>,
}

/// A strong reference to a second `SharedArrayBuffer` over a shared
/// WebAssembly memory, which nothing but the binding can reach: while it is
/// held, V8 keeps the memory allocated, whatever became of the view's own
/// buffer and whichever threads it was posted to. So the overlay can always
/// be put back to zero pages before the memory goes, by `detach`, `close`
/// or the view's finalizer, each of which then releases the hold.
///
/// Its one owner is [`Hold::release`]; a view and its finalizer share it.
#[cfg(unix)]
pub struct Hold(Cell<sys::napi_ref>);

#[cfg(unix)]
impl Hold {
  /// Whether the memory is still held (not yet released).
  pub fn is_held(&self) -> bool {
    !self.0.get().is_null()
  }

  /// Lets V8 free the memory once every buffer over it is collected. Only
  /// after the overlay is gone. Later calls do nothing.
  pub fn release(&self, env: sys::napi_env) {
    let reference = self.0.replace(ptr::null_mut());
    if !reference.is_null() {
      // SAFETY: the reference `new_shared_memory` made in this env, deleted once.
      unsafe { sys::napi_delete_reference(env, reference) };
    }
  }

  /// Moves the hold into a new owner, leaving this one released (a view's
  /// finalizer that finds it so leaves the memory alone). `None` if it was
  /// released already.
  fn take(&self) -> Option<Hold> {
    let reference = self.0.replace(ptr::null_mut());
    (!reference.is_null()).then(|| Hold(Cell::new(reference)))
  }

  /// The held buffer (the clone only the binding references).
  fn value(&self, env: &Env) -> Option<sys::napi_value> {
    let mut value = ptr::null_mut();
    // SAFETY: a live strong reference of this env; valid out-pointer.
    let status = unsafe { sys::napi_get_reference_value(env.raw(), self.0.get(), &mut value) };
    (status == sys::Status::napi_ok && !value.is_null()).then_some(value)
  }
}

/// The shared memory of an in-heap view its handle detached, zero pages
/// over it, kept for the handle's next attach: that one then maps the
/// segment over it again instead of asking V8 for a new memory (~10 µs, and
/// 8 to 10 GiB of address space that only a garbage collection gives back).
/// Only the handle that detached the view reuses it, so the memory only ever
/// shows that one segment; the detached view, and copies of its buffer
/// posted to other threads, show the segment again while the next view is
/// attached.
///
/// Its one owner is the handle (`NativeSegment`), which hands it to the next
/// attach or gives it back with [`SpareMemory::release`] (close, finalizer).
/// At most [`MAX_SPARES`] live per thread, so that idle handles hold little
/// of V8's address space.
#[cfg(unix)]
pub struct SpareMemory {
  data: *mut u8,
  capacity: usize,
  hold: Hold,
  /// The last overlay's own mapping of the segment, where waits read: the
  /// next overlay takes it over rather than mapping the segment again.
  alias: Option<Alias>,
}

/// No spare memories where there are no in-heap views.
#[cfg(not(unix))]
pub enum SpareMemory {}

#[cfg(not(unix))]
impl SpareMemory {
  /// Nothing to release.
  pub fn release(self, _env: &Env) {
    match self {}
  }
}

/// The most spare memories one thread keeps: 80 GiB of address space at
/// 10 GiB each, of V8's 1 TiB budget for WebAssembly memories.
#[cfg(unix)]
const MAX_SPARES: usize = 8;

#[cfg(unix)]
thread_local! {
  /// Spare memories of this thread's handles.
  static SPARES: Cell<usize> = const { Cell::new(0) };
}

#[cfg(unix)]
impl SpareMemory {
  /// Keeps the memory at `[data, data + capacity)` that `hold` holds, with
  /// zero pages over it (and the overlay's `alias`), if this thread keeps
  /// fewer than [`MAX_SPARES`]; else releases the hold (the alias is unmapped).
  pub fn keep(
    env: &Env,
    data: *mut u8,
    capacity: usize,
    hold: &Hold,
    alias: Option<Alias>,
  ) -> Option<SpareMemory> {
    if SPARES.get() >= MAX_SPARES {
      hold.release(env.raw());
      return None;
    }
    let hold = hold.take()?;
    SPARES.set(SPARES.get() + 1);
    Some(SpareMemory {
      data,
      capacity,
      hold,
      alias,
    })
  }

  /// Lets V8 free the memory once every buffer over it is collected.
  pub fn release(self, env: &Env) {
    SPARES.set(SPARES.get() - 1);
    self.hold.release(env.raw());
  }

  /// The memory again, with a new buffer over it for the next view: a
  /// `structuredClone` of the held one, checked to be over the same bytes.
  ///
  /// # Errors
  /// `ERR_SHM_IN_HEAP_UNSUPPORTED` if the clone is not (the memory is then released).
  fn reuse(self, env: &Env) -> napi::Result<HeapMemory> {
    SPARES.set(SPARES.get() - 1);
    let buffer = self
      .hold
      .value(env)
      .and_then(|held| builtins::structured_clone(env, held));
    let genuine = buffer.is_some_and(|buffer| {
      builtins::buffer_bytes(env, buffer) == Some((self.data.cast(), self.capacity))
    });
    match buffer {
      Some(buffer) if genuine => Ok(HeapMemory {
        buffer,
        data: self.data,
        capacity: self.capacity,
        hold: Some(Rc::new(self.hold)),
        alias: self.alias,
      }),
      _ => {
        self.hold.release(env.raw());
        Err(not_genuine(env))
      }
    }
  }
}

/// From this many bytes, views are made of shared WebAssembly memories.
/// V8 counts an external `ArrayBuffer`, and a private WebAssembly memory, at
/// its whole length as external memory, and starts a full garbage
/// collection whenever that count grows by 64 MiB at once; a shared memory
/// is not counted. So from this size:
/// - in-heap views are over shared memories (below it, private ones: each
///   shared memory also leaves V8 a little heap to manage, ~10 bytes for
///   good on Node 20, and grows its heap while views come and go quickly);
/// - where the runtime cannot make external `SharedArrayBuffer`s (Node 20),
///   `attach()` makes in-heap views by itself (below it, an external
///   `ArrayBuffer` is cheaper and reserves no address space).
#[cfg(unix)]
const SHARED_IN_HEAP_FROM: u64 = 64 << 20;

/// What kind of view `attach()` makes for a segment of `size` bytes:
/// in-heap if `asked`, and where the runtime's external views would cost
/// garbage collections (see [`SHARED_IN_HEAP_FROM`]); else [`zero_copy`].
pub fn view_kind(env: &Env, size: u64, asked: bool) -> ZeroCopy {
  if asked {
    return ZeroCopy::InHeap;
  }
  let kind = zero_copy(*env);
  #[cfg(unix)]
  if kind == ZeroCopy::External
    && size >= SHARED_IN_HEAP_FROM
    && size <= (MAX_PAGES * WASM_PAGE) as u64
    && !shared_buffers::available()
    && !SHARED_REFUSED.load(Ordering::Relaxed)
    && builtins::shared_memory_possible(env)
    && memories_carry_segments(env)
  {
    return ZeroCopy::InHeap;
  }
  let _ = size;
  kind
}

/// A shared WebAssembly memory was refused here while a private one was not
/// (a context without shared memory): in-heap views are private from then on.
#[cfg(unix)]
static SHARED_REFUSED: AtomicBool = AtomicBool::new(false);

/// Makes a non-growable `WebAssembly.Memory` of at least `len` bytes and
/// returns its buffer: from [`SHARED_IN_HEAP_FROM`] a shared one where the
/// runtime can (V8 does not count it as external memory, so it costs no
/// garbage collection), else a private one. The memory object itself goes to no one, so nothing can grow it or
/// replace its buffer.
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
  let builtins = builtins::memory(env).ok_or_else(|| unsupported(env))?;
  let pages = len.div_ceil(WASM_PAGE);
  if pages > MAX_PAGES {
    return Err(throw_code(
      env,
      Kind::RangeError,
      OUT_OF_RANGE,
      &format!("The value of \"size\" is out of range. It must be <= 4 GiB for an in-heap view. Received {len}"),
    ));
  }
  let pays = len as u64 >= SHARED_IN_HEAP_FROM;
  if pays && !SHARED_REFUSED.load(Ordering::Relaxed) && builtins::shared_memory_possible(env) {
    if let Some(memory) = construct(env, &builtins, pages, true) {
      return shared_memory(env, &builtins, memory, pages);
    }
  }
  let Some(memory) = construct(env, &builtins, pages, false) else {
    // V8 throws a RangeError ("could not allocate memory") once its own
    // mmap fails or its budget of address space is spent, even after
    // collecting garbage.
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
  };
  if pays && builtins::shared_memory_possible(env) {
    SHARED_REFUSED.store(true, Ordering::Relaxed);
  }
  private_memory(env, &builtins, memory, pages)
}

/// The memory for an in-heap view of `len` bytes: `spare` if it has the
/// pages, else (releasing it) a new one from [`new_memory`].
///
/// # Errors
/// As [`new_memory`]; `ERR_SHM_IN_HEAP_UNSUPPORTED` if the spare's buffer
/// no longer checks out.
#[cfg(unix)]
pub fn memory_for(env: &Env, len: usize, spare: Option<SpareMemory>) -> napi::Result<HeapMemory> {
  if let Some(spare) = spare {
    if spare.capacity == len.div_ceil(WASM_PAGE) * WASM_PAGE {
      return spare.reuse(env);
    }
    spare.release(env);
  }
  new_memory(env, len)
}

/// `new WebAssembly.Memory({ initial: pages, maximum: pages, shared })`;
/// `None` (nothing pending) if it threw.
#[cfg(unix)]
fn construct(
  env: &Env,
  builtins: &MemoryBuiltins,
  pages: usize,
  shared: bool,
) -> Option<sys::napi_value> {
  let raw = env.raw();
  let mut descriptor = ptr::null_mut();
  let mut count = ptr::null_mut();
  let mut flag = ptr::null_mut();
  let mut memory = ptr::null_mut();
  // SAFETY: live env; valid out-pointers; `pages` <= 65536 fits a u32;
  // `constructor` is a function of this env, given one valid argument.
  let made = unsafe {
    sys::napi_create_object(raw, &mut descriptor) == sys::Status::napi_ok
      && sys::napi_create_uint32(raw, pages as u32, &mut count) == sys::Status::napi_ok
      && sys::napi_get_boolean(raw, shared, &mut flag) == sys::Status::napi_ok
      && sys::napi_set_named_property(raw, descriptor, c"initial".as_ptr(), count)
        == sys::Status::napi_ok
      && sys::napi_set_named_property(raw, descriptor, c"maximum".as_ptr(), count)
        == sys::Status::napi_ok
      && sys::napi_set_named_property(raw, descriptor, c"shared".as_ptr(), flag)
        == sys::Status::napi_ok
      && sys::napi_new_instance(raw, builtins.constructor, 1, &descriptor, &mut memory)
        == sys::Status::napi_ok
  };
  if made {
    Some(memory)
  } else {
    clear_pending_exception(env);
    None
  }
}

/// The error when what `WebAssembly.Memory` gave fails a check.
#[cfg(unix)]
fn not_genuine(env: &Env) -> napi::Error {
  clear_pending_exception(env);
  throw_code(
    env,
    Kind::Error,
    IN_HEAP_UNSUPPORTED,
    "In-heap views are unavailable: WebAssembly.Memory did not give a WebAssembly memory (was it replaced?)",
  )
}

/// A shared memory's buffer, and the [`Hold`] on it: a clone of the buffer
/// (`structuredClone` shares a `SharedArrayBuffer`'s memory, it never copies
/// it) that only the binding references.
///
/// What makes the overlay sound: V8's page allocator owns the memory, which
/// is whole pages that no other buffer shares, no JavaScript can detach
/// (a `SharedArrayBuffer` never is), grow (the memory object goes to no one)
/// or free while the hold lives. The checks: the buffer came from the
/// `buffer` getter taken at load (it refuses anything but a WebAssembly
/// memory), is a `SharedArrayBuffer` of exactly the pages asked for, on a
/// 64 KiB boundary, and its clone is another object over the same bytes.
#[cfg(unix)]
fn shared_memory(
  env: &Env,
  builtins: &MemoryBuiltins,
  memory: sys::napi_value,
  pages: usize,
) -> napi::Result<HeapMemory> {
  let capacity = pages * WASM_PAGE;
  let buffer = builtins::call(env, builtins.buffer_getter, Some(memory), &[])
    .ok_or_else(|| not_genuine(env))?;
  let clone = builtins::structured_clone(env, buffer).ok_or_else(|| not_genuine(env))?;
  let (data, length) = builtins::buffer_bytes(env, buffer).ok_or_else(|| not_genuine(env))?;
  let (clone_data, clone_length) =
    builtins::buffer_bytes(env, clone).ok_or_else(|| not_genuine(env))?;
  let mut same_object = true;
  // SAFETY: both are values of this call; valid out-pointer.
  let compared = unsafe { sys::napi_strict_equals(env.raw(), buffer, clone, &mut same_object) };
  let genuine = compared == sys::Status::napi_ok
    && !same_object
    && length == capacity
    && clone_length == capacity
    && clone_data == data
    && (data as usize).is_multiple_of(WASM_PAGE);
  if !genuine {
    return Err(not_genuine(env));
  }
  let mut reference = ptr::null_mut();
  // SAFETY: `clone` is a value of this call; count 1 makes the reference strong.
  check(unsafe { sys::napi_create_reference(env.raw(), clone, 1, &mut reference) })?;
  Ok(HeapMemory {
    buffer,
    data: data.cast(),
    capacity,
    hold: Some(Rc::new(Hold(Cell::new(reference)))),
    alias: None,
  })
}

/// A private memory's buffer, for contexts without shared memory and
/// segments below [`SHARED_IN_HEAP_FROM`].
///
/// # Errors
/// `ERR_SHM_IN_HEAP_UNSUPPORTED` when the buffer fails [`private_buffer`]'s checks.
#[cfg(unix)]
fn private_memory(
  env: &Env,
  builtins: &MemoryBuiltins,
  memory: sys::napi_value,
  pages: usize,
) -> napi::Result<HeapMemory> {
  let (buffer, data, capacity) =
    private_buffer(env, builtins, memory, pages).ok_or_else(|| not_genuine(env))?;
  Ok(HeapMemory {
    buffer,
    data,
    capacity,
    hold: None,
    alias: None,
  })
}

/// A private memory's buffer, its first byte and its length, if it is what
/// makes the overlay sound: as for a shared one, except that the buffer
/// itself must live for the memory to (the finalizer can then only forget
/// the overlay), and it is proven a WebAssembly memory's by refusing to be
/// detached. All of it is checked, in case the engine's memories are not
/// like V8's (JavaScriptCore's, in Bun, are not).
#[cfg(unix)]
fn private_buffer(
  env: &Env,
  builtins: &MemoryBuiltins,
  memory: sys::napi_value,
  pages: usize,
) -> Option<(sys::napi_value, *mut u8, usize)> {
  let raw = env.raw();
  let capacity = pages * WASM_PAGE;
  let buffer = builtins::call(env, builtins.buffer_getter, Some(memory), &[])?;
  let mut data = ptr::null_mut();
  let mut length = 0;
  // SAFETY: valid out-pointers; a non-ArrayBuffer gives an error status.
  let status = unsafe { sys::napi_get_arraybuffer_info(raw, buffer, &mut data, &mut length) };
  let genuine = status == sys::Status::napi_ok
    && length == capacity
    && (data as usize).is_multiple_of(WASM_PAGE)
    // SAFETY: `buffer` is an ArrayBuffer of this env; Node refuses
    // non-detachable buffers before detaching anything.
    && unsafe { sys::napi_detach_arraybuffer(raw, buffer) }
      == sys::Status::napi_detachable_arraybuffer_expected;
  clear_pending_exception(env);
  genuine.then_some((buffer, data.cast(), capacity))
}
