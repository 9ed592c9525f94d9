//! The binding of `named_shm_core::channel::Channel`. The facade
//! (src/channel.ts) opens the segment and attaches one view; `attach` finds
//! that view's mapping and pins it, so its memory stays mapped for as long
//! as the channel lives, whatever JavaScript detaches.
//!
//! `send` and `receive` run once per message, so, as in hot.rs, the calls
//! are plain Node-API callbacks (`channelCalls()`), and a channel is an
//! external of ours, type-tagged, that each call unwraps. Receiving hands
//! back where the message lies in the view; the facade reads its length
//! from the record header and copies or slices it there.

use std::cell::RefCell;
use std::ffi::c_void;
use std::ptr;
use std::sync::Arc;

use napi::bindgen_prelude::{BigInt, Buffer};
use napi::{sys, Env};
use napi_derive::napi;

use named_shm_core::channel::layout::{self, offsets};
use named_shm_core::channel::{Channel, Geometry, Received, Sent, Side};
use named_shm_core::{Mapping, Owner};

use crate::errors::{check, throw_code, throw_core, ErrorCode, Kind, NOT_ATTACHED, OUT_OF_RANGE};
use crate::hot::{args, boolean, number, object_of_calls, respond, type_error, typed_array};
use crate::words::timeout;

/// What `send` and `receive` return besides a message's offset (which is
/// never below the 512-byte header, so the two cannot be confused).
#[napi]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelOutcome {
  /// `send`: the message is in the ring.
  Sent = 0,
  /// Nothing could be done within the timeout (the ring stayed full or empty).
  TimedOut = 1,
  /// `receive`: every sender left and the ring is drained.
  Ended = 2,
}

/// Marks the externals that hold a channel, so no other external is taken
/// for one.
const TAG: sys::napi_type_tag = sys::napi_type_tag {
  lower: 0x6e61_6d65_642d_7368,
  upper: 0x6d2d_6368_616e_6e6c,
};

/// What each external owns: one end of a channel.
type Cell = RefCell<Channel>;

/// The channel layout's fixed numbers, for the facade. Int32 indexes of a
/// 64-bit field name its low half (every platform is little-endian).
#[napi(object)]
pub struct ChannelLayout {
  /// Bytes of the header: the data area starts here.
  pub header_bytes: u32,
  /// The Int32 index of `data_seq`, the word a waiting receiver sleeps on.
  pub data_seq_index: u32,
  /// The Int32 index of `space_seq`, the word a waiting sender sleeps on.
  pub space_seq_index: u32,
  /// The Int32 index of `head`'s low half (bytes ever published).
  pub head_index: u32,
  /// The Int32 index of `tail`'s low half (bytes ever consumed).
  pub tail_index: u32,
  /// The Int32 index of `receiver_sleepers`.
  pub receiver_sleepers_index: u32,
  /// The Int32 index of `sender_sleepers`.
  pub sender_sleepers_index: u32,
  /// The Int32 index of `closed` (1 once the receiver closed the channel).
  pub closed_index: u32,
  /// The BigInt64 index of `send_lock`, the senders' `SharedMutex`.
  pub send_lock_index: u32,
  /// Bytes of a record header (the payload follows it).
  pub record_header: u32,
  /// A record's kind: a message.
  pub kind_message: u32,
  /// A record's kind: go on at the start of the data area.
  pub kind_wrap: u32,
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
    data_seq_index: (offsets::DATA_SEQ / 4) as u32,
    space_seq_index: (offsets::SPACE_SEQ / 4) as u32,
    head_index: (offsets::HEAD / 4) as u32,
    tail_index: (offsets::TAIL / 4) as u32,
    receiver_sleepers_index: (offsets::RECEIVER_SLEEPERS / 4) as u32,
    sender_sleepers_index: (offsets::SENDER_SLEEPERS / 4) as u32,
    closed_index: (offsets::CLOSED / 4) as u32,
    send_lock_index: (offsets::SEND_LOCK / 8) as u32,
    record_header: layout::RECORD_HEADER as u32,
    kind_message: layout::KIND_MESSAGE,
    kind_wrap: layout::KIND_WRAP,
    max_capacity: layout::MAX_CAPACITY as f64,
    min_capacity: layout::MIN_CAPACITY as u32,
  }
}

/// The word the calling thread stores in `send_lock` when it takes the lock
/// by compare-and-swap from 0 (its `SharedMutex` owner: thread id and
/// stamp), as a signed 64-bit BigInt for a `BigInt64Array`.
#[napi]
pub fn channel_lock_word() -> BigInt {
  BigInt::from(Owner::current().locked_word() as i64)
}

/// The largest `maxMessage` a data area of `capacity` bytes can carry.
#[napi]
pub fn channel_max_message(capacity: f64) -> f64 {
  Geometry::max_message_for(capacity as usize) as f64
}

fn mapping_of(env: &Env, addr: usize, len: usize) -> napi::Result<Arc<Mapping>> {
  Mapping::containing(addr, len.max(1)).ok_or_else(|| {
    throw_code(
      env,
      Kind::Error,
      NOT_ATTACHED,
      "The view does not lie in an attached segment",
    )
  })
}

/// The first bytes of a new channel's header, for `open`'s `init` to write
/// before the name is published (in any runtime: `init` may be handed a
/// copy that is written back).
#[napi]
pub fn channel_header(env: Env, capacity: f64, max_message: f64) -> napi::Result<Buffer> {
  let geometry = Geometry::new(capacity as usize, max_message as usize).map_err(|why| {
    throw_code(
      &env,
      Kind::RangeError,
      OUT_OF_RANGE,
      &format!("The channel's shape is out of range: {why}"),
    )
  })?;
  Ok(geometry.header_start().to_vec().into())
}

/// The channel calls, as an object of plain functions.
#[napi(
  ts_return_type = "{ attach(view: Uint8Array): object; capacity(channel: object): number; maxMessage(channel: object): number; send(channel: object, data: Uint8Array, timeoutMs: number, spin: boolean, check: boolean): number; receive(channel: object, timeoutMs: number, spin: boolean, check: boolean): number; unlockSend(channel: object): void; wakeReceiver(channel: object): void; wakeSenders(channel: object): void; beginWait(channel: object, side: number, length: number): number | undefined; endWait(channel: object, side: number): void; close(channel: object): void }"
)]
pub fn channel_calls(env: Env) -> napi::Result<napi::bindgen_prelude::Object<'static>> {
  object_of_calls(
    &env,
    &[
      (c"attach", attach_call),
      (c"capacity", capacity_call),
      (c"maxMessage", max_message_call),
      (c"send", send_call),
      (c"receive", receive_call),
      (c"unlockSend", unlock_send_call),
      (c"wakeReceiver", wake_receiver_call),
      (c"wakeSenders", wake_senders_call),
      (c"beginWait", begin_wait_call),
      (c"endWait", end_wait_call),
      (c"close", close_call),
    ],
  )
}

/// The bytes of a Uint8Array argument: `(address, length)`.
pub(crate) fn bytes(
  env: &Env,
  value: sys::napi_value,
  what: &str,
) -> napi::Result<(*const u8, usize)> {
  let (data, length) = match typed_array(env, value) {
    Some((sys::TypedarrayType::uint8_array, data, length)) => (data, length),
    _ => return Err(type_error(env, what, "a Uint8Array")),
  };
  // A detached or empty array may have no data pointer at all.
  let data = if data.is_null() || length == 0 {
    ptr::NonNull::<u8>::dangling().as_ptr()
  } else {
    data.cast()
  };
  Ok((data, length))
}

/// The channel an argument holds.
fn channel(env: &Env, value: sys::napi_value) -> napi::Result<&Cell> {
  let mut tagged = false;
  let mut data = ptr::null_mut();
  // SAFETY: `value` is an argument of the running call. Only externals we
  // made carry TAG, and they hold a `Box<Cell>` until their finalizer runs,
  // which cannot happen while the value is an argument of this call.
  unsafe {
    if sys::napi_check_object_type_tag(env.raw(), value, &TAG, &mut tagged) == sys::Status::napi_ok
      && tagged
      && sys::napi_get_value_external(env.raw(), value, &mut data) == sys::Status::napi_ok
      && !data.is_null()
    {
      return Ok(&*data.cast::<Cell>());
    }
  }
  Err(type_error(env, "channel", "a channel from attach()"))
}

/// A channel that is busy in a call of this thread already (a re-entrant call).
fn busy(env: &Env) -> napi::Error {
  throw_code(
    env,
    Kind::Error,
    ErrorCode::ERR_SHM_CHANNEL_BUSY,
    "The channel is in use by a call that has not returned",
  )
}

unsafe extern "C" fn finalize(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
  // SAFETY: `data` is the `Box<Cell>` leaked in `attach_call`, finalized once.
  drop(unsafe { Box::from_raw(data.cast::<Cell>()) });
}

/// `attach(view)`: the channel in `view`, an attachment of its segment.
unsafe extern "C" fn attach_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  let env = Env::from_raw(raw);
  let result = (|| -> napi::Result<sys::napi_value> {
    let [view] = args::<1>(&env, info)?;
    let (addr, len) = bytes(&env, view, "view")?;
    let mapping = mapping_of(&env, addr as usize, len)?;
    let channel = Channel::attach(&mapping).map_err(|e| throw_core(&env, &e))?;
    let data = Box::into_raw(Box::new(RefCell::new(channel))).cast::<c_void>();
    let mut external = ptr::null_mut();
    // SAFETY: live env; `data` is ours until `finalize` takes it back.
    let status = unsafe {
      sys::napi_create_external(raw, data, Some(finalize), ptr::null_mut(), &mut external)
    };
    if status != sys::Status::napi_ok {
      // SAFETY: not handed to Node: still ours to free.
      drop(unsafe { Box::from_raw(data.cast::<Cell>()) });
      check(status)?;
    }
    // SAFETY: `external` was just created in this env.
    check(unsafe { sys::napi_type_tag_object(raw, external, &TAG) })?;
    Ok(external)
  })();
  match result {
    Ok(value) => value,
    Err(error) => {
      // SAFETY: the env of this call.
      unsafe { respond(raw, |_| Err(error)) }
    }
  }
}

/// `capacity(channel)`: bytes of the ring.
unsafe extern "C" fn capacity_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  // SAFETY: called by Node-API with the env of this call.
  unsafe { geometry_field(raw, info, |geometry| geometry.capacity) }
}

/// `maxMessage(channel)`: the largest payload.
unsafe extern "C" fn max_message_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  // SAFETY: called by Node-API with the env of this call.
  unsafe { geometry_field(raw, info, |geometry| geometry.max_message) }
}

/// A call that takes only the channel and answers one number of its geometry.
///
/// # Safety
/// As a Node-API callback: `raw` and `info` are those of the running call.
unsafe fn geometry_field(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
  field: fn(&Geometry) -> usize,
) -> sys::napi_value {
  // SAFETY: the caller's contract.
  unsafe {
    respond(raw, |env| {
      let [value] = args::<1>(env, info)?;
      let cell = channel(env, value)?;
      let channel = cell.try_borrow().map_err(|_| busy(env))?;
      Ok(Some(field(&channel.geometry()) as u32))
    })
  }
}

/// `send(channel, data, timeoutMs, spin, check)`: `Sent`, or `TimedOut`
/// when the ring stayed full for the timeout. With `check`, a full ring asks at once whether the
/// receiver lives.
unsafe extern "C" fn send_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  // SAFETY: called by Node-API with the env of this call.
  unsafe {
    respond(raw, |env| {
      let [value, data, timeout_ms, spin, check] = args::<5>(env, info)?;
      let cell = channel(env, value)?;
      let (src, len) = bytes(env, data, "data")?;
      let timeout = timeout(env, number(env, timeout_ms, "timeout")?)?;
      let spin = boolean(env, spin, "spin")?;
      let check = boolean(env, check, "check")?;
      let mut channel = cell.try_borrow_mut().map_err(|_| busy(env))?;
      // The caller's array is an argument: alive for this call (the
      // enclosing unsafe block covers this call).
      let sent = channel
        .send(src, len, timeout, spin, check)
        .map_err(|e| throw_core(env, &e))?;
      Ok(Some(match sent {
        Sent::Sent => ChannelOutcome::Sent,
        Sent::TimedOut => ChannelOutcome::TimedOut,
      } as u32))
    })
  }
}

/// `receive(channel, timeoutMs, spin, check)`: the offset of the oldest
/// message's payload in the view (its length is the u32 8 bytes before),
/// or `TimedOut`, or `Ended`. The message stays in the ring: the facade
/// frees it by storing `tail` when it is done with it.
unsafe extern "C" fn receive_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  // SAFETY: called by Node-API with the env of this call.
  unsafe {
    respond(raw, |env| {
      let [value, timeout_ms, spin, check] = args::<4>(env, info)?;
      let cell = channel(env, value)?;
      let timeout = timeout(env, number(env, timeout_ms, "timeout")?)?;
      let spin = boolean(env, spin, "spin")?;
      let check = boolean(env, check, "check")?;
      let mut channel = cell.try_borrow_mut().map_err(|_| busy(env))?;
      let received = channel
        .receive(timeout, spin, check)
        .map_err(|e| throw_core(env, &e))?;
      Ok(Some(match received {
        Received::Message(message) => (channel.data_offset() + message.offset) as u32,
        Received::TimedOut => ChannelOutcome::TimedOut as u32,
        Received::Ended => ChannelOutcome::Ended as u32,
      }))
    })
  }
}

/// A call that takes only the channel and runs `action` on it.
///
/// # Safety
/// As a Node-API callback: `raw` and `info` are those of the running call.
unsafe fn on_channel(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
  action: fn(&Channel) -> named_shm_core::Result<()>,
) -> sys::napi_value {
  // SAFETY: the caller's contract.
  unsafe {
    respond(raw, |env| {
      let [value] = args::<1>(env, info)?;
      let cell = channel(env, value)?;
      let channel = cell.try_borrow().map_err(|_| busy(env))?;
      action(&channel).map_err(|e| throw_core(env, &e))?;
      Ok(None)
    })
  }
}

/// `unlockSend(channel)`: releases the send lock, which the facade took by
/// compare-and-swap with `channelLockWord()`, and wakes a sender waiting
/// for it (the facade's own release found one announced).
unsafe extern "C" fn unlock_send_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  // SAFETY: called by Node-API with the env of this call.
  unsafe { on_channel(raw, info, Channel::unlock_send) }
}

/// `wakeReceiver(channel)`: after the facade published a message, wakes
/// the receiver (it found `receiver_sleepers` non-zero).
unsafe extern "C" fn wake_receiver_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  // SAFETY: called by Node-API with the env of this call.
  unsafe { on_channel(raw, info, Channel::wake_receiver) }
}

/// `wakeSenders(channel)`: after the facade freed a message, wakes the
/// senders (it found `sender_sleepers` non-zero).
unsafe extern "C" fn wake_senders_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  // SAFETY: called by Node-API with the env of this call.
  unsafe { on_channel(raw, info, Channel::wake_senders) }
}

fn side(env: &Env, value: sys::napi_value) -> napi::Result<Side> {
  match number(env, value, "side")? {
    0.0 => Ok(Side::Receiver),
    1.0 => Ok(Side::Sender),
    _ => Err(throw_code(
      env,
      Kind::RangeError,
      OUT_OF_RANGE,
      "The value of \"side\" is out of range. It must be 0 or 1",
    )),
  }
}

/// `beginWait(channel, side, length)`: counts in a wait off this thread on
/// `side` (0 receiver, 1 sender of `length` bytes); the value to wait for
/// the sequence word to leave, or `undefined` when there is something to do
/// already.
unsafe extern "C" fn begin_wait_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  // SAFETY: called by Node-API with the env of this call.
  unsafe {
    respond(raw, |env| {
      let [value, side_value, length] = args::<3>(env, info)?;
      let cell = channel(env, value)?;
      let side = side(env, side_value)?;
      let length = number(env, length, "length")?;
      let channel = cell.try_borrow().map_err(|_| busy(env))?;
      Ok(
        channel
          .begin_wait(side, length as usize)
          .map(|(_, seq)| seq),
      )
    })
  }
}

/// `endWait(channel, side)`: counts out a wait that `beginWait` counted in.
unsafe extern "C" fn end_wait_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  // SAFETY: called by Node-API with the env of this call.
  unsafe {
    respond(raw, |env| {
      let [value, side_value] = args::<2>(env, info)?;
      let cell = channel(env, value)?;
      let side = side(env, side_value)?;
      cell.try_borrow().map_err(|_| busy(env))?.end_wait(side);
      Ok(None)
    })
  }
}

/// `close(channel)`: leaves the channel and wakes whoever sleeps on it.
unsafe extern "C" fn close_call(
  raw: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  // SAFETY: called by Node-API with the env of this call.
  unsafe {
    respond(raw, |env| {
      let [value] = args::<1>(env, info)?;
      let cell = channel(env, value)?;
      cell.try_borrow_mut().map_err(|_| busy(env))?.close();
      Ok(None)
    })
  }
}
