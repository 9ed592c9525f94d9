//! The ring protocol, apart from memory and sleeping so that loom can check
//! it (see `loom_model.rs`).
//!
//! - Senders take turns (the send lock, held by the caller of
//!   [`Ring::try_push`]): write the record, then publish it by advancing
//!   `head` (release). A sender that dies before that store published
//!   nothing; the next one writes over its half-made record.
//! - The one receiver reads records between `tail` and `head` (acquire) and
//!   frees them by advancing `tail` (release).
//! - Each end keeps what it last read of the other's position ([`Seen`])
//!   and reads it again only when that is not enough (no room, no message):
//!   positions only grow, so an old value means less room or fewer
//!   messages, never a wrong one, and a busy channel does not move the
//!   other end's cache line for every message.
//! - Sleeping is an eventcount: a side that finds nothing to do counts
//!   itself in its sleeper count, reads the sequence word, looks once more,
//!   then sleeps on the sequence word. The other side, after each store of
//!   `head` or `tail`, wakes only if the sleeper count is non-zero: a
//!   saturated channel makes no system calls. Each side puts a `SeqCst`
//!   fence between its store (the count, the position) and its load of the
//!   other's, so one of the two always sees the other (a Dekker pair, with
//!   fences because loom models those and not `SeqCst` loads and stores).

use std::cell::Cell;
use std::time::Duration;

use super::layout::{record_bytes, AtomicU32, Header, KIND_MESSAGE, KIND_WRAP, RECORD_HEADER};
use crate::error::{Error, Result};

#[cfg(loom)]
use loom::sync::atomic::{fence, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{fence, Ordering};

/// The data area of a ring.
pub(crate) trait Area {
  /// Writes a record header at `at`.
  fn write_header(&self, at: usize, len: u32, kind: u32);
  /// Reads the record header at `at`.
  fn read_header(&self, at: usize) -> (u32, u32);
  /// Copies `len` bytes from `src` into the payload at `at`.
  ///
  /// # Safety
  /// `src` is valid for reads of `len` bytes.
  unsafe fn write_payload(&self, at: usize, src: *const u8, len: usize) -> Result<()>;
}

/// Sleeping on a word, and waking its sleepers.
pub(crate) trait Futex {
  /// Sleeps while `word` holds `expected`, at most `timeout`; may return early.
  fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Result<()>;
  /// Wakes every sleeper on `word`.
  fn wake(&self, word: &AtomicU32) -> Result<()>;
}

/// One message found by [`Ring::peek`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
  /// Where its payload starts in the data area.
  pub offset: usize,
  /// Payload bytes.
  pub len: usize,
  /// `tail` once it is consumed.
  pub next: u64,
}

/// What [`Ring::try_push`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Push {
  /// Published.
  Sent,
  /// Not enough free space for it now.
  Full,
}

/// What one end last read of the other end's position (see the top of this
/// file). Each end keeps its own.
#[derive(Debug, Default)]
pub(crate) struct Seen {
  /// A sender's last look at `tail`.
  tail: Cell<u64>,
  /// The receiver's last look at `head`.
  head: Cell<u64>,
}

/// A ring over its header and data area.
pub(crate) struct Ring<'a, A> {
  pub header: &'a Header,
  pub area: A,
  pub capacity: usize,
  pub max_message: usize,
}

impl<A: Area> Ring<'_, A> {
  /// Bytes a message of `len` needs from `head` on: its record, plus the
  /// rest of the area when it must wrap first.
  fn needed(&self, head: u64, len: usize) -> usize {
    let at = (head % self.capacity as u64) as usize;
    let record = record_bytes(len);
    let to_end = self.capacity - at;
    if record <= to_end {
      record
    } else {
      to_end + record
    }
  }

  /// Whether a message of `len` bytes fits now.
  pub fn fits(&self, len: usize) -> bool {
    let head = self.header.head.load(Ordering::SeqCst);
    let tail = self.header.tail.load(Ordering::SeqCst);
    let used = head.wrapping_sub(tail);
    used <= self.capacity as u64 && self.needed(head, len) as u64 <= self.capacity as u64 - used
  }

  /// Whether `needed` bytes are free from `head` on, were `tail` where it is.
  fn has_room(&self, head: u64, tail: u64, needed: usize) -> bool {
    let used = head.wrapping_sub(tail);
    used <= self.capacity as u64 && needed as u64 <= self.capacity as u64 - used
  }

  /// Writes and publishes one message, or says the ring is full. `seen`
  /// is this sender's.
  ///
  /// # Safety
  /// The caller holds the send lock (no other sender writes meanwhile), and
  /// `src` is valid for reads of `len <= max_message` bytes.
  ///
  /// # Errors
  /// An error from the copy; [`Error::NotAChannel`] if `head` and `tail`
  /// are further apart than the area (a foreign writer).
  pub unsafe fn try_push(&self, src: *const u8, len: usize, seen: &Seen) -> Result<Push> {
    debug_assert!(len <= self.max_message);
    // Only senders, one at a time, store head.
    let mut head = self.header.head.load(Ordering::Relaxed);
    // Records are multiples of 8 bytes: any other position is a foreign
    // writer's, and an access there would be misaligned.
    if !head.is_multiple_of(8) {
      return Err(Error::NotAChannel(format!(
        "its head ({head}) is not a multiple of 8"
      )));
    }
    let needed = self.needed(head, len);
    if !self.has_room(head, seen.tail.get(), needed) {
      // Acquire: the receiver's reads of the space we reuse came before.
      let tail = self.header.tail.load(Ordering::Acquire);
      seen.tail.set(tail);
      if head.wrapping_sub(tail) > self.capacity as u64 {
        return Err(Error::NotAChannel(format!(
          "its head ({head}) and tail ({tail}) are more than the capacity apart"
        )));
      }
      if !self.has_room(head, tail, needed) {
        return Ok(Push::Full);
      }
    }
    let mut at = (head % self.capacity as u64) as usize;
    let record = record_bytes(len);
    if record > self.capacity - at {
      self.area.write_header(at, 0, KIND_WRAP);
      head += (self.capacity - at) as u64;
      at = 0;
    }
    // SAFETY: the caller vouches for `src`; the record lies in free space.
    unsafe { self.area.write_payload(at + RECORD_HEADER, src, len)? };
    self.area.write_header(at, len as u32, KIND_MESSAGE);
    self
      .header
      .head
      .store(head + record as u64, Ordering::Release);
    Ok(Push::Sent)
  }

  /// After publishing: wakes the receiver if it sleeps.
  pub fn wake_receiver(&self, futex: &impl Futex) -> Result<()> {
    fence(Ordering::SeqCst);
    if self.header.receiver_sleepers.load(Ordering::Relaxed) > 0 {
      self.header.data_seq.fetch_add(1, Ordering::SeqCst);
      futex.wake(&self.header.data_seq)?;
    }
    Ok(())
  }

  /// The oldest message not yet consumed, if any. `seen` is the
  /// receiver's: an empty ring is always judged on a fresh read of `head`.
  ///
  /// # Errors
  /// [`Error::NotAChannel`] for a record no sender of this layout writes
  /// (the segment was overwritten by something else): never read past it.
  pub fn peek(&self, seen: &Seen) -> Result<Option<Message>> {
    // Only the receiver stores tail.
    let mut tail = self.header.tail.load(Ordering::Relaxed);
    if !tail.is_multiple_of(8) {
      return Err(Error::NotAChannel(format!(
        "its tail ({tail}) is not a multiple of 8"
      )));
    }
    let mut head = seen.head.get();
    let ahead = head.wrapping_sub(tail);
    if ahead == 0 || ahead > self.capacity as u64 {
      head = self.header.head.load(Ordering::SeqCst);
      seen.head.set(head);
    }
    let corrupt = |what: String| Err(Error::NotAChannel(what));
    // At most one wrap record precedes a message.
    for _ in 0..2 {
      if head.wrapping_sub(tail) > self.capacity as u64 {
        return corrupt(format!("a wrap record at {tail} leads past head ({head})"));
      }
      if tail == head {
        return Ok(None);
      }
      let at = (tail % self.capacity as u64) as usize;
      let (len, kind) = self.area.read_header(at);
      let len = len as usize;
      match kind {
        KIND_WRAP => tail += (self.capacity - at) as u64,
        KIND_MESSAGE
          if len <= self.max_message
            && record_bytes(len) <= self.capacity - at
            && head.wrapping_sub(tail) >= record_bytes(len) as u64 =>
        {
          return Ok(Some(Message {
            offset: at + RECORD_HEADER,
            len,
            next: tail + record_bytes(len) as u64,
          }));
        }
        _ => return corrupt(format!("a record of kind {kind} and {len} bytes at {at}")),
      }
    }
    corrupt("two wrap records in a row".into())
  }

  /// Frees everything before `next` (a consumed message's [`Message::next`])
  /// and wakes senders that sleep for space.
  pub fn release(&self, next: u64, futex: &impl Futex) -> Result<()> {
    self.header.tail.store(next, Ordering::Release);
    self.wake_senders(futex)
  }

  /// After freeing space: wakes senders that sleep for it.
  pub fn wake_senders(&self, futex: &impl Futex) -> Result<()> {
    fence(Ordering::SeqCst);
    if self.header.sender_sleepers.load(Ordering::Relaxed) > 0 {
      self.header.space_seq.fetch_add(1, Ordering::SeqCst);
      futex.wake(&self.header.space_seq)?;
    }
    Ok(())
  }

  /// Sleeps until a message may have come or `data_seq` moved (a sender
  /// left), at most `timeout`. Returns at once if one is there.
  pub fn sleep_for_data(&self, futex: &impl Futex, timeout: Option<Duration>) -> Result<()> {
    let header = self.header;
    header.receiver_sleepers.fetch_add(1, Ordering::SeqCst);
    fence(Ordering::SeqCst);
    let seq = header.data_seq.load(Ordering::SeqCst);
    let tail = header.tail.load(Ordering::Relaxed);
    let result = if header.head.load(Ordering::SeqCst) != tail {
      Ok(())
    } else {
      futex.wait(&header.data_seq, seq, timeout)
    };
    header.receiver_sleepers.fetch_sub(1, Ordering::SeqCst);
    result
  }

  /// Sleeps until `len` bytes may fit or `space_seq` moved (the receiver
  /// left), at most `timeout`. Returns at once if they fit.
  pub fn sleep_for_space(
    &self,
    futex: &impl Futex,
    len: usize,
    timeout: Option<Duration>,
  ) -> Result<()> {
    let header = self.header;
    header.sender_sleepers.fetch_add(1, Ordering::SeqCst);
    fence(Ordering::SeqCst);
    let seq = header.space_seq.load(Ordering::SeqCst);
    let result = if self.fits(len) {
      Ok(())
    } else {
      futex.wait(&header.space_seq, seq, timeout)
    };
    header.sender_sleepers.fetch_sub(1, Ordering::SeqCst);
    result
  }

  /// Wakes everyone asleep on either side (a close: they look again).
  #[cfg_attr(loom, allow(dead_code))]
  pub fn wake_all(&self, futex: &impl Futex) -> Result<()> {
    self.header.data_seq.fetch_add(1, Ordering::SeqCst);
    self.header.space_seq.fetch_add(1, Ordering::SeqCst);
    futex.wake(&self.header.data_seq)?;
    futex.wake(&self.header.space_seq)
  }
}
