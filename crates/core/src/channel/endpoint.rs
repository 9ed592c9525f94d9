//! [`Channel`]: one process's end of a channel in a mapped segment.

use std::ptr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::layout::{
  Geometry, Header, CLOSED, FLAG_SENDER_SEEN, HEADER_BYTES, MAGIC, NOBODY, VERSION,
};
use super::peers::{self, Claim, Senders};
use super::ring::{Area, Futex, Message, Push, Ring, Seen};
use crate::error::{Error, Result};
use crate::mapping::{Mapping, Pinned};
use crate::mutex::{Attempt, LockOutcome, Owner, SharedMutex, LIVENESS_SLICE};
use crate::os;
use crate::sync::Spinner;

/// How long [`Channel::attach`] waits for a creator that has made the
/// segment but not yet written the header. This library's creators write it
/// before the name is published; another program may not be able to.
const INIT_GRACE: Duration = Duration::from_millis(100);

/// How a [`Channel::send`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
  /// The message is in the ring.
  Sent,
  /// The ring stayed full for the whole timeout.
  TimedOut,
}

/// How a [`Channel::receive`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
  /// A message, readable at [`Message::offset`] of the data area until
  /// [`Channel::release`] frees it (the next `receive` finds it again until
  /// then).
  Message(Message),
  /// Nothing came within the timeout.
  TimedOut,
  /// Every sender closed its end and the ring is drained.
  Ended,
}

/// Which side an async wait is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
  /// A receiver waiting for data (`data_seq`).
  Receiver,
  /// A sender waiting for space (`space_seq`).
  Sender,
}

/// One end of a channel: sends, receives, or both (but it is the only
/// receiver while it receives).
#[derive(Debug)]
pub struct Channel {
  pin: Pinned,
  geometry: Geometry,
  /// Our sender slot, once we sent.
  sender_slot: Option<usize>,
  /// Whether we hold the receiver slot.
  receiving: bool,
  /// What this end last read of the other end's position.
  seen: Seen,
  closed: bool,
}

/// The data area of a live mapping.
struct MappedArea<'a> {
  mapping: &'a Arc<Mapping>,
  data: *mut u8,
}

impl Area for MappedArea<'_> {
  fn write_header(&self, at: usize, len: u32, kind: u32) {
    let word = u64::from(len) | u64::from(kind) << 32;
    // SAFETY: the ring keeps `at` 8-aligned and 8 bytes short of the end of
    // the data area, which the pin keeps mapped. Other processes may touch
    // the bytes; a volatile store makes no assumption about them.
    unsafe { ptr::write_volatile(self.data.add(at).cast::<u64>(), word.to_le()) }
  }

  fn read_header(&self, at: usize) -> (u32, u32) {
    // SAFETY: as in `write_header`.
    let word = u64::from_le(unsafe { ptr::read_volatile(self.data.add(at).cast::<u64>()) });
    (word as u32, (word >> 32) as u32)
  }

  unsafe fn write_payload(&self, at: usize, src: *const u8, len: usize) -> Result<()> {
    // SAFETY: the caller vouches for `src`; `copy_in` checks the range and
    // stages the copy when `src` may alias the segment.
    unsafe { self.mapping.copy_in(HEADER_BYTES + at, src, len) }
  }
}

/// Sleeping in the OS.
struct OsFutex;

impl Futex for OsFutex {
  fn wait(
    &self,
    word: &std::sync::atomic::AtomicU32,
    expected: u32,
    timeout: Option<Duration>,
  ) -> Result<()> {
    os::wait(word, expected, timeout).map(drop)
  }

  fn wake(&self, word: &std::sync::atomic::AtomicU32) -> Result<()> {
    os::wake(word, u32::MAX).map(drop)
  }
}

/// The time left before `deadline` (`None`: no deadline), or `None` inside
/// `Some` when it has passed.
fn remaining(deadline: Option<Instant>) -> Option<Option<Duration>> {
  match deadline {
    None => Some(None),
    Some(deadline) => deadline
      .checked_duration_since(Instant::now())
      .filter(|left| !left.is_zero())
      .map(Some),
  }
}

fn slice(left: Option<Duration>) -> Duration {
  left.map_or(LIVENESS_SLICE, |left| left.min(LIVENESS_SLICE))
}

impl Channel {
  /// Writes the header of a new channel into `mapping`, which a creator
  /// just made (zero-filled, at least [`Geometry::segment_bytes`] long),
  /// before anyone else can open it.
  ///
  /// # Errors
  /// [`Error::InvalidArgument`] when the mapping is too small or unmapped.
  pub fn initialize(mapping: &Arc<Mapping>, geometry: Geometry) -> Result<()> {
    let pin = Channel::pin(mapping, geometry.segment_bytes())?;
    let header = header_of(&pin);
    header
      .capacity
      .store(geometry.capacity as u32, Ordering::Relaxed);
    header
      .max_message
      .store(geometry.max_message as u32, Ordering::Relaxed);
    header
      .data_offset
      .store(HEADER_BYTES as u32, Ordering::Relaxed);
    header.version.store(VERSION, Ordering::Relaxed);
    // Last, with release: an opener that sees the magic sees the rest.
    header.magic.store(MAGIC, Ordering::Release);
    Ok(())
  }

  /// [`Channel::initialize`], then [`Channel::attach`].
  ///
  /// # Errors
  /// As those two.
  pub fn create(mapping: &Arc<Mapping>, geometry: Geometry) -> Result<Channel> {
    Channel::initialize(mapping, geometry)?;
    Channel::attach(mapping)
  }

  /// The channel in `mapping`, checked: its magic, version and shape.
  /// Waits up to 100 ms for a creator still writing the header.
  ///
  /// # Errors
  /// [`Error::NotAChannel`] for a segment that holds no channel of this
  /// layout, or one too small for the shape its header claims.
  pub fn attach(mapping: &Arc<Mapping>) -> Result<Channel> {
    let pin = Channel::pin(mapping, HEADER_BYTES)
      .map_err(|_| Error::NotAChannel(format!("it has only {} bytes", mapping.len())))?;
    let header = header_of(&pin);
    let deadline = Instant::now() + INIT_GRACE;
    let mut magic = header.magic.load(Ordering::Acquire);
    while magic == 0 && Instant::now() < deadline {
      std::thread::sleep(Duration::from_millis(1));
      magic = header.magic.load(Ordering::Acquire);
    }
    if magic != MAGIC {
      return Err(Error::NotAChannel(format!(
        "its first bytes are {magic:#010x}, not a channel's magic"
      )));
    }
    let version = header.version.load(Ordering::Relaxed);
    if version != VERSION {
      return Err(Error::NotAChannel(format!(
        "its layout version is {version}; this code reads {VERSION}"
      )));
    }
    let data_offset = header.data_offset.load(Ordering::Relaxed) as usize;
    let geometry = Geometry::new(
      header.capacity.load(Ordering::Relaxed) as usize,
      header.max_message.load(Ordering::Relaxed) as usize,
    )
    .map_err(|why| Error::NotAChannel(format!("its header is invalid: {why}")))?;
    if data_offset != HEADER_BYTES || geometry.segment_bytes() > pin.len() {
      return Err(Error::NotAChannel(format!(
        "its header claims {} bytes from offset {data_offset}, the segment has {}",
        geometry.capacity,
        pin.len()
      )));
    }
    Ok(Channel::new(pin, geometry))
  }

  fn pin(mapping: &Arc<Mapping>, len: usize) -> Result<Pinned> {
    let pin = mapping
      .pin()
      .ok_or_else(|| Error::InvalidArgument("The view was detached".into()))?;
    if pin.len() < len || !(pin.as_ptr() as usize).is_multiple_of(8) {
      return Err(Error::InvalidArgument(format!(
        "A channel needs {len} bytes; the mapping has {}",
        pin.len()
      )));
    }
    Ok(pin)
  }

  fn new(pin: Pinned, geometry: Geometry) -> Channel {
    Channel {
      pin,
      geometry,
      sender_slot: None,
      receiving: false,
      seen: Seen::default(),
      closed: false,
    }
  }

  /// The channel's shape.
  pub fn geometry(&self) -> Geometry {
    self.geometry
  }

  /// Where the data area starts in the mapping.
  pub fn data_offset(&self) -> usize {
    HEADER_BYTES
  }

  fn header(&self) -> &Header {
    header_of(&self.pin)
  }

  fn ring(&self) -> Ring<'_, MappedArea<'_>> {
    ring_of(&self.pin, self.geometry)
  }

  fn check_open(&self) -> Result<()> {
    if self.closed {
      return Err(Error::ChannelClosed("this end was closed".into()));
    }
    Ok(())
  }

  /// Takes a sender slot on the first send.
  fn claim_sender(&mut self) -> Result<()> {
    if self.sender_slot.is_some() {
      return Ok(());
    }
    let me = peers::my_stamp();
    let header = self.header();
    for (index, slot) in header.senders.iter().enumerate() {
      if let Claim::Mine = peers::claim(slot, me) {
        header.flags.fetch_or(FLAG_SENDER_SEEN, Ordering::SeqCst);
        self.sender_slot = Some(index);
        return Ok(());
      }
    }
    Err(Error::ChannelBusy(format!(
      "{} senders are attached already",
      header.senders.len()
    )))
  }

  /// Takes the receiver slot on the first receive.
  fn claim_receiver(&mut self) -> Result<()> {
    if self.receiving {
      return Ok(());
    }
    match peers::claim(&self.header().receiver, peers::my_stamp()) {
      Claim::Mine => {
        self.receiving = true;
        Ok(())
      }
      Claim::Taken => Err(Error::ChannelBusy(
        "another receiver is attached (a channel has one receiver at a time)".into(),
      )),
      Claim::Closed => Err(Error::ChannelClosed("the receiver closed it".into())),
    }
  }

  /// Copies `len` bytes from `src` into the ring as one message, waiting up
  /// to `timeout` (`None`: for ever) while it is full. With `spin`, watches
  /// for space a moment before sleeping. With `check` (or after sleeping a
  /// while), asks the OS whether the receiver still lives when it is full.
  ///
  /// # Safety
  /// `src` is valid for reads of `len` bytes for the whole call.
  ///
  /// # Errors
  /// [`Error::InvalidArgument`] for more than `max_message` bytes,
  /// [`Error::ChannelClosed`] once the receiver closed, [`Error::PeerDied`]
  /// when the receiver died while the ring was full, [`Error::ChannelBusy`]
  /// when every sender slot is taken.
  pub unsafe fn send(
    &mut self,
    src: *const u8,
    len: usize,
    timeout: Option<Duration>,
    spin: bool,
    check: bool,
  ) -> Result<Sent> {
    self.check_open()?;
    if len > self.geometry.max_message {
      return Err(Error::InvalidArgument(format!(
        "A message of {len} bytes exceeds the channel's maxMessage of {}",
        self.geometry.max_message
      )));
    }
    self.claim_sender()?;
    let ring = self.ring();
    let header = ring.header;
    let lock = SharedMutex::new(&header.send_lock);
    // The common case first: the lock is free and the message fits. No
    // clock, no spin, no system call.
    if header.receiver.load(Ordering::SeqCst) != CLOSED {
      if let Attempt::Locked(_) = lock.attempt(Owner::current(), false, false) {
        // SAFETY: we hold the send lock; the caller vouches for `src`.
        let pushed = unsafe { ring.try_push(src, len, &self.seen) };
        lock.unlock()?;
        if pushed? == Push::Sent {
          ring.wake_receiver(&OsFutex)?;
          return Ok(Sent::Sent);
        }
      }
    }
    let start = Instant::now();
    let deadline = timeout.and_then(|timeout| start.checked_add(timeout));
    let spinner = Spinner::new(spin, timeout);
    let mut spun = false;
    let mut slept = false;
    // Unless asked, the first look at the receiver's liveness (a system
    // call) comes after a slice: a ring that is merely full now and then
    // costs none.
    let mut next_check = if check { start } else { start + LIVENESS_SLICE };
    loop {
      if header.receiver.load(Ordering::SeqCst) == CLOSED {
        return Err(Error::ChannelClosed("the receiver closed it".into()));
      }
      // Even a timeout that has passed gets one attempt.
      let left = remaining(deadline).unwrap_or(Some(Duration::ZERO));
      match lock.lock(left, spin)? {
        LockOutcome::Ok | LockOutcome::OwnerDied => {}
        _ => return Ok(Sent::TimedOut),
      }
      // SAFETY: we hold the send lock; the caller vouches for `src`.
      let pushed = unsafe { ring.try_push(src, len, &self.seen) };
      lock.unlock()?;
      if pushed? == Push::Sent {
        if slept {
          spinner.slept(Some(start.elapsed()));
        }
        ring.wake_receiver(&OsFutex)?;
        return Ok(Sent::Sent);
      }
      // Full: watch a moment, then sleep, checking now and then that the
      // receiver still lives.
      if !spun {
        spun = true;
        if spinner.spin(start, || ring.fits(len)) {
          continue;
        }
      }
      let now = Instant::now();
      if now >= next_check {
        next_check = now + LIVENESS_SLICE;
        if peers::is_dead(header.receiver.load(Ordering::SeqCst)) {
          return Err(Error::PeerDied("the receiver".into()));
        }
      }
      let Some(left) = remaining(deadline) else {
        return Ok(Sent::TimedOut);
      };
      ring.sleep_for_space(&OsFutex, len, Some(slice(left)))?;
      slept = true;
    }
  }

  /// The oldest message not yet released, waiting up to `timeout` (`None`:
  /// for ever) while the ring is empty. It stays in the ring until
  /// [`Channel::release`]: the caller frees it (here, or in JavaScript over
  /// the segment, as the binding's facade does). With `spin`, watches a
  /// moment before sleeping. With `check` (or whenever it sleeps), asks the
  /// OS whether the senders still live.
  ///
  /// # Errors
  /// [`Error::ChannelBusy`] while another receiver is attached,
  /// [`Error::PeerDied`] when the ring is drained and no sender lives but
  /// one died without closing, [`Error::NotAChannel`] for a corrupt record.
  pub fn receive(
    &mut self,
    timeout: Option<Duration>,
    spin: bool,
    check: bool,
  ) -> Result<Received> {
    self.check_open()?;
    self.claim_receiver()?;
    let ring = ring_of(&self.pin, self.geometry);
    // The common case first, without the clock.
    if let Some(message) = ring.peek(&self.seen)? {
      return Ok(Received::Message(message));
    }
    let header = ring.header;
    let start = Instant::now();
    let deadline = timeout.and_then(|timeout| start.checked_add(timeout));
    let spinner = Spinner::new(spin, timeout);
    let mut spun = false;
    let mut slept = false;
    let mut next_check = if check { start } else { start + LIVENESS_SLICE };
    loop {
      if let Some(message) = ring.peek(&self.seen)? {
        if slept {
          // Teach the spin how long the answer took (see sync.rs).
          spinner.slept(Some(start.elapsed()));
        }
        return Ok(Received::Message(message));
      }
      let now = Instant::now();
      let check_now = now >= next_check;
      if check_now {
        next_check = now + LIVENESS_SLICE;
      }
      if header.flags.load(Ordering::SeqCst) & FLAG_SENDER_SEEN != 0 {
        match peers::senders(&header.senders, check_now) {
          Senders::Present => {}
          // A sender may have published and left between our peek and
          // the look at the slots: the end is only the end when empty.
          Senders::AllClosed if ring.peek(&self.seen)?.is_none() => return Ok(Received::Ended),
          Senders::Died if ring.peek(&self.seen)?.is_none() => {
            return Err(Error::PeerDied("every sender".into()))
          }
          _ => continue,
        }
      }
      let Some(left) = remaining(deadline) else {
        if slept {
          spinner.slept(None);
        }
        return Ok(Received::TimedOut);
      };
      if !spun {
        spun = true;
        let tail = header.tail.load(Ordering::Relaxed);
        if spinner.spin(start, || header.head.load(Ordering::Acquire) != tail) {
          continue;
        }
      }
      ring.sleep_for_data(&OsFutex, Some(slice(left)))?;
      slept = true;
    }
  }

  /// Frees a message handed out by [`Channel::receive`] (and whatever wrap
  /// preceded it), and wakes senders that sleep for space.
  ///
  /// # Errors
  /// [`Error::InvalidArgument`] unless this end is the receiver; an OS
  /// error from the wake.
  pub fn release(&self, message: &Message) -> Result<()> {
    if !self.receiving || self.closed {
      return Err(Error::InvalidArgument(
        "only the open receiver frees messages".into(),
      ));
    }
    self.ring().release(message.next, &OsFutex)
  }

  /// Wakes senders that sleep for space, if any: for a receiver that frees
  /// messages by storing `tail` itself (the facade, in JavaScript).
  ///
  /// # Errors
  /// An OS error from the wake.
  pub fn wake_senders(&self) -> Result<()> {
    self.ring().wake_senders(&OsFutex)
  }

  /// Wakes the receiver if it sleeps: for a sender that published by
  /// storing `head` itself (the facade, in JavaScript).
  ///
  /// # Errors
  /// An OS error from the wake.
  pub fn wake_receiver(&self) -> Result<()> {
    self.ring().wake_receiver(&OsFutex)
  }

  /// Releases the send lock, which this thread took by compare-and-swap
  /// with [`Owner::locked_word`], and wakes a sender that waits for it.
  ///
  /// # Errors
  /// [`Error::NotOwner`] if this thread does not hold it.
  pub fn unlock_send(&self) -> Result<()> {
    SharedMutex::new(&self.header().send_lock).unlock()
  }

  /// The payload of a message handed out by [`Channel::receive`], copied.
  ///
  /// # Errors
  /// As [`Mapping::read_to_vec`].
  pub fn copy_payload(&self, message: &Message) -> Result<Vec<u8>> {
    self
      .pin
      .mapping()
      .read_to_vec(HEADER_BYTES + message.offset, message.len)
  }

  /// For a wait off this thread (`sendAsync`, async receive): counts the
  /// waiter in, then returns the sequence word's offset in the mapping and
  /// the value to wait on, or `None` (counted out again) when there is
  /// something to do already. Follow with [`Channel::end_wait`].
  pub fn begin_wait(&self, side: Side, len: usize) -> Option<(usize, u32)> {
    let header = self.header();
    let (sleepers, seq, at) = match side {
      Side::Receiver => (&header.receiver_sleepers, &header.data_seq, 72),
      Side::Sender => (&header.sender_sleepers, &header.space_seq, 136),
    };
    sleepers.fetch_add(1, Ordering::SeqCst);
    std::sync::atomic::fence(Ordering::SeqCst);
    let value = seq.load(Ordering::SeqCst);
    let ready = match side {
      Side::Receiver => header.head.load(Ordering::SeqCst) != header.tail.load(Ordering::SeqCst),
      Side::Sender => self.ring().fits(len),
    };
    if ready {
      sleepers.fetch_sub(1, Ordering::SeqCst);
      return None;
    }
    Some((at, value))
  }

  /// Counts out a waiter that [`Channel::begin_wait`] counted in.
  pub fn end_wait(&self, side: Side) {
    let header = self.header();
    match side {
      Side::Receiver => header.receiver_sleepers.fetch_sub(1, Ordering::SeqCst),
      Side::Sender => header.sender_sleepers.fetch_sub(1, Ordering::SeqCst),
    };
  }

  /// Leaves the channel: a sender frees its slot (the receiver sees the end
  /// once every sender left and the ring is drained); the receiver closes
  /// the channel for everyone. Wakes whoever sleeps. A second call does
  /// nothing.
  pub fn close(&mut self) {
    if self.closed {
      return;
    }
    self.closed = true;
    let ring = ring_of(&self.pin, self.geometry);
    let header = ring.header;
    if let Some(index) = self.sender_slot.take() {
      header.senders[index].store(NOBODY, Ordering::SeqCst);
    }
    if self.receiving {
      // What is left in the ring stays there: nobody will read it.
      header.closed.store(1, Ordering::SeqCst);
      header.receiver.store(CLOSED, Ordering::SeqCst);
    }
    let _ = ring.wake_all(&OsFutex);
  }

  /// Whether [`Channel::close`] ran.
  pub fn is_closed(&self) -> bool {
    self.closed
  }
}

impl Drop for Channel {
  fn drop(&mut self) {
    self.close();
  }
}

/// The ring over a pinned mapping (a function of the two fields it
/// borrows, so that the others stay free to change meanwhile).
fn ring_of(pin: &Pinned, geometry: Geometry) -> Ring<'_, MappedArea<'_>> {
  Ring {
    header: header_of(pin),
    area: MappedArea {
      mapping: pin.mapping(),
      // SAFETY: `Channel::pin` checked the mapping holds the header and
      // the data area.
      data: unsafe { pin.as_ptr().add(HEADER_BYTES) },
    },
    capacity: geometry.capacity,
    max_message: geometry.max_message,
  }
}

fn header_of(pin: &Pinned) -> &Header {
  // SAFETY: `Channel::pin` checked that the mapping holds HEADER_BYTES at an
  // 8-aligned address; `Header` is plain atomics (repr(C)), valid for any
  // bytes, and the pin keeps the memory mapped while the reference lives.
  unsafe { &*pin.as_ptr().cast::<Header>() }
}
