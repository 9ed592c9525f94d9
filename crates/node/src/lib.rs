//! The Node.js binding of `named-shm-core`: turns JavaScript values into core
//! types and core errors into JavaScript errors, and owns the `ArrayBuffer`s
//! it hands out. Argument shapes are checked by the TypeScript facade.

#![deny(clippy::all)]

mod errors;
mod segment;
mod views;

pub use segment::{delete_segment, os_name_of, NativeOpenOptions, NativeSegment};
