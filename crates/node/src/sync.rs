//! SPEC §5 for JavaScript: `wait`, `notify`, `waitAsync` and `SharedMutex`
//! on views of attached segments. The facade (src/sync.ts) validates the
//! arguments and turns the outcome codes into strings; this layer finds the
//! word (the view must lie in a live attachment, see views.rs) and calls the
//! core. It still checks every bound, so a caller that skips the facade
//! cannot crash.
//!
//! Async outcomes travel back through one unreferenced threadsafe function
//! per JavaScript thread (`initSync`): a pending `waitAsync` neither keeps
//! the process alive nor occupies libuv's thread pool.

use std::cell::RefCell;
use std::ptr;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use named_shm_core::waiter::{self, AsyncOutcome, Job, Request, Settle};
use named_shm_core::{
  notify, wait, LockOutcome, Owner, SharedMutex, SharedWord, WaitOutcome, MUTEX_BYTES,
};
use napi::bindgen_prelude::{FnArgs, Function, Unknown};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{sys, Env, JsValue, Status};
use napi_derive::napi;

use crate::errors::{throw_code, throw_core, Kind, NOT_ATTACHED, OUT_OF_RANGE};
use crate::views;

/// Outcome codes shared with src/sync.ts.
const OK: u32 = 0;
const NOT_EQUAL: u32 = 1;
const TIMED_OUT: u32 = 2;
const OWNER_DIED: u32 = 3;
const BUSY: u32 = 4;
const DETACHED: u32 = 5;
const CANCELLED: u32 = 6;
const FAILED: u32 = 7;

const INVALID_ARG_TYPE: &str = "ERR_INVALID_ARG_TYPE";
const INVALID_ARG_VALUE: &str = "ERR_INVALID_ARG_VALUE";
const READ_ONLY: &str = "ERR_SHM_READ_ONLY";

type Args = FnArgs<(f64, u32, String)>;
type Callback = ThreadsafeFunction<Args, Unknown<'static>, Args, Status, false, true>;

/// Delivers async outcomes to this JavaScript thread's callback.
struct JsSettler {
  callback: Callback,
}

impl Settle for JsSettler {
  fn settle(&self, id: u64, outcome: AsyncOutcome) -> bool {
    let (code, detail) = match outcome {
      AsyncOutcome::Ok => (OK, String::new()),
      AsyncOutcome::OwnerDied => (OWNER_DIED, String::new()),
      AsyncOutcome::TimedOut => (TIMED_OUT, String::new()),
      AsyncOutcome::Detached => (DETACHED, String::new()),
      AsyncOutcome::Cancelled => (CANCELLED, String::new()),
      AsyncOutcome::Failed(error) => (FAILED, format!("{}|{error}", error.code())),
    };
    let args = FnArgs::from((id as f64, code, detail));
    // Once the environment is gone the call reports `Closing`: say so, so a
    // lock taken for nobody is released.
    self
      .callback
      .call(args, ThreadsafeFunctionCallMode::NonBlocking)
      == Status::Ok
  }
}

thread_local! {
  static SETTLER: RefCell<Option<Arc<JsSettler>>> = const { RefCell::new(None) };
}

fn settler(env: &Env) -> napi::Result<Arc<dyn Settle>> {
  SETTLER
    .with(|settler| settler.borrow().clone())
    .map(|settler| settler as Arc<dyn Settle>)
    .ok_or_else(|| {
      throw_code(
        env,
        Kind::Error,
        "ERR_SHM_SYNC_INIT",
        "initSync() was not called on this thread",
      )
    })
}

/// Registers `(id, outcome, detail)` as this thread's receiver of async
/// outcomes (called once per thread by the facade).
#[napi(ts_args_type = "callback: (id: number, outcome: number, detail: string) => void")]
pub fn init_sync(callback: Function<'_, Args, Unknown<'static>>) -> napi::Result<()> {
  let callback = callback
    .build_threadsafe_function::<Args>()
    .weak::<true>()
    .callee_handled::<false>()
    .build()?;
  SETTLER.with(|settler| *settler.borrow_mut() = Some(Arc::new(JsSettler { callback })));
  Ok(())
}

/// Whether this thread's pending async waits keep the event loop alive
/// (the facade turns it on while a `{ ref: true }` wait is pending).
#[napi]
pub fn keep_alive(env: Env, on: bool) -> napi::Result<()> {
  let Some(settler) = SETTLER.with(|settler| settler.borrow().clone()) else {
    return Ok(());
  };
  let raw = settler.callback.raw();
  // SAFETY: the threadsafe function was made in this thread's env, which is
  // alive while JavaScript calls us.
  let status = unsafe {
    if on {
      sys::napi_ref_threadsafe_function(env.raw(), raw)
    } else {
      sys::napi_unref_threadsafe_function(env.raw(), raw)
    }
  };
  crate::errors::check(status)
}

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

/// Checks that the `width`-byte word at `byte_index` of `view` lies, aligned,
/// in a live attachment of this process; returns its address and place.
fn resolve(
  env: &Env,
  view: &Unknown<'_>,
  byte_index: f64,
  width: usize,
  int32_only: bool,
) -> napi::Result<(usize, views::Place)> {
  let info = view_info(env, view.value().value).filter(|info| info.int32 || !int32_only);
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
  let Some(view_place) = views::place(info.data, info.byte_length) else {
    return Err(throw_code(
      env,
      Kind::Error,
      NOT_ATTACHED,
      "The view does not lie in an attached segment (a plain or shared buffer, or detached)",
    ));
  };
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
  let place = views::Place {
    target: view_place.target + (address - info.data),
    writable: view_place.writable,
  };
  Ok((address, place))
}

/// The 4-byte word for a call that ends before JavaScript runs again.
///
/// Why no pin is needed: `view` is an argument of the running call, so its
/// ArrayBuffer stays alive, and its memory is unmapped only when that buffer
/// is detached (by `detach`/`close` on this same thread, which is busy in
/// this call) or collected (impossible while it is an argument); see
/// views.rs. An alias lives exactly as long as its view.
fn word<'a>(env: &Env, view: &'a Unknown<'_>, index: f64) -> napi::Result<&'a AtomicU32> {
  let (_, place) = resolve(env, view, index * 4.0, 4, true)?;
  // SAFETY: an aligned word inside a live mapping that stays mapped while
  // `view` is borrowed, as explained above.
  Ok(unsafe { AtomicU32::from_ptr(place.target as *mut u32) })
}

/// The 8-byte mutex word for a call that ends before JavaScript runs again
/// (see [`word`]); the view must be read-write.
fn mutex_word<'a>(
  env: &Env,
  view: &'a Unknown<'_>,
  byte_offset: f64,
) -> napi::Result<&'a AtomicU64> {
  let (_, place) = resolve(env, view, byte_offset, MUTEX_BYTES, false)?;
  if !place.writable {
    return Err(read_only(env));
  }
  // SAFETY: as in `word`, for an aligned 8-byte word.
  Ok(unsafe { AtomicU64::from_ptr(place.target as *mut u64) })
}

fn read_only(env: &Env) -> napi::Error {
  throw_code(
    env,
    Kind::Error,
    READ_ONLY,
    "A SharedMutex needs a read-write view; this one is read-only",
  )
}

/// The word pinned, for a wait that outlives the call (waiter threads).
fn shared_word(
  env: &Env,
  view: &Unknown<'_>,
  byte_index: f64,
  width: usize,
  int32_only: bool,
) -> napi::Result<SharedWord> {
  let (address, _) = resolve(env, view, byte_index, width, int32_only)?;
  let pinned = views::find(address, width).and_then(|(mapping, target)| {
    SharedWord::new(
      &mapping,
      &target,
      address - mapping.as_ptr() as usize,
      width,
    )
  });
  pinned.ok_or_else(|| throw_code(env, Kind::Error, NOT_ATTACHED, "The view was detached"))
}

/// A timeout in milliseconds: `None` for +Infinity.
fn timeout(env: &Env, ms: f64) -> napi::Result<Option<Duration>> {
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

/// Blocks while `view[index]` holds `expected` (`Atomics.wait` across
/// processes); returns an outcome code.
#[napi(
  ts_args_type = "view: Int32Array, index: number, expected: number, timeoutMs: number, spin: boolean"
)]
pub fn wait_word(
  env: Env,
  view: Unknown<'_>,
  index: f64,
  expected: i32,
  timeout_ms: f64,
  spin: bool,
) -> napi::Result<u32> {
  let word = word(&env, &view, index)?;
  let timeout = timeout(&env, timeout_ms)?;
  let outcome = wait(word, expected as u32, timeout, spin).map_err(|e| throw_core(&env, &e))?;
  Ok(match outcome {
    WaitOutcome::Ok => OK,
    WaitOutcome::NotEqual => NOT_EQUAL,
    WaitOutcome::TimedOut => TIMED_OUT,
  })
}

/// Wakes up to `count` waiters on `view[index]` in every process (`count`
/// ≥ 2^32 − 1 or +Infinity: all); returns how many the OS reports.
#[napi(ts_args_type = "view: Int32Array, index: number, count: number")]
pub fn notify_word(env: Env, view: Unknown<'_>, index: f64, count: f64) -> napi::Result<u32> {
  let word = word(&env, &view, index)?;
  let count = if count.is_nan() || count < 0.0 {
    0
  } else if count >= f64::from(u32::MAX) {
    u32::MAX
  } else {
    count as u32
  };
  let woken = notify(word, count).map_err(|e| throw_core(&env, &e))?;
  Ok(u32::try_from(woken).unwrap_or(u32::MAX))
}

/// Starts a `waitAsync`: a pending id (> 0), or `-1 - code` when it ends at
/// once (`not-equal`, or `timed-out` for a zero timeout).
#[napi(ts_args_type = "view: Int32Array, index: number, expected: number, timeoutMs: number")]
pub fn wait_word_async(
  env: Env,
  view: Unknown<'_>,
  index: f64,
  expected: i32,
  timeout_ms: f64,
) -> napi::Result<f64> {
  let word = shared_word(&env, &view, index * 4.0, 4, true)?;
  let timeout = timeout(&env, timeout_ms)?;
  if word.word().load(std::sync::atomic::Ordering::SeqCst) != expected as u32 {
    return Ok(-1.0 - f64::from(NOT_EQUAL));
  }
  if timeout == Some(Duration::ZERO) {
    return Ok(-1.0 - f64::from(TIMED_OUT));
  }
  let request = Request {
    word,
    job: Job::Wait {
      expected: expected as u32,
    },
    timeout,
    settle: settler(&env)?,
  };
  let id = waiter::submit(request).map_err(|e| throw_core(&env, &e))?;
  Ok(id as f64)
}

/// Ends a pending `waitAsync` or `lockAsync`; its outcome becomes `cancelled`.
#[napi]
pub fn cancel_wait(id: f64) {
  waiter::cancel(id as u64);
}

/// How many `waitAsync`/`lockAsync` are pending in this process.
#[napi]
pub fn pending_waits() -> u32 {
  u32::try_from(waiter::pending()).unwrap_or(u32::MAX)
}

/// Checks that a `SharedMutex` can live at `byteOffset` of `view` (throws
/// the errors its methods would).
#[napi(ts_args_type = "view: ArrayBufferView, byteOffset: number")]
pub fn check_mutex(env: Env, view: Unknown<'_>, byte_offset: f64) -> napi::Result<()> {
  mutex_word(&env, &view, byte_offset).map(drop)
}

fn lock_code(outcome: LockOutcome) -> u32 {
  match outcome {
    LockOutcome::Ok => OK,
    LockOutcome::OwnerDied => OWNER_DIED,
    LockOutcome::TimedOut => TIMED_OUT,
    LockOutcome::Busy => BUSY,
  }
}

/// Locks the `SharedMutex` at `byteOffset` of `view`, blocking at most
/// `timeoutMs`; returns an outcome code.
#[napi(
  ts_args_type = "view: ArrayBufferView, byteOffset: number, timeoutMs: number, spin: boolean"
)]
pub fn lock_mutex(
  env: Env,
  view: Unknown<'_>,
  byte_offset: f64,
  timeout_ms: f64,
  spin: bool,
) -> napi::Result<u32> {
  let word = mutex_word(&env, &view, byte_offset)?;
  let timeout = timeout(&env, timeout_ms)?;
  let outcome = SharedMutex::new(word)
    .lock(timeout, spin)
    .map_err(|e| throw_core(&env, &e))?;
  Ok(lock_code(outcome))
}

/// Takes the `SharedMutex` if free (or its owner died); returns an outcome code.
#[napi(ts_args_type = "view: ArrayBufferView, byteOffset: number")]
pub fn try_lock_mutex(env: Env, view: Unknown<'_>, byte_offset: f64) -> napi::Result<u32> {
  let word = mutex_word(&env, &view, byte_offset)?;
  Ok(lock_code(SharedMutex::new(word).try_lock()))
}

/// Unlocks the `SharedMutex`; `ERR_SHM_NOT_OWNER` unless this thread holds it.
#[napi(ts_args_type = "view: ArrayBufferView, byteOffset: number")]
pub fn unlock_mutex(env: Env, view: Unknown<'_>, byte_offset: f64) -> napi::Result<()> {
  let word = mutex_word(&env, &view, byte_offset)?;
  SharedMutex::new(word)
    .unlock()
    .map_err(|e| throw_core(&env, &e))
}

/// Starts a `lockAsync` for this thread: a pending id (> 0), or `-1 - code`
/// when it ends at once (`ok`, `owner-died`, or `timed-out` for a zero timeout).
#[napi(ts_args_type = "view: ArrayBufferView, byteOffset: number, timeoutMs: number")]
pub fn lock_mutex_async(
  env: Env,
  view: Unknown<'_>,
  byte_offset: f64,
  timeout_ms: f64,
) -> napi::Result<f64> {
  let word = shared_word(&env, &view, byte_offset, MUTEX_BYTES, false)?;
  if !word.is_writable() {
    return Err(read_only(&env));
  }
  let timeout = timeout(&env, timeout_ms)?;
  match SharedMutex::new(word.pair()).try_lock() {
    LockOutcome::Busy if timeout == Some(Duration::ZERO) => return Ok(-1.0 - f64::from(TIMED_OUT)),
    LockOutcome::Busy => {}
    outcome => return Ok(-1.0 - f64::from(lock_code(outcome))),
  }
  let request = Request {
    word,
    job: Job::Lock {
      owner: Owner::current(),
    },
    timeout,
    settle: settler(&env)?,
  };
  let id = waiter::submit(request).map_err(|e| throw_core(&env, &e))?;
  Ok(id as f64)
}
