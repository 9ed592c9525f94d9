//! The Node.js binding of `named-shm-core`: turns JavaScript values into core
//! types and core errors into JavaScript errors, and owns the `ArrayBuffer`s
//! it hands out. Argument shapes are checked by the TypeScript facade.

#![deny(clippy::all)]

mod builtins;
mod channel;
mod codes;
mod copied_init;
mod errors;
mod handles;
mod hot;
mod in_heap;
mod outcome;
mod segment;
mod segment_calls;
mod shared_buffers;
mod sync;
mod views;
mod words;

pub use builtins::take_builtins;
pub use channel::{
  channel_calls, channel_header, channel_layout, channel_max_message, ChannelLayout, ChannelOutcome,
};
pub use codes::ErrorCode;
pub use hot::sync_calls;
pub use in_heap::{zero_copy, ZeroCopy};
pub use outcome::SyncOutcome;
pub use segment::os_name_of;
pub use segment_calls::segment_calls;
pub use shared_buffers::fault_counter;
pub use sync::{
  cancel_wait, check_mutex, init_sync, keep_alive, lock_mutex_async, pending_waits,
  wait_word_async, waiter_threads,
};
