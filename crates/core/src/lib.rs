//! NSPR-style named shared memory: open, map, unmap, close and delete a named
//! segment that several processes share, with no JavaScript in sight.
//!
//! ```no_run
//! use named_shm_core::{Access, Name, OpenOptions, Segment};
//!
//! let name = Name::parse("frames")?;
//! let options = OpenOptions { create: true, ..OpenOptions::default() };
//! let segment = Segment::open(&name, 4096, &options)?;
//! let mapping = segment.map(Access::ReadWrite)?;
//! mapping.write_at(0, b"hello")?;
//! Segment::delete(&name)?;
//! # Ok::<(), named_shm_core::Error>(())
//! ```
//!
//! Cross-process synchronization on segment words is in `sync`
//! (`wait`, `notify`), `mutex` (`SharedMutex`) and [`waiter`] (waits that
//! end on a thread of their own, for `waitAsync` and `lockAsync`).
//!
//! The OS work lives in `os/`, one backend per system behind one private
//! interface; everything that can be decided without the OS (names, error
//! codes, size rules) is plain code tested on every platform.

#![deny(clippy::all)]
#![deny(
  missing_docs,
  unsafe_op_in_unsafe_fn,
  clippy::undocumented_unsafe_blocks
)]
// Under `--cfg loom` only the SharedMutex, the sleepers table and their
// models build: the models swap the atomics and the OS futex for loom's (see
// model.rs and wake_table.rs).
#![cfg_attr(loom, allow(dead_code))]

pub mod channel;
mod error;
#[cfg(not(loom))]
mod mapping;
#[cfg(loom)]
mod model;
mod mutex;
#[cfg(not(loom))]
mod name;
#[cfg(not(loom))]
mod os;
#[cfg(all(unix, not(loom)))]
mod overlay;
#[cfg(not(loom))]
mod ranges;
#[cfg(not(loom))]
mod registry;
#[cfg(not(loom))]
mod segment;
#[cfg(not(loom))]
mod sync;
#[cfg(all(test, not(loom)))]
mod test_support;
mod wait_turn;
#[cfg(not(loom))]
pub mod waiter;
#[cfg(any(windows, test))]
mod wake_table;

pub use error::{Error, Result};
#[cfg(not(loom))]
pub use mapping::{Access, Mapping, Pinned};
pub use mutex::{LockOutcome, Owner, SharedMutex, MUTEX_BYTES};
#[cfg(not(loom))]
pub use name::{Name, Namespace, Platform, MAX_NAME_BYTES};
#[cfg(all(unix, not(loom)))]
pub use overlay::Alias;
#[cfg(not(loom))]
pub use ranges::fault_count;
#[cfg(not(loom))]
pub use registry::Place;
#[cfg(not(loom))]
pub use segment::{OpenError, OpenOptions, Ownership, Segment, MAX_SIZE};
#[cfg(not(loom))]
pub use sync::{notify, wait, SharedWord, WaitOutcome};
