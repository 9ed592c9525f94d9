//! Every library error code JavaScript can see (`error.code` besides errno
//! names), in one enum exported to TypeScript: binding.d.ts declares it, and
//! the facade's `LibraryErrorCode` type is its values, so a code cannot be
//! thrown on one side and unknown on the other.

use napi_derive::napi;

/// The library's own error codes. Codes never change once released.
#[napi(string_enum)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
  /// An argument or option has the wrong type.
  ERR_INVALID_ARG_TYPE,
  /// Right type, unacceptable value (an unknown option key among them).
  ERR_INVALID_ARG_VALUE,
  /// A method called on something that is not its class's instance.
  ERR_INVALID_THIS,
  /// `new SharedMemory()`: handles come from `SharedMemory.open()`.
  ERR_ILLEGAL_CONSTRUCTOR,
  /// A size, offset, index or timeout outside its range.
  ERR_OUT_OF_RANGE,
  /// A call on a closed handle.
  ERR_SHM_CLOSED,
  /// A view that is not a live attachment.
  ERR_SHM_NOT_ATTACHED,
  /// The segment is smaller than asked, or shrank under us.
  ERR_SHM_SIZE,
  /// A write or a mutex through something read-only.
  ERR_SHM_READ_ONLY,
  /// Open-or-create found a segment another user owns.
  ERR_SHM_FOREIGN_OWNER,
  /// The runtime forbids external buffers (Electron >= 21) and no in-heap
  /// view is possible either (Windows, no WebAssembly).
  ERR_SHM_EXTERNAL_BUFFERS,
  /// `attach({ inHeap: true })` where in-heap views cannot be made.
  ERR_SHM_IN_HEAP_UNSUPPORTED,
  /// `init` detached or transferred its view.
  ERR_SHM_INIT_DETACHED,
  /// `unlock()` by a thread that does not hold the mutex.
  ERR_SHM_NOT_OWNER,
  /// A blocking `lock()` by the thread that holds the mutex.
  ERR_SHM_DEADLOCK,
  /// An async wait before `initSync()` on this thread (the facade's bug).
  ERR_SHM_SYNC_INIT,
  /// Node-API itself failed (the runtime's bug, or memory exhausted).
  ERR_SHM_NODE_API,
  /// A segment that holds no channel of this layout.
  ERR_SHM_NOT_A_CHANNEL,
  /// A channel closed by its receiver.
  ERR_SHM_CHANNEL_CLOSED,
  /// A second receiver, a 33rd sender, or a channel call re-entered.
  ERR_SHM_CHANNEL_BUSY,
  /// The other side of a channel died without closing.
  ERR_SHM_PEER_DIED,
}

impl ErrorCode {
  /// The code as JavaScript sees it.
  pub const fn as_str(self) -> &'static str {
    match self {
      ErrorCode::ERR_INVALID_ARG_TYPE => "ERR_INVALID_ARG_TYPE",
      ErrorCode::ERR_INVALID_ARG_VALUE => "ERR_INVALID_ARG_VALUE",
      ErrorCode::ERR_INVALID_THIS => "ERR_INVALID_THIS",
      ErrorCode::ERR_ILLEGAL_CONSTRUCTOR => "ERR_ILLEGAL_CONSTRUCTOR",
      ErrorCode::ERR_OUT_OF_RANGE => "ERR_OUT_OF_RANGE",
      ErrorCode::ERR_SHM_CLOSED => "ERR_SHM_CLOSED",
      ErrorCode::ERR_SHM_NOT_ATTACHED => "ERR_SHM_NOT_ATTACHED",
      ErrorCode::ERR_SHM_SIZE => "ERR_SHM_SIZE",
      ErrorCode::ERR_SHM_READ_ONLY => "ERR_SHM_READ_ONLY",
      ErrorCode::ERR_SHM_FOREIGN_OWNER => "ERR_SHM_FOREIGN_OWNER",
      ErrorCode::ERR_SHM_EXTERNAL_BUFFERS => "ERR_SHM_EXTERNAL_BUFFERS",
      ErrorCode::ERR_SHM_IN_HEAP_UNSUPPORTED => "ERR_SHM_IN_HEAP_UNSUPPORTED",
      ErrorCode::ERR_SHM_INIT_DETACHED => "ERR_SHM_INIT_DETACHED",
      ErrorCode::ERR_SHM_NOT_OWNER => "ERR_SHM_NOT_OWNER",
      ErrorCode::ERR_SHM_DEADLOCK => "ERR_SHM_DEADLOCK",
      ErrorCode::ERR_SHM_SYNC_INIT => "ERR_SHM_SYNC_INIT",
      ErrorCode::ERR_SHM_NODE_API => "ERR_SHM_NODE_API",
      ErrorCode::ERR_SHM_NOT_A_CHANNEL => "ERR_SHM_NOT_A_CHANNEL",
      ErrorCode::ERR_SHM_CHANNEL_CLOSED => "ERR_SHM_CHANNEL_CLOSED",
      ErrorCode::ERR_SHM_CHANNEL_BUSY => "ERR_SHM_CHANNEL_BUSY",
      ErrorCode::ERR_SHM_PEER_DIED => "ERR_SHM_PEER_DIED",
    }
  }
}

#[cfg(test)]
mod tests {
  use super::ErrorCode;
  use named_shm_core::Error;

  /// Exhaustive: a new kind of core error fails to compile here until the
  /// test below lists it (and its code is in the table).
  fn listed(error: &Error) {
    match error {
      Error::Os { .. }
      | Error::InvalidName { .. }
      | Error::Size { .. }
      | Error::Shrunk { .. }
      | Error::ForeignOwner { .. }
      | Error::InvalidArgument(_)
      | Error::ReadOnly
      | Error::NotOwner
      | Error::Deadlock
      | Error::NotAChannel(_)
      | Error::ChannelClosed(_)
      | Error::PeerDied(_)
      | Error::ChannelBusy(_) => {}
    }
  }

  /// Every code the core can produce is an errno name or one of ours.
  #[test]
  fn every_core_code_is_in_the_table() {
    let ours = [
      ErrorCode::ERR_INVALID_ARG_TYPE,
      ErrorCode::ERR_INVALID_ARG_VALUE,
      ErrorCode::ERR_INVALID_THIS,
      ErrorCode::ERR_ILLEGAL_CONSTRUCTOR,
      ErrorCode::ERR_OUT_OF_RANGE,
      ErrorCode::ERR_SHM_CLOSED,
      ErrorCode::ERR_SHM_NOT_ATTACHED,
      ErrorCode::ERR_SHM_SIZE,
      ErrorCode::ERR_SHM_READ_ONLY,
      ErrorCode::ERR_SHM_FOREIGN_OWNER,
      ErrorCode::ERR_SHM_EXTERNAL_BUFFERS,
      ErrorCode::ERR_SHM_IN_HEAP_UNSUPPORTED,
      ErrorCode::ERR_SHM_INIT_DETACHED,
      ErrorCode::ERR_SHM_NOT_OWNER,
      ErrorCode::ERR_SHM_DEADLOCK,
      ErrorCode::ERR_SHM_SYNC_INIT,
      ErrorCode::ERR_SHM_NODE_API,
      ErrorCode::ERR_SHM_NOT_A_CHANNEL,
      ErrorCode::ERR_SHM_CHANNEL_CLOSED,
      ErrorCode::ERR_SHM_CHANNEL_BUSY,
      ErrorCode::ERR_SHM_PEER_DIED,
    ];
    let core_errors = [
      Error::InvalidName {
        name: "..".into(),
        reason: "is reserved",
      },
      Error::Size {
        name: "/x".into(),
        requested: 2,
        actual: 1,
      },
      Error::Shrunk { mapped: 1 },
      Error::ForeignOwner {
        name: "/x".into(),
        uid: 1,
        mode: 0o666,
      },
      Error::InvalidArgument("x".into()),
      Error::ReadOnly,
      Error::NotOwner,
      Error::Deadlock,
      Error::NotAChannel("x".into()),
      Error::ChannelClosed("x".into()),
      Error::PeerDied("x".into()),
      Error::ChannelBusy("x".into()),
    ];
    for error in &core_errors {
      listed(error);
    }
    for error in core_errors {
      assert!(
        ours.iter().any(|code| code.as_str() == error.code()),
        "{} is not in ErrorCode",
        error.code()
      );
    }
    for code in ours {
      assert_eq!(format!("{code:?}"), code.as_str());
    }
  }
}
