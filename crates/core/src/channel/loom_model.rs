//! The ring protocol under loom: every interleaving of a sender and the
//! receiver (and of two senders) is explored, with the data area in loom
//! cells so that a read of a record not yet published, or a write over one
//! not yet consumed, is a reported race; a lost wake-up is a deadlock loom
//! reports. Each end keeps its [`Seen`] across messages, as the endpoint
//! and the JavaScript facade do, so a stale position is in every
//! interleaving too.
//!
//! `npm run test:loom` runs it with the other models.

use std::time::Duration;

use loom::cell::UnsafeCell;
use loom::sync::atomic::Ordering;
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

use super::layout::{AtomicU32, Header};
use super::ring::{Area, Futex, Push, Ring, Seen};
use crate::error::Result;

/// A data area of 8-byte words; payloads here are at most 8 bytes.
struct Words(Vec<UnsafeCell<u64>>);

impl Area for &Words {
  fn write_header(&self, at: usize, len: u32, kind: u32) {
    self.0[at / 8].with_mut(|word| {
      // SAFETY: loom checks that no access races this one.
      unsafe { *word = u64::from(len) | u64::from(kind) << 32 }
    });
  }

  fn read_header(&self, at: usize) -> (u32, u32) {
    // SAFETY: as above.
    let word = self.0[at / 8].with(|word| unsafe { *word });
    (word as u32, (word >> 32) as u32)
  }

  unsafe fn write_payload(&self, at: usize, src: *const u8, len: usize) -> Result<()> {
    if len == 0 {
      // No bytes: the word at `at` belongs to the next record.
      return Ok(());
    }
    let mut bytes = [0u8; 8];
    // SAFETY: the caller vouches for `src`; the model sends at most 8 bytes.
    unsafe { std::ptr::copy_nonoverlapping(src, bytes.as_mut_ptr(), len.min(8)) };
    // SAFETY: as in `write_header`.
    self.0[at / 8].with_mut(|word| unsafe { *word = u64::from_le_bytes(bytes) });
    Ok(())
  }
}

impl Words {
  fn payload(&self, at: usize) -> u64 {
    // SAFETY: as in `write_header`.
    self.0[at / 8].with(|word| unsafe { *word })
  }
}

/// A futex: the check of the word and the sleep are one step with respect
/// to a wake, as the kernel makes them.
#[derive(Default)]
struct ModelFutex {
  lock: Mutex<()>,
  woken: Condvar,
}

impl Futex for ModelFutex {
  fn wait(&self, word: &AtomicU32, expected: u32, _timeout: Option<Duration>) -> Result<()> {
    let guard = self.lock.lock().unwrap();
    if word.load(Ordering::SeqCst) == expected {
      drop(self.woken.wait(guard).unwrap());
    }
    Ok(())
  }

  fn wake(&self, _word: &AtomicU32) -> Result<()> {
    let _guard = self.lock.lock().unwrap();
    self.woken.notify_all();
    Ok(())
  }
}

struct Shared {
  header: Header,
  words: Words,
  futex: ModelFutex,
  /// Stands in for the send lock (a SharedMutex, checked on its own).
  send_lock: Mutex<()>,
}

/// A 32-byte ring (4 words): two 8-byte messages fill it, so the model
/// meets a full ring, an empty one and a wrap.
fn shared() -> Arc<Shared> {
  Arc::new(Shared {
    header: Header::new_zeroed(),
    words: Words((0..4).map(|_| UnsafeCell::new(0)).collect()),
    futex: ModelFutex::default(),
    send_lock: Mutex::new(()),
  })
}

fn ring(shared: &Shared) -> Ring<'_, &Words> {
  Ring {
    header: &shared.header,
    area: &shared.words,
    capacity: 32,
    max_message: 8,
  }
}

fn send(shared: &Shared, seen: &Seen, value: u64, len: usize) {
  let ring = ring(shared);
  let bytes = value.to_le_bytes();
  loop {
    let pushed = {
      let _turn = shared.send_lock.lock().unwrap();
      // SAFETY: `bytes` lives; we hold the send lock.
      unsafe { ring.try_push(bytes.as_ptr(), len, seen) }.unwrap()
    };
    if pushed == Push::Sent {
      ring.wake_receiver(&shared.futex).unwrap();
      return;
    }
    ring.sleep_for_space(&shared.futex, len, None).unwrap();
  }
}

fn receive(shared: &Shared, seen: &Seen, read: bool) -> (usize, u64) {
  let ring = ring(shared);
  loop {
    if let Some(message) = ring.peek(seen).unwrap() {
      let value = if read {
        shared.words.payload(message.offset)
      } else {
        0
      };
      ring.release(message.next, &shared.futex).unwrap();
      return (message.len, value);
    }
    ring.sleep_for_data(&shared.futex, None).unwrap();
  }
}

/// Loom's advice for models this size: bound the preemptions (bugs almost
/// always need few), or the state space explodes.
fn bounded() -> loom::model::Builder {
  let mut builder = loom::model::Builder::new();
  builder.preemption_bound = Some(3);
  builder
}

#[test]
fn one_sender_through_full_and_wrapping_ring() {
  bounded().check(|| {
    let shared = shared();
    let theirs = Arc::clone(&shared);
    // Records of 8, 16 and 16 bytes in 32: the ring is full after two, and
    // the third wraps.
    let sizes = [0usize, 8, 8];
    let sender = thread::spawn(move || {
      let seen = Seen::default();
      for (n, len) in sizes.into_iter().enumerate() {
        send(&theirs, &seen, n as u64 + 1, len);
      }
    });
    let seen = Seen::default();
    for (n, len) in sizes.into_iter().enumerate() {
      let (got_len, value) = receive(&shared, &seen, len > 0);
      assert_eq!(got_len, len);
      if len > 0 {
        assert_eq!(value, n as u64 + 1);
      }
    }
    sender.join().unwrap();
  });
}

#[test]
fn two_senders_take_turns() {
  bounded().check(|| {
    let shared = shared();
    let senders: Vec<_> = [1u64, 2]
      .into_iter()
      .map(|value| {
        let theirs = Arc::clone(&shared);
        thread::spawn(move || send(&theirs, &Seen::default(), value, 8))
      })
      .collect();
    let seen = Seen::default();
    let (_, first) = receive(&shared, &seen, true);
    let (_, second) = receive(&shared, &seen, true);
    let mut both = [first, second];
    both.sort_unstable();
    assert_eq!(both, [1, 2]);
    for sender in senders {
      sender.join().unwrap();
    }
  });
}
