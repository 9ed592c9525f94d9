//! The channel's header and records, byte for byte (docs/channel-layout.md
//! describes the same layout for other languages). Every number is
//! little-endian on the platforms this runs on (native order; all of them
//! are little-endian).
//!
//! ```text
//! offset  size  field
//!   0      4    magic              "NSCH" (0x4843534e)
//!   4      4    version            2
//!   8      4    capacity           bytes in the data area (multiple of 8)
//!  12      4    max_message        largest payload a sender may send
//!  16      4    data_offset        where the data area starts (512)
//!  20      4    flags              bit 0: a sender has attached
//!  24      4    closed             1 once the receiver closed the channel
//!  64      8    head               bytes ever published (senders write)
//!  72      4    data_seq           futex word: bumped to wake a receiver
//!  76      4    receiver_sleepers  receivers asleep on data_seq
//! 128      8    tail               bytes ever consumed (the receiver writes)
//! 136      4    space_seq          futex word: bumped to wake senders
//! 140      4    sender_sleepers    senders asleep on space_seq
//! 144      8    receiver           the receiver's liveness stamp
//! 192      8    send_lock          SharedMutex senders take turns with
//! 256    8*32   senders            the senders' liveness stamps
//! 512           data area: records
//! ```
//!
//! A record is an 8-byte header (payload length u32, kind u32) and the
//! payload padded to 8 bytes; a record never wraps. Where the next record
//! does not fit before the end of the data area, a `WRAP` record says "go
//! on at the start".

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64};

/// "NSCH" read as a little-endian u32.
pub const MAGIC: u32 = u32::from_le_bytes(*b"NSCH");
/// The layout version this code reads and writes. Version 2 moved
/// `send_lock` off `head`'s cache line (which the receiver reads) and added
/// `closed`.
pub const VERSION: u32 = 2;
/// Bytes of the header; the data area starts here.
pub const HEADER_BYTES: usize = 512;
/// Liveness slots for senders: at most this many attached at once.
pub const MAX_SENDERS: usize = 32;
/// Bytes of a record's header.
pub const RECORD_HEADER: usize = 8;
/// Record kind: a message.
pub const KIND_MESSAGE: u32 = 1;
/// Record kind: skip to the start of the data area.
pub const KIND_WRAP: u32 = 2;
/// `flags` bit: some sender has attached since the channel was made.
pub const FLAG_SENDER_SEEN: u32 = 1;
/// The smallest data area.
pub const MIN_CAPACITY: usize = 64;
/// The largest data area: positions are compared within 2^31.
pub const MAX_CAPACITY: usize = 1 << 31;

/// A liveness slot that holds nobody.
pub const NOBODY: u64 = 0;
/// The receiver slot after the receiver closed: the channel is closed.
pub const CLOSED: u64 = u64::MAX;

/// The header, as it lies at the start of the segment.
#[repr(C)]
pub(crate) struct Header {
  pub magic: AtomicU32,
  pub version: AtomicU32,
  pub capacity: AtomicU32,
  pub max_message: AtomicU32,
  pub data_offset: AtomicU32,
  pub flags: AtomicU32,
  /// 1 once the receiver closed: what `receiver == CLOSED` says, on a line
  /// that changes once, so that a sender can look at it on every send
  /// without taking the receiver's line (`tail`) from it.
  pub closed: AtomicU32,
  _reserved0: [u32; 9],
  pub head: AtomicU64,
  pub data_seq: AtomicU32,
  pub receiver_sleepers: AtomicU32,
  _reserved1: [u64; 6],
  pub tail: AtomicU64,
  pub space_seq: AtomicU32,
  pub sender_sleepers: AtomicU32,
  pub receiver: AtomicU64,
  _reserved2: [u64; 5],
  /// On a line of its own: senders take it for every message, and a
  /// receiver that looks at `head` would otherwise take the line from them
  /// between the lock, the publish and the unlock.
  pub send_lock: AtomicU64,
  _reserved3: [u64; 7],
  pub senders: [AtomicU64; MAX_SENDERS],
}

/// Where the header's fields lie, in bytes from the start of the segment:
/// for code that reaches them without [`Header`] (the facade, in
/// JavaScript).
pub mod offsets {
  /// `closed`: 1 once the receiver closed the channel (u32).
  pub const CLOSED: usize = 24;
  /// `head`: bytes ever published (u64).
  pub const HEAD: usize = 64;
  /// `data_seq`: the word a waiting receiver sleeps on (u32).
  pub const DATA_SEQ: usize = 72;
  /// `receiver_sleepers` (u32).
  pub const RECEIVER_SLEEPERS: usize = 76;
  /// `tail`: bytes ever consumed (u64).
  pub const TAIL: usize = 128;
  /// `space_seq`: the word a waiting sender sleeps on (u32).
  pub const SPACE_SEQ: usize = 136;
  /// `sender_sleepers` (u32).
  pub const SENDER_SLEEPERS: usize = 140;
  /// `receiver`: the receiver's liveness stamp (u64).
  pub const RECEIVER: usize = 144;
  /// `send_lock`: the senders' `SharedMutex` (u64).
  pub const SEND_LOCK: usize = 192;
  /// `senders`: the senders' liveness stamps (u64 each).
  pub const SENDERS: usize = 256;
}

#[cfg(not(loom))]
const _: () = {
  use std::mem::offset_of;
  assert!(std::mem::size_of::<Header>() == HEADER_BYTES);
  assert!(offset_of!(Header, closed) == offsets::CLOSED);
  assert!(offset_of!(Header, head) == offsets::HEAD);
  assert!(offset_of!(Header, data_seq) == offsets::DATA_SEQ);
  assert!(offset_of!(Header, receiver_sleepers) == offsets::RECEIVER_SLEEPERS);
  assert!(offset_of!(Header, send_lock) == offsets::SEND_LOCK);
  assert!(offset_of!(Header, tail) == offsets::TAIL);
  assert!(offset_of!(Header, space_seq) == offsets::SPACE_SEQ);
  assert!(offset_of!(Header, sender_sleepers) == offsets::SENDER_SLEEPERS);
  assert!(offset_of!(Header, receiver) == offsets::RECEIVER);
  assert!(offset_of!(Header, senders) == offsets::SENDERS);
};

impl Header {
  /// A zeroed header (for the loom model, which cannot map memory).
  #[cfg(loom)]
  pub(crate) fn new_zeroed() -> Header {
    Header {
      magic: AtomicU32::new(0),
      version: AtomicU32::new(0),
      capacity: AtomicU32::new(0),
      max_message: AtomicU32::new(0),
      data_offset: AtomicU32::new(0),
      flags: AtomicU32::new(0),
      closed: AtomicU32::new(0),
      _reserved0: [0; 9],
      head: AtomicU64::new(0),
      data_seq: AtomicU32::new(0),
      receiver_sleepers: AtomicU32::new(0),
      _reserved1: [0; 6],
      tail: AtomicU64::new(0),
      space_seq: AtomicU32::new(0),
      sender_sleepers: AtomicU32::new(0),
      receiver: AtomicU64::new(0),
      _reserved2: [0; 5],
      send_lock: AtomicU64::new(0),
      _reserved3: [0; 7],
      senders: std::array::from_fn(|_| AtomicU64::new(0)),
    }
  }
}

/// The shape of a channel: what its header says, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
  /// Bytes in the data area.
  pub capacity: usize,
  /// The largest payload.
  pub max_message: usize,
}

impl Geometry {
  /// The largest `max_message` a data area of `capacity` bytes can carry:
  /// any record must fit even after a wrap wasted almost as much.
  pub fn max_message_for(capacity: usize) -> usize {
    (capacity / 2).saturating_sub(RECORD_HEADER) & !7
  }

  /// Checks a shape asked for by a creator.
  ///
  /// # Errors
  /// A message saying which bound is broken.
  pub fn new(capacity: usize, max_message: usize) -> Result<Geometry, String> {
    if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) || !capacity.is_multiple_of(8) {
      return Err(format!(
        "capacity must be a multiple of 8 from {MIN_CAPACITY} to 2^31. Received {capacity}"
      ));
    }
    let largest = Geometry::max_message_for(capacity);
    if max_message > largest {
      return Err(format!(
        "maxMessage must be at most {largest} for a capacity of {capacity}. Received {max_message}"
      ));
    }
    Ok(Geometry {
      capacity,
      max_message,
    })
  }

  /// Bytes of the segment that holds the channel.
  pub fn segment_bytes(&self) -> usize {
    HEADER_BYTES + self.capacity
  }

  /// The first bytes of a new channel's header (magic, version, capacity,
  /// max_message, data_offset); the rest of a new header is zero. For a
  /// creator that writes them before the segment is published, by any means.
  pub fn header_start(&self) -> [u8; 20] {
    let mut bytes = [0; 20];
    let fields = [
      MAGIC,
      VERSION,
      self.capacity as u32,
      self.max_message as u32,
      HEADER_BYTES as u32,
    ];
    for (chunk, field) in bytes.chunks_exact_mut(4).zip(fields) {
      chunk.copy_from_slice(&field.to_le_bytes());
    }
    bytes
  }
}

/// Bytes a record of `len` payload bytes takes in the data area.
pub fn record_bytes(len: usize) -> usize {
  RECORD_HEADER + len.next_multiple_of(8)
}
