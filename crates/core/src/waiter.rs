//! Waits that end on a thread of their own: `waitAsync` and `lockAsync`.
//!
//! The caller's thread (Node's event loop) submits a [`Request`] and goes
//! on; a waiter thread sleeps on the word and reports the outcome through the
//! request's [`Settle`]. None of this touches libuv's thread pool.
//!
//! - Where the OS can sleep on many words at once (Linux 5.16+,
//!   `futex_waitv`), one thread serves up to 127 requests plus a control word
//!   that wakes it when requests come, go or are cancelled; more requests
//!   start more such threads.
//! - Elsewhere (macOS, Windows, older Linux) each request gets a thread of
//!   its own that sleeps in slices of `SINGLE_SLICE`, so that cancellation is
//!   seen within one slice.
//!
//! Memory safety: every request holds a [`SharedWord`], which pins its
//! mapping. Requests leave a thread's list only on that thread (a cancel
//! just marks them), so a word never goes while its thread may read it or
//! hand its address to the kernel; a detach on the caller's thread only
//! retires the mapping, and the waiter thread, poked, ends the request with
//! [`AsyncOutcome::Detached`] and drops the last pin, which unmaps.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::mutex::{LockOutcome, Owner, SharedMutex, Turn, LIVENESS_SLICE};
use crate::os::{self, Wake, WakeAny};
use crate::sync::SharedWord;
use crate::wait_turn::{wait_turn, WaitTurn};

/// How long a thread-per-wait sleeps before looking for a cancel.
const SINGLE_SLICE: Duration = Duration::from_millis(50);

/// How long a waiter thread with nothing to wait for stays before it ends
/// (docs/api.md promises it). A later request starts a new one, which costs
/// tens of microseconds: far less than a thread parked for good.
pub const IDLE_RETIREMENT: Duration = Duration::from_secs(1);

/// What a request waits for.
#[derive(Clone, Copy, Debug)]
pub enum Job {
  /// `waitAsync`: for a wake-up, or the word to leave `expected`.
  Wait {
    /// The value the word held when the wait began.
    expected: u32,
  },
  /// `lockAsync`: to take the mutex in the (8-byte) word for `owner`.
  Lock {
    /// The thread that will hold the lock (the caller's).
    owner: Owner,
  },
}

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AsyncOutcome {
  /// Woken or changed (`Wait`), or locked (`Lock`).
  Ok,
  /// Locked, taken over from an owner that died (`Lock`).
  OwnerDied,
  /// The timeout passed.
  TimedOut,
  /// The caller's view was detached while waiting.
  Detached,
  /// [`cancel`] ended it.
  Cancelled,
  /// The OS refused the wait.
  Failed(Error),
}

/// Reports an outcome to the caller; `false` if nobody can hear it any more
/// (the JavaScript environment is gone), in which case a lock just taken is
/// released again.
pub trait Settle: Send + Sync {
  /// Called once per request, on a waiter thread.
  fn settle(&self, id: u64, outcome: AsyncOutcome) -> bool;
}

/// One wait to run on a waiter thread.
pub struct Request {
  /// The word: 4 bytes for `Wait`, 8 for `Lock`.
  pub word: SharedWord,
  /// What to wait for.
  pub job: Job,
  /// How long at most (`None`: no limit).
  pub timeout: Option<Duration>,
  /// Who hears the outcome.
  pub settle: Arc<dyn Settle>,
}

struct Entry {
  id: u64,
  word: Arc<SharedWord>,
  job: Job,
  deadline: Option<Instant>,
  /// `Lock`: when next to check that the owner lives (`None`: now).
  check_at: Option<Instant>,
  settle: Arc<dyn Settle>,
  cancelled: bool,
  woken: bool,
}

enum Step {
  Done(AsyncOutcome),
  Sleep { value: u32, until: Option<Instant> },
  Again,
}

impl Entry {
  /// Decides, without sleeping, whether the request is over.
  fn step(&mut self, now: Instant) -> Step {
    if let Err(error) = self.word.check_shrunk() {
      if let Job::Lock { .. } = self.job {
        SharedMutex::new(self.word.pair()).pass_on_wake();
      }
      return Step::Done(AsyncOutcome::Failed(error));
    }
    let expired = self.deadline.is_some_and(|deadline| now >= deadline);
    match self.job {
      Job::Wait { expected } => {
        let word = &self.word;
        let changed = || word.word().load(Ordering::SeqCst) != expected;
        match wait_turn(
          self.woken,
          self.cancelled,
          word.is_detached(),
          changed,
          expired,
        ) {
          WaitTurn::Woken | WaitTurn::Changed => Step::Done(AsyncOutcome::Ok),
          WaitTurn::Cancelled => Step::Done(AsyncOutcome::Cancelled),
          WaitTurn::Detached => Step::Done(AsyncOutcome::Detached),
          WaitTurn::Expired => Step::Done(AsyncOutcome::TimedOut),
          WaitTurn::Sleep => Step::Sleep {
            value: expected,
            until: self.deadline,
          },
        }
      }
      Job::Lock { owner } => {
        let mutex = SharedMutex::new(self.word.pair());
        // A cancel is decided under the shard's lock, as this turn is: so a
        // request cancelled before its turn never takes the lock, and one
        // that took it reports that, whatever the cancel says later.
        let stop = self.cancelled || self.word.is_detached();
        let check = self.check_at.is_none_or(|at| now >= at);
        let turn = mutex.turn(owner, stop, check, expired);
        if check {
          self.check_at = Some(now + LIVENESS_SLICE);
        }
        match turn {
          Turn::Locked(LockOutcome::OwnerDied) => Step::Done(AsyncOutcome::OwnerDied),
          Turn::Locked(_) => Step::Done(AsyncOutcome::Ok),
          Turn::GaveUp if self.cancelled => Step::Done(AsyncOutcome::Cancelled),
          Turn::GaveUp if stop => Step::Done(AsyncOutcome::Detached),
          Turn::GaveUp => Step::Done(AsyncOutcome::TimedOut),
          Turn::Again => Step::Again,
          Turn::Sleep(value) => {
            self.woken = false;
            let until = match (self.deadline, self.check_at) {
              (Some(deadline), Some(check)) => Some(deadline.min(check)),
              (deadline, check) => deadline.or(check),
            };
            Step::Sleep { value, until }
          }
        }
      }
    }
  }

  /// The 4-byte word the OS sleeps on.
  fn futex(word: &SharedWord, job: Job) -> &AtomicU32 {
    match job {
      Job::Wait { .. } => word.word(),
      Job::Lock { .. } => SharedMutex::new(word.pair()).futex_word(),
    }
  }

  /// Reports the outcome; releases a lock nobody will hear about.
  fn finish(self, outcome: AsyncOutcome) {
    let locked = matches!(outcome, AsyncOutcome::Ok | AsyncOutcome::OwnerDied);
    if !self.settle.settle(self.id, outcome) {
      if let (Job::Lock { owner }, true) = (self.job, locked) {
        let _ = SharedMutex::new(self.word.pair()).unlock_as(owner);
      }
    }
  }
}

/// A waiter thread and its requests.
struct Shard {
  pool: &'static Pool,
  /// Bumped (and woken) whenever the list changes.
  control: AtomicU32,
  entries: Mutex<Vec<Entry>>,
  /// A thread for one request, sleeping in slices.
  single: bool,
}

impl Shard {
  fn entries(&self) -> MutexGuard<'_, Vec<Entry>> {
    // A panic elsewhere must not stop every later wait.
    self
      .entries
      .lock()
      .unwrap_or_else(std::sync::PoisonError::into_inner)
  }

  fn poke(&self) {
    self.control.fetch_add(1, Ordering::SeqCst);
    let _ = os::wake(&self.control, u32::MAX);
  }

  /// The thread's loop: settle what is over, sleep on the rest.
  fn run(self: Arc<Shard>) {
    let capacity = if self.single { 1 } else { os::WAIT_ANY_MAX - 1 };
    let mut armed: Vec<(u64, Arc<SharedWord>, Job, u32)> = Vec::with_capacity(capacity);
    loop {
      let seen = self.control.load(Ordering::SeqCst);
      let mut finished = Vec::new();
      let mut until: Option<Instant> = None;
      armed.clear();
      {
        let mut entries = self.entries();
        let now = Instant::now();
        let mut index = 0;
        while index < entries.len() {
          match entries[index].step(now) {
            // `remove`, not `swap_remove`: the oldest request of a word
            // stays first, and is the one armed for it (below).
            Step::Done(outcome) => finished.push((entries.remove(index), outcome)),
            Step::Again => {}
            Step::Sleep { value, until: at } => {
              let entry = &entries[index];
              let futex = Entry::futex(&entry.word, entry.job);
              let twin = armed.iter().any(|(_, word, job, armed_value)| {
                *armed_value == value && std::ptr::eq(Entry::futex(word, *job), futex)
              });
              if !twin {
                armed.push((entry.id, Arc::clone(&entry.word), entry.job, value));
              }
              until = match (until, at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
              };
              index += 1;
            }
          }
        }
      }
      // The kernel tells a futex_waitv sleeper only the last (highest) of
      // the words woken before it runs; the others' wake-ups are lost to
      // it. So arm each word once (its oldest request; the next one is
      // armed when that one ends), and waits after locks: a lock request
      // tries again after any wake-up anyway, so only wake-ups of two
      // different waited-on words at once can still hide one another.
      armed.sort_by_key(|(_, _, job, _)| matches!(job, Job::Wait { .. }));
      for (entry, outcome) in finished {
        entry.finish(outcome);
      }
      if armed.is_empty() {
        if self.single {
          // This thread's one request is over (no request is ever added to
          // a single thread): leave the pool.
          self.pool.forget(&self);
          return;
        }
        // Idle: wait for work, and leave the pool if none comes.
        let idle = os::wait(&self.control, seen, Some(IDLE_RETIREMENT));
        if matches!(idle, Ok(Wake::TimedOut)) && self.pool.retire(&self) {
          return;
        }
        continue;
      }
      let timeout = until.map(|at| at.saturating_duration_since(Instant::now()));
      let woken = if self.single {
        let (_, word, job, value) = &armed[0];
        let slice = timeout.map_or(SINGLE_SLICE, |t| t.min(SINGLE_SLICE));
        match os::wait(Entry::futex(word, *job), *value, Some(slice)) {
          Ok(Wake::Woken) => Ok(Some(0)),
          Ok(_) => Ok(None),
          Err(error) => Err(error),
        }
      } else {
        let words: Vec<(&AtomicU32, u32)> = armed
          .iter()
          .map(|(_, word, job, value)| (Entry::futex(word, *job), *value))
          .collect();
        match os::wait_any((&self.control, seen), &words, timeout) {
          Ok(WakeAny::Woken(index)) if index > 0 => Ok(Some(index - 1)),
          Ok(_) => Ok(None),
          Err(error) => Err(error),
        }
      };
      let mut entries = self.entries();
      match woken {
        Ok(Some(index)) => {
          let id = armed[index].0;
          if let Some(entry) = entries.iter_mut().find(|e| e.id == id) {
            entry.woken = true;
          }
        }
        Ok(None) => {}
        // Not expected for pinned words: fail them all rather than spin.
        Err(error) => {
          let failed: Vec<Entry> = entries.drain(..).collect();
          drop(entries);
          for entry in failed {
            entry.finish(AsyncOutcome::Failed(error.clone()));
          }
        }
      }
    }
  }
}

/// Every waiter thread.
struct Pool {
  next_id: AtomicU64,
  shards: Mutex<Vec<Arc<Shard>>>,
  /// Whether one thread can sleep on many words here.
  multi: bool,
}

static POOL: OnceLock<Pool> = OnceLock::new();

fn pool() -> &'static Pool {
  POOL.get_or_init(|| Pool::new(wait_any_works()))
}

/// Probes `wait_any` once: a kernel may lack futex_waitv (before 5.16) or a
/// seccomp policy may forbid it.
fn wait_any_works() -> bool {
  if os::WAIT_ANY_MAX < 2 {
    return false;
  }
  let probe = AtomicU32::new(0);
  !matches!(
    os::wait_any((&probe, 0), &[], Some(Duration::ZERO)),
    Ok(WakeAny::Unsupported) | Err(_)
  )
}

impl Pool {
  fn new(multi: bool) -> Pool {
    Pool {
      next_id: AtomicU64::new(1),
      shards: Mutex::new(Vec::new()),
      multi,
    }
  }

  fn shards(&self) -> MutexGuard<'_, Vec<Arc<Shard>>> {
    self
      .shards
      .lock()
      .unwrap_or_else(std::sync::PoisonError::into_inner)
  }

  fn forget(&self, shard: &Arc<Shard>) {
    self.shards().retain(|s| !Arc::ptr_eq(s, shard));
  }

  /// Takes an idle `shard` out of the pool; `false` if a request came in
  /// meanwhile. Requests are only added under the pool's lock, so once this
  /// returns `true` none ever reaches the shard and its thread may end.
  fn retire(&self, shard: &Arc<Shard>) -> bool {
    let mut shards = self.shards();
    if !shard.entries().is_empty() {
      return false;
    }
    shards.retain(|s| !Arc::ptr_eq(s, shard));
    true
  }

  fn submit(&'static self, request: Request) -> Result<u64> {
    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
    let deadline = request
      .timeout
      .and_then(|timeout| Instant::now().checked_add(timeout));
    let entry = Entry {
      id,
      word: Arc::new(request.word),
      job: request.job,
      deadline,
      check_at: None,
      settle: request.settle,
      cancelled: false,
      woken: false,
    };
    let mut shards = self.shards();
    if self.multi {
      for shard in shards.iter().filter(|s| !s.single) {
        let mut entries = shard.entries();
        if entries.len() < os::WAIT_ANY_MAX - 1 {
          entries.push(entry);
          drop(entries);
          shard.poke();
          return Ok(id);
        }
      }
    }
    let shard = Arc::new(Shard {
      pool: self,
      control: AtomicU32::new(0),
      entries: Mutex::new(vec![entry]),
      single: !self.multi,
    });
    let runner = Arc::clone(&shard);
    let spawned = std::thread::Builder::new()
      .name("named-shm-wait".into())
      .stack_size(256 << 10)
      .spawn(move || runner.run());
    if let Err(error) = spawned {
      return Err(Error::Os {
        code: "EAGAIN",
        errno: error.raw_os_error().unwrap_or(11),
        syscall: "pthread_create",
        name: None,
        detail: None,
      });
    }
    shards.push(shard);
    Ok(id)
  }

  fn cancel(&self, id: u64) {
    for shard in self.shards().iter() {
      let mut entries = shard.entries();
      if let Some(entry) = entries.iter_mut().find(|e| e.id == id) {
        entry.cancelled = true;
        drop(entries);
        shard.poke();
        return;
      }
    }
  }
}

/// Starts `request` on a waiter thread and returns its id; the outcome
/// reaches `request.settle` exactly once, on that thread.
///
/// # Errors
/// `EAGAIN` when no thread can be started.
pub fn submit(request: Request) -> Result<u64> {
  pool().submit(request)
}

/// Ends the request `id` with [`AsyncOutcome::Cancelled`] (unless it ended
/// already); its thread notices at once, or within a slice for threads
/// per wait.
pub fn cancel(id: u64) {
  pool().cancel(id);
}

/// Tells every waiter thread to look again: a view was detached.
pub fn poke() {
  // No pool yet: no waits to end.
  if let Some(pool) = POOL.get() {
    for shard in pool.shards().iter() {
      shard.poke();
    }
  }
}

/// How many requests are pending, over all threads.
pub fn pending() -> usize {
  pool().shards().iter().map(|s| s.entries().len()).sum()
}

/// How many waiter threads serve requests or wait idle for some (each ends
/// [`IDLE_RETIREMENT`] after its last request).
pub fn threads() -> usize {
  POOL.get().map_or(0, |pool| pool.shards().len())
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::mapping::{Access, Mapping};
  use crate::sync::notify;
  use crate::test_support::scratch_segment;
  use std::sync::mpsc;

  struct Channel(Mutex<mpsc::Sender<(u64, AsyncOutcome)>>);

  impl Settle for Channel {
    fn settle(&self, id: u64, outcome: AsyncOutcome) -> bool {
      self.0.lock().unwrap().send((id, outcome)).is_ok()
    }
  }

  fn mapping(tag: &str) -> Arc<Mapping> {
    let segment = scratch_segment(&format!("waiter-test-{tag}"));
    segment.map(Access::ReadWrite).unwrap()
  }

  fn request(
    mapping: &Arc<Mapping>,
    offset: usize,
    job: Job,
    timeout: Option<Duration>,
    settle: &Arc<Channel>,
  ) -> Request {
    let width = if matches!(job, Job::Lock { .. }) {
      8
    } else {
      4
    };
    Request {
      word: SharedWord::new(mapping, offset, width).unwrap(),
      job,
      timeout,
      settle: Arc::clone(settle) as Arc<dyn Settle>,
    }
  }

  /// The pool this machine uses, and the thread-per-wait one of macOS and
  /// Windows.
  fn pools() -> [&'static Pool; 2] {
    static SINGLE: OnceLock<Pool> = OnceLock::new();
    [pool(), SINGLE.get_or_init(|| Pool::new(false))]
  }

  #[test]
  fn many_waits_end_by_notify_timeout_cancel_and_detach() {
    for (n, pool) in pools().into_iter().enumerate() {
      many_waits(pool, n);
    }
  }

  fn many_waits(pool: &'static Pool, n: usize) {
    let shared = mapping(&format!("many-{n}"));
    let detachable = mapping(&format!("detachable-{n}"));
    let (sender, receiver) = mpsc::channel();
    let settle = Arc::new(Channel(Mutex::new(sender)));
    let forever = Job::Wait { expected: 0 };
    // 300 waits: more than one futex_waitv can hold.
    let woken: Vec<u64> = (0..300)
      .map(|n| {
        let word = request(&shared, 4 * (n % 64), forever, None, &settle);
        pool.submit(word).unwrap()
      })
      .collect();
    let timed = pool
      .submit(request(
        &shared,
        1000,
        forever,
        Some(Duration::from_millis(30)),
        &settle,
      ))
      .unwrap();
    let cancelled = pool.submit(request(&shared, 1004, forever, None, &settle));
    let cancelled = cancelled.unwrap();
    let detached = pool.submit(request(&detachable, 0, forever, None, &settle));
    let detached = detached.unwrap();
    pool.cancel(cancelled);
    // SAFETY: only the pinned request reads this mapping's memory.
    unsafe { detachable.unmap() };
    poke();
    let mut outcomes = std::collections::HashMap::new();
    for _ in 0..3 {
      let (id, outcome) = receiver.recv_timeout(Duration::from_secs(10)).unwrap();
      outcomes.insert(id, outcome);
    }
    assert_eq!(outcomes[&timed], AsyncOutcome::TimedOut);
    assert_eq!(outcomes[&cancelled], AsyncOutcome::Cancelled);
    assert_eq!(outcomes[&detached], AsyncOutcome::Detached);
    // Change every word, then wake: all 300 end with Ok.
    for n in 0..64 {
      let word = SharedWord::new(&shared, 4 * n, 4).unwrap();
      word.word().store(1, Ordering::SeqCst);
      notify(word.word(), u32::MAX).unwrap();
    }
    for _ in 0..woken.len() {
      let (id, outcome) = receiver.recv_timeout(Duration::from_secs(10)).unwrap();
      assert!(woken.contains(&id));
      assert_eq!(outcome, AsyncOutcome::Ok);
    }
  }

  #[test]
  fn a_notify_without_change_wakes() {
    for (n, pool) in pools().into_iter().enumerate() {
      notify_without_change(pool, n);
    }
  }

  fn notify_without_change(pool: &'static Pool, n: usize) {
    let shared = mapping(&format!("wake-{n}"));
    let (sender, receiver) = mpsc::channel();
    let settle = Arc::new(Channel(Mutex::new(sender)));
    let wait = request(&shared, 8, Job::Wait { expected: 0 }, None, &settle);
    let id = pool.submit(wait).unwrap();
    let word = SharedWord::new(&shared, 8, 4).unwrap();
    loop {
      if notify(word.word(), 1).unwrap() == 1 {
        break;
      }
      std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
      receiver.recv_timeout(Duration::from_secs(10)).unwrap(),
      (id, AsyncOutcome::Ok)
    );
  }

  #[test]
  fn async_locks_queue_behind_a_holder() {
    for (n, pool) in pools().into_iter().enumerate() {
      locks_queue(pool, n);
    }
  }

  fn locks_queue(pool: &'static Pool, n: usize) {
    let shared = mapping(&format!("locks-{n}"));
    let (sender, receiver) = mpsc::channel();
    let settle = Arc::new(Channel(Mutex::new(sender)));
    let word = SharedWord::new(&shared, 64, 8).unwrap();
    let mutex = SharedMutex::new(word.pair());
    assert_eq!(mutex.try_lock(), LockOutcome::Ok);
    // Requests for this same thread, as lockAsync makes them.
    let owner = Owner::current();
    let first = pool.submit(request(&shared, 64, Job::Lock { owner }, None, &settle));
    let first = first.unwrap();
    let timed = pool
      .submit(request(
        &shared,
        64,
        Job::Lock { owner },
        Some(Duration::from_millis(20)),
        &settle,
      ))
      .unwrap();
    assert_eq!(
      receiver.recv_timeout(Duration::from_secs(10)).unwrap(),
      (timed, AsyncOutcome::TimedOut)
    );
    mutex.unlock().unwrap();
    assert_eq!(
      receiver.recv_timeout(Duration::from_secs(10)).unwrap(),
      (first, AsyncOutcome::Ok)
    );
    assert!(mutex.is_held_by(owner));
    mutex.unlock().unwrap();
  }
}
