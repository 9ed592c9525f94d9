//! `Channel`: a ring of variable-size messages in a segment, between any
//! number of senders and one receiver, in any processes.
//!
//! - `layout`: the header and records, byte for byte;
//! - `ring`: the protocol (publish, consume, sleep, wake), apart from
//!   memory and the OS so that loom checks it (`loom_model`);
//! - `peers`: who is attached, and whether they still live;
//! - `endpoint`: [`Channel`], one process's end over a mapping.

#[cfg(not(loom))]
mod endpoint;
pub mod layout;
#[cfg(loom)]
mod loom_model;
#[cfg(not(loom))]
mod peers;
mod ring;
#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(not(loom))]
pub use endpoint::{Channel, Received, Sent, Side};
pub use layout::Geometry;
pub use ring::Message;
