//! `NativeChannel`: the binding of `named_shm_core::channel::Channel`. The
//! facade (src/channel.ts) opens the segment and attaches one view; this
//! end finds that view's mapping and pins it, so its memory stays mapped
//! for as long as this object lives, whatever JavaScript detaches.
//!
//! Receiving hands back where the message lies in that view; the facade
//! reads its length from the record header and copies or slices it there.

use napi::bindgen_prelude::Uint8ArraySlice;
use napi::Env;
use napi_derive::napi;

use named_shm_core::channel::{layout, Channel, Geometry, Received, Sent, Side};

use crate::errors::{throw_code, throw_core, Kind, NOT_ATTACHED};
use crate::words::timeout;

/// `receive` found nothing within the timeout.
const TIMED_OUT: f64 = -1.0;
/// `receive`: every sender left and the ring is drained.
const ENDED: f64 = -2.0;
/// `beginWait`: no need to wait, look again.
const READY: f64 = -1.0;

/// One end of a channel (the object behind `Channel`).
#[napi]
pub struct NativeChannel {
  channel: Channel,
}

/// The channel layout's fixed numbers, for the facade.
#[napi(object)]
pub struct ChannelLayout {
  /// Bytes of the header: the data area starts here.
  pub header_bytes: u32,
  /// The Int32 index of `data_seq`, the word a waiting receiver sleeps on.
  pub data_seq_index: u32,
  /// The Int32 index of `space_seq`, the word a waiting sender sleeps on.
  pub space_seq_index: u32,
  /// Bytes of a record header (the payload follows it).
  pub record_header: u32,
  /// The largest data area.
  pub max_capacity: f64,
  /// The smallest data area.
  pub min_capacity: u32,
}

/// The numbers of the channel layout (docs/channel-layout.md).
#[napi]
pub fn channel_layout() -> ChannelLayout {
  ChannelLayout {
    header_bytes: layout::HEADER_BYTES as u32,
    data_seq_index: 72 / 4,
    space_seq_index: 136 / 4,
    record_header: layout::RECORD_HEADER as u32,
    max_capacity: layout::MAX_CAPACITY as f64,
    min_capacity: layout::MIN_CAPACITY as u32,
  }
}

/// The largest `maxMessage` a data area of `capacity` bytes can carry.
#[napi]
pub fn channel_max_message(capacity: f64) -> f64 {
  Geometry::max_message_for(capacity as usize) as f64
}

fn mapping_of(
  env: &Env,
  view: &Uint8ArraySlice<'_>,
) -> napi::Result<std::sync::Arc<named_shm_core::Mapping>> {
  named_shm_core::Mapping::containing(view.as_ptr() as usize, view.len().max(1)).ok_or_else(|| {
    throw_code(
      env,
      Kind::Error,
      NOT_ATTACHED,
      "The view does not lie in an attached segment",
    )
  })
}

fn side(env: &Env, value: u32) -> napi::Result<Side> {
  match value {
    0 => Ok(Side::Receiver),
    1 => Ok(Side::Sender),
    _ => Err(throw_code(
      env,
      Kind::RangeError,
      "ERR_OUT_OF_RANGE",
      "The value of \"side\" is out of range. It must be 0 or 1",
    )),
  }
}

/// Writes a new channel's header into `view`, the segment being created
/// (`open`'s `init`, before the name is published).
#[napi]
pub fn channel_init(
  env: Env,
  view: Uint8ArraySlice<'_>,
  capacity: f64,
  max_message: f64,
) -> napi::Result<()> {
  let geometry = Geometry::new(capacity as usize, max_message as usize).map_err(|why| {
    throw_code(
      &env,
      Kind::RangeError,
      "ERR_OUT_OF_RANGE",
      &format!("The channel's shape is out of range: {why}"),
    )
  })?;
  let mapping = mapping_of(&env, &view)?;
  Channel::initialize(&mapping, geometry).map_err(|e| throw_core(&env, &e))
}

#[napi]
impl NativeChannel {
  /// The channel in `view`, an attachment of an existing segment.
  #[napi(factory)]
  pub fn attach(env: Env, view: Uint8ArraySlice<'_>) -> napi::Result<Self> {
    let mapping = mapping_of(&env, &view)?;
    let channel = Channel::attach(&mapping).map_err(|e| throw_core(&env, &e))?;
    Ok(NativeChannel { channel })
  }

  /// Bytes in the data area.
  #[napi(getter)]
  pub fn capacity(&self) -> f64 {
    self.channel.geometry().capacity as f64
  }

  /// The largest payload.
  #[napi(getter)]
  pub fn max_message(&self) -> f64 {
    self.channel.geometry().max_message as f64
  }

  /// Copies `data` in as one message: 0 when sent, 2 when the ring stayed
  /// full for `timeoutMs`. With `check`, a full ring asks at once whether
  /// the receiver lives.
  #[napi]
  pub fn send(
    &mut self,
    env: Env,
    data: Uint8ArraySlice<'_>,
    timeout_ms: f64,
    spin: bool,
    check: bool,
  ) -> napi::Result<u32> {
    let timeout = timeout(&env, timeout_ms)?;
    // SAFETY: the caller's array stays alive for this call.
    let sent = unsafe {
      self
        .channel
        .send(data.as_ptr(), data.len(), timeout, spin, check)
    }
    .map_err(|e| throw_core(&env, &e))?;
    Ok(match sent {
      Sent::Sent => 0,
      Sent::TimedOut => 2,
    })
  }

  /// The next message: the offset of its payload in the view (its length is
  /// the u32 8 bytes before), -1 when timed out, -2 at the end.
  #[napi]
  pub fn receive(
    &mut self,
    env: Env,
    timeout_ms: f64,
    spin: bool,
    check: bool,
  ) -> napi::Result<f64> {
    let timeout = timeout(&env, timeout_ms)?;
    let received = self
      .channel
      .receive(timeout, spin, check)
      .map_err(|e| throw_core(&env, &e))?;
    Ok(match received {
      Received::Message(message) => (self.channel.data_offset() + message.offset) as f64,
      Received::TimedOut => TIMED_OUT,
      Received::Ended => ENDED,
    })
  }

  /// Counts in a wait off this thread on `side` (0 receiver, 1 sender, for
  /// a message of `len` bytes): the value to wait for the sequence word to
  /// leave, or -1 when there is something to do already.
  #[napi]
  pub fn begin_wait(&self, env: Env, side_code: u32, len: f64) -> napi::Result<f64> {
    let side = side(&env, side_code)?;
    Ok(
      self
        .channel
        .begin_wait(side, len as usize)
        .map_or(READY, |(_, value)| f64::from(value)),
    )
  }

  /// Counts out a wait that `beginWait` counted in.
  #[napi]
  pub fn end_wait(&self, env: Env, side_code: u32) -> napi::Result<()> {
    self.channel.end_wait(side(&env, side_code)?);
    Ok(())
  }

  /// Leaves the channel and wakes whoever sleeps on it.
  #[napi]
  pub fn close(&mut self) {
    self.channel.close();
  }
}
