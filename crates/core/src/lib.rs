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

pub mod channel;
mod error;
mod mapping;
mod mutex;
mod name;
mod os;
mod ranges;
mod registry;
mod segment;
mod sync;
#[cfg(test)]
mod test_support;
pub mod waiter;

pub use error::{Error, Result};
pub use mapping::{Access, Mapping, Pinned};
pub use mutex::{LockOutcome, Owner, SharedMutex, MUTEX_BYTES};
pub use name::{Name, Namespace, Platform, MAX_NAME_BYTES};
pub use registry::Place;
pub use segment::{OpenError, OpenOptions, Ownership, Segment, MAX_SIZE};
pub use sync::{notify, wait, SharedWord, WaitOutcome};
