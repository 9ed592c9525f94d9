//! Synchronization for JavaScript, the asynchronous half: `waitAsync`,
//! `lockAsync` and their cancellation (the synchronous calls are in hot.rs,
//! finding words in words.rs). The facade (src/sync.ts) validates the
//! arguments and turns the outcome codes into strings; this layer still
//! checks every bound, so a caller that skips the facade cannot crash.
//!
//! Async outcomes travel back through unreferenced threadsafe functions
//! (`initSync`), one per copy of the facade loaded in a JavaScript thread
//! (a cleared `require` cache or a test runner's fresh module registry loads
//! it again): each request goes back to the copy that made it. A pending
//! `waitAsync` neither keeps the process alive nor occupies libuv's thread
//! pool.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use named_shm_core::waiter::{self, AsyncOutcome, Job, Request, Settle};
use named_shm_core::{LockOutcome, Owner, SharedMutex, MUTEX_BYTES};
use napi::bindgen_prelude::{FnArgs, Function, Unknown};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{sys, Env, JsValue, Status};
use napi_derive::napi;

use crate::errors::{throw_code, throw_core, ErrorCode, Kind};
use crate::hot::lock_code;
use crate::outcome::SyncOutcome;
use crate::words::{mutex_word, read_only, shared_word, timeout};

/// `(id, outcome, code, message, errno, syscall)`: the last four describe
/// the error of a `Failed` outcome (errno negative as on Node's fs errors,
/// 0 and "" when the error is not the OS's), and are empty otherwise.
type Args = FnArgs<(f64, u32, String, String, i32, String)>;
type Callback = ThreadsafeFunction<Args, Unknown<'static>, Args, Status, false, true>;

/// Delivers async outcomes to this JavaScript thread's callback.
struct JsSettler {
  callback: Callback,
}

impl Settle for JsSettler {
  fn settle(&self, id: u64, outcome: AsyncOutcome) -> bool {
    let outcome = match outcome {
      AsyncOutcome::Ok => SyncOutcome::Ok,
      AsyncOutcome::OwnerDied => SyncOutcome::OwnerDied,
      AsyncOutcome::TimedOut => SyncOutcome::TimedOut,
      AsyncOutcome::Detached => SyncOutcome::Detached,
      AsyncOutcome::Cancelled => SyncOutcome::Cancelled,
      AsyncOutcome::Failed(error) => {
        let args = FnArgs::from((
          id as f64,
          SyncOutcome::Failed.code(),
          error.code().to_owned(),
          error.to_string(),
          error.errno().map_or(0, |errno| -errno),
          error.syscall().unwrap_or_default().to_owned(),
        ));
        return self.deliver(args);
      }
    };
    let empty = String::new;
    self.deliver(FnArgs::from((
      id as f64,
      outcome.code(),
      empty(),
      empty(),
      0,
      empty(),
    )))
  }
}

impl JsSettler {
  fn deliver(&self, args: Args) -> bool {
    // Once the environment is gone the call reports `Closing`: say so, so a
    // lock taken for nobody is released.
    self
      .callback
      .call(args, ThreadsafeFunctionCallMode::NonBlocking)
      == Status::Ok
  }
}

thread_local! {
  /// This thread's receivers, by the token `initSync` returned.
  static SETTLERS: RefCell<Vec<Arc<JsSettler>>> = const { RefCell::new(Vec::new()) };
}

fn find_settler(token: u32) -> Option<Arc<JsSettler>> {
  SETTLERS.with(|settlers| settlers.borrow().get(token as usize).cloned())
}

fn settler(env: &Env, token: u32) -> napi::Result<Arc<dyn Settle>> {
  find_settler(token)
    .map(|settler| settler as Arc<dyn Settle>)
    .ok_or_else(|| {
      throw_code(
        env,
        Kind::Error,
        ErrorCode::ERR_SHM_SYNC_INIT,
        "initSync() did not return this token on this thread",
      )
    })
}

/// Registers `(id, outcome, detail)` as a receiver of async outcomes on this
/// thread and returns its token, which the facade passes with each request
/// (called once per copy of the facade per thread).
#[napi(
  ts_args_type = "callback: (id: number, outcome: SyncOutcome, code: string, message: string, errno: number, syscall: string) => void"
)]
pub fn init_sync(callback: Function<'_, Args, Unknown<'static>>) -> napi::Result<u32> {
  let callback = callback
    .build_threadsafe_function::<Args>()
    .weak::<true>()
    .callee_handled::<false>()
    .build()?;
  let settler = Arc::new(JsSettler { callback });
  Ok(SETTLERS.with(|settlers| {
    let mut settlers = settlers.borrow_mut();
    settlers.push(settler);
    u32::try_from(settlers.len() - 1).unwrap_or(u32::MAX)
  }))
}

/// Whether the pending async waits of the receiver `token` keep the event
/// loop alive (the facade turns it on while a `{ ref: true }` wait is pending).
#[napi]
pub fn keep_alive(env: Env, on: bool, token: u32) -> napi::Result<()> {
  let Some(settler) = find_settler(token) else {
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

/// Starts a `waitAsync`: a pending id (> 0), or `-1 - code` when it ends at
/// once (`not-equal`, or `timed-out` for a zero timeout).
#[napi(
  ts_args_type = "view: Int32Array, index: number, expected: number, timeoutMs: number, token: number"
)]
pub fn wait_word_async(
  env: Env,
  view: Unknown<'_>,
  index: f64,
  expected: i32,
  timeout_ms: f64,
  token: u32,
) -> napi::Result<f64> {
  let word = shared_word(&env, view.value().value, index * 4.0, 4, true)?;
  let timeout = timeout(&env, timeout_ms)?;
  if word.word().load(std::sync::atomic::Ordering::SeqCst) != expected as u32 {
    return Ok(-1.0 - f64::from(SyncOutcome::NotEqual.code()));
  }
  if timeout == Some(Duration::ZERO) {
    return Ok(-1.0 - f64::from(SyncOutcome::TimedOut.code()));
  }
  let request = Request {
    word,
    job: Job::Wait {
      expected: expected as u32,
    },
    timeout,
    settle: settler(&env, token)?,
  };
  let id = waiter::submit(request).map_err(|e| throw_core(&env, &e))?;
  Ok(id as f64)
}

/// Asks a pending `waitAsync` or `lockAsync` to end. Its outcome still
/// comes through the callback: `cancelled`, or whatever it ended with first
/// (a wake-up or a lock it took is reported, never dropped).
#[napi]
pub fn cancel_wait(id: f64) {
  waiter::cancel(id as u64);
}

/// How many `waitAsync`/`lockAsync` are pending in this process.
#[napi]
pub fn pending_waits() -> u32 {
  u32::try_from(waiter::pending()).unwrap_or(u32::MAX)
}

/// How many waiter threads this process runs (busy, or idle until they
/// retire).
#[napi]
pub fn waiter_threads() -> u32 {
  u32::try_from(waiter::threads()).unwrap_or(u32::MAX)
}

/// Checks that a `SharedMutex` can live at `byteOffset` of `view` (throws
/// the errors its methods would).
#[napi(ts_args_type = "view: ArrayBufferView, byteOffset: number")]
pub fn check_mutex(env: Env, view: Unknown<'_>, byte_offset: f64) -> napi::Result<()> {
  mutex_word(&env, view.value().value, byte_offset).map(drop)
}

/// Starts a `lockAsync` for this thread: a pending id (> 0), or `-1 - code`
/// when it ends at once (`ok`, `owner-died`, or `timed-out` for a zero timeout).
#[napi(
  ts_args_type = "view: ArrayBufferView, byteOffset: number, timeoutMs: number, token: number"
)]
pub fn lock_mutex_async(
  env: Env,
  view: Unknown<'_>,
  byte_offset: f64,
  timeout_ms: f64,
  token: u32,
) -> napi::Result<f64> {
  let word = shared_word(&env, view.value().value, byte_offset, MUTEX_BYTES, false)?;
  if !word.is_writable() {
    return Err(read_only(&env));
  }
  let timeout = timeout(&env, timeout_ms)?;
  match SharedMutex::new(word.pair()).try_lock() {
    LockOutcome::Busy if timeout == Some(Duration::ZERO) => {
      return Ok(-1.0 - f64::from(SyncOutcome::TimedOut.code()))
    }
    LockOutcome::Busy => {}
    outcome => return Ok(-1.0 - f64::from(lock_code(outcome))),
  }
  let request = Request {
    word,
    job: Job::Lock {
      owner: Owner::current(),
    },
    timeout,
    settle: settler(&env, token)?,
  };
  let id = waiter::submit(request).map_err(|e| throw_core(&env, &e))?;
  Ok(id as f64)
}
