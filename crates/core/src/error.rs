//! Errors: OS errors keep their errno and the syscall that failed;
//! the library's own kinds carry the stable codes JavaScript sees.

use std::fmt;

/// A `Result` whose error is [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong, each with a stable [`Error::code`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
  /// The OS refused: `code` is the errno name (`ENOENT`), `errno` its number.
  Os {
    /// The errno name, e.g. `ENOENT`; `UNKNOWN` for numbers without one here.
    code: &'static str,
    /// The OS error number (positive, as the OS reports it).
    errno: i32,
    /// The call that failed, e.g. `shm_open`.
    syscall: &'static str,
    /// The segment's OS name, when the call concerned one.
    name: Option<String>,
    /// More to say than the errno's own text (what was asked, what is free).
    detail: Option<String>,
  },
  /// A name that breaks a naming rule.
  InvalidName {
    /// The name as given.
    name: String,
    /// Which rule it breaks.
    reason: &'static str,
  },
  /// A size that the segment cannot satisfy (`ERR_SHM_SIZE`).
  Size {
    /// The OS name of the segment.
    name: String,
    /// The size asked for.
    requested: u64,
    /// The segment's size.
    actual: u64,
  },
  /// A page of a mapping of ours lay past the end of its segment when
  /// touched: another process shrank the segment, or (rarely) tmpfs had no
  /// page to give (`ERR_SHM_SIZE`).
  Shrunk {
    /// Bytes the mapping holds.
    mapped: u64,
  },
  /// Open-or-create found a segment another user owns
  /// (`ERR_SHM_FOREIGN_OWNER`).
  ForeignOwner {
    /// The OS name of the segment.
    name: String,
    /// Its owner's user id.
    uid: u32,
    /// Its permission bits.
    mode: u32,
  },
  /// An argument outside what the call accepts (`ERR_INVALID_ARG_VALUE`).
  InvalidArgument(String),
  /// A write through a read-only handle (`ERR_SHM_READ_ONLY`).
  ReadOnly,
  /// `SharedMutex::unlock` by a thread that does not hold it (`ERR_SHM_NOT_OWNER`).
  NotOwner,
  /// A blocking `SharedMutex::lock` by the thread that holds it, which
  /// would wait forever (`ERR_SHM_DEADLOCK`).
  Deadlock,
  /// A segment that holds no channel of this layout (`ERR_SHM_NOT_A_CHANNEL`).
  NotAChannel(String),
  /// A channel closed by its receiver, or this end closed (`ERR_SHM_CHANNEL_CLOSED`).
  ChannelClosed(String),
  /// The other side of a channel died without closing (`ERR_SHM_PEER_DIED`).
  PeerDied(String),
  /// Every slot for this role of a channel is taken (`ERR_SHM_CHANNEL_BUSY`).
  ChannelBusy(String),
}

impl Error {
  /// The code JavaScript sees as `error.code`. Codes never change once released.
  pub fn code(&self) -> &'static str {
    match self {
      Error::Os { code, .. } => code,
      Error::InvalidName { .. } | Error::InvalidArgument(_) => "ERR_INVALID_ARG_VALUE",
      Error::Size { .. } | Error::Shrunk { .. } => "ERR_SHM_SIZE",
      Error::ForeignOwner { .. } => "ERR_SHM_FOREIGN_OWNER",
      Error::ReadOnly => "ERR_SHM_READ_ONLY",
      Error::NotOwner => "ERR_SHM_NOT_OWNER",
      Error::Deadlock => "ERR_SHM_DEADLOCK",
      Error::NotAChannel(_) => "ERR_SHM_NOT_A_CHANNEL",
      Error::ChannelClosed(_) => "ERR_SHM_CHANNEL_CLOSED",
      Error::PeerDied(_) => "ERR_SHM_PEER_DIED",
      Error::ChannelBusy(_) => "ERR_SHM_CHANNEL_BUSY",
    }
  }

  /// The errno of an OS error.
  pub fn errno(&self) -> Option<i32> {
    match self {
      Error::Os { errno, .. } => Some(*errno),
      _ => None,
    }
  }

  /// The failed syscall of an OS error.
  pub fn syscall(&self) -> Option<&'static str> {
    match self {
      Error::Os { syscall, .. } => Some(syscall),
      _ => None,
    }
  }

  /// `ENOMEM` for a copy of `bytes` that this process could not allocate.
  /// `ENOMEM` from our own budget of mappings: `held` mappings of segments
  /// against the kernel's `vm.max_map_count` of `limit` per process.
  pub(crate) fn too_many_mappings(held: usize, limit: usize) -> Error {
    Error::Os {
      code: "ENOMEM",
      errno: 12,
      syscall: "mmap",
      name: None,
      detail: Some(format!(
        "this process holds {held} shared memory mappings and vm.max_map_count is {limit}; \
         the rest is kept for the runtime's own memory (detach views you no longer use)"
      )),
    }
  }

  pub(crate) fn out_of_memory(bytes: u64) -> Error {
    Error::Os {
      code: "ENOMEM",
      // ENOMEM is 12 on Linux, macOS and in the MSVC C runtime.
      errno: 12,
      syscall: "malloc",
      name: None,
      detail: Some(format!(
        "cannot allocate {} for the copy",
        human_bytes(bytes)
      )),
    }
  }

  /// Adds the segment's OS name to an OS error.
  pub fn for_name(mut self, segment: &str) -> Error {
    if let Error::Os { name, .. } = &mut self {
      *name = Some(segment.to_owned());
    }
    self
  }

  /// Adds an explanation to an OS error.
  pub(crate) fn with_detail(mut self, text: String) -> Error {
    if let Error::Os { detail, .. } = &mut self {
      *detail = Some(text);
    }
    self
  }
}

impl fmt::Display for Error {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      // Node's fs shape: "ENOENT: no such file or directory, open 'x'".
      Error::Os {
        code,
        errno,
        syscall,
        name,
        detail,
      } => {
        let text = std::io::Error::from_raw_os_error(*errno).to_string();
        let text = text
          .split(" (os error")
          .next()
          .unwrap_or(&text)
          .to_lowercase();
        write!(f, "{code}: {text}, {syscall}")?;
        if let Some(name) = name {
          write!(f, " '{name}'")?;
        }
        if let Some(detail) = detail {
          write!(f, ": {detail}")?;
        }
        Ok(())
      }
      Error::InvalidName { name, reason } => {
        write!(f, "The argument 'name' {reason}. Received {name:?}")
      }
      Error::Size {
        name,
        requested,
        actual,
      } => {
        if *actual == 0 {
          write!(
            f,
            "Segment '{name}' is empty (0 bytes): its creator has not sized it yet, or it is not a shared memory segment"
          )
        } else {
          write!(
            f,
            "Segment '{name}' has {actual} bytes, fewer than the {requested} asked for"
          )
        }
      }
      Error::Shrunk { mapped } => write!(
        f,
        "A page of the {mapped} bytes mapped here could not be read from the segment: \
         another process shrank it (or /dev/shm had no memory for the page); \
         those bytes read as zeros in this process and writes to them are lost \
         (reopen the segment to see its size)"
      ),
      Error::ForeignOwner { name, uid, mode } => write!(
        f,
        "Segment '{name}' exists and belongs to another user (uid {uid}, mode {mode:#o}), \
         who can read, change and shrink it: open-or-create refuses it. Open it without \
         'create' to share it on purpose, or pick another name"
      ),
      Error::InvalidArgument(message) => f.write_str(message),
      Error::ReadOnly => f.write_str("The segment was opened read-only"),
      Error::NotOwner => f.write_str("The mutex is not held by this thread"),
      Error::Deadlock => f.write_str(
        "The mutex is already held by this thread; a blocking lock() would wait forever",
      ),
      Error::NotAChannel(why) => write!(f, "The segment holds no channel: {why}"),
      Error::ChannelClosed(why) => write!(f, "The channel is closed: {why}"),
      Error::PeerDied(who) => write!(f, "The channel's peer died: {who} ended without closing"),
      Error::ChannelBusy(why) => write!(f, "The channel is busy: {why}"),
    }
  }
}

impl std::error::Error for Error {}

/// Maps a Win32 error (GetLastError) to the errno name and number Node
/// shows for it, so that code checking `error.code` works on every platform.
/// A pure function, tested everywhere.
#[cfg_attr(not(windows), allow(dead_code))]
pub(crate) fn windows_error(code: u32, syscall: &'static str) -> Error {
  // (Win32 code, errno name, errno number of the MSVC C runtime)
  const TABLE: &[(u32, &str, i32)] = &[
    (2, "ENOENT", 2),          // ERROR_FILE_NOT_FOUND
    (3, "ENOENT", 2),          // ERROR_PATH_NOT_FOUND
    (4, "EMFILE", 24),         // ERROR_TOO_MANY_OPEN_FILES
    (5, "EACCES", 13),         // ERROR_ACCESS_DENIED
    (8, "ENOMEM", 12),         // ERROR_NOT_ENOUGH_MEMORY
    (14, "ENOMEM", 12),        // ERROR_OUTOFMEMORY
    (87, "EINVAL", 22),        // ERROR_INVALID_PARAMETER
    (112, "ENOSPC", 28),       // ERROR_DISK_FULL
    (123, "EINVAL", 22),       // ERROR_INVALID_NAME
    (161, "EINVAL", 22),       // ERROR_BAD_PATHNAME
    (183, "EEXIST", 17),       // ERROR_ALREADY_EXISTS
    (206, "ENAMETOOLONG", 38), // ERROR_FILENAME_EXCED_RANGE
    (1314, "EPERM", 1),        // ERROR_PRIVILEGE_NOT_HELD (Global\ without the privilege)
    (1450, "ENOMEM", 12),      // ERROR_NO_SYSTEM_RESOURCES
    (1455, "ENOSPC", 28),      // ERROR_COMMITMENT_LIMIT: the paging file is full
  ];
  let (name, errno) = TABLE
    .iter()
    .find(|(known, _, _)| *known == code)
    .map_or(("UNKNOWN", code as i32), |(_, name, errno)| (*name, *errno));
  Error::Os {
    code: name,
    errno,
    syscall,
    name: None,
    detail: None,
  }
}

/// `EAGAIN` from a `wait` where the OS has no shared futex (Windows): every
/// slot of the segment's sleepers table that the word may use holds another
/// word's sleepers (`wake_table.rs`).
#[cfg_attr(not(windows), allow(dead_code))]
pub(crate) fn too_many_sleepers(slots: usize, syscall: &'static str) -> Error {
  Error::Os {
    code: "EAGAIN",
    errno: 11,
    syscall,
    name: None,
    detail: None,
  }
  .with_detail(format!(
    "too many words of this segment have sleepers at once (its table holds {slots})"
  ))
}

/// Formats a byte count for people: `32 MiB`, `4096 bytes`.
pub(crate) fn human_bytes(bytes: u64) -> String {
  const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
  let mut value = bytes as f64;
  let mut unit = None;
  for name in UNITS {
    if value < 1024.0 {
      break;
    }
    value /= 1024.0;
    unit = Some(name);
  }
  match unit {
    None => format!("{bytes} bytes"),
    Some(unit) if value.fract() == 0.0 => format!("{value} {unit}"),
    Some(unit) => format!("{value:.1} {unit}"),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn codes() {
    let os = Error::Os {
      code: "ENOENT",
      errno: 2,
      syscall: "shm_open",
      name: Some("/x".into()),
      detail: None,
    };
    assert_eq!(os.code(), "ENOENT");
    assert_eq!(os.errno(), Some(2));
    assert_eq!(os.syscall(), Some("shm_open"));
    assert_eq!(
      os.to_string(),
      "ENOENT: no such file or directory, shm_open '/x'"
    );
    assert_eq!(Error::ReadOnly.code(), "ERR_SHM_READ_ONLY");
    let size = Error::Size {
      name: "/x".into(),
      requested: 10,
      actual: 4,
    };
    assert_eq!(size.code(), "ERR_SHM_SIZE");
    assert_eq!(
      size.to_string(),
      "Segment '/x' has 4 bytes, fewer than the 10 asked for"
    );
    let name = Error::InvalidName {
      name: "..".into(),
      reason: "must not be '.' or '..'",
    };
    assert_eq!(name.code(), "ERR_INVALID_ARG_VALUE");
    assert_eq!(name.errno(), None);
  }

  #[test]
  fn windows_errors() {
    assert_eq!(windows_error(2, "OpenFileMappingW").code(), "ENOENT");
    assert_eq!(windows_error(183, "CreateFileMappingW").code(), "EEXIST");
    assert_eq!(windows_error(5, "OpenFileMappingW").code(), "EACCES");
    assert_eq!(windows_error(1455, "CreateFileMappingW").code(), "ENOSPC");
    let unknown = windows_error(9999, "MapViewOfFile");
    assert_eq!(unknown.code(), "UNKNOWN");
    assert_eq!(unknown.errno(), Some(9999));
  }

  #[test]
  fn too_many_sleepers_is_eagain() {
    let error = too_many_sleepers(512, "WaitForSingleObject");
    assert_eq!(error.code(), "EAGAIN");
    assert_eq!(error.errno(), Some(11));
    assert!(error.to_string().ends_with(
      "WaitForSingleObject: too many words of this segment have sleepers at once (its table holds 512)"
    ));
  }

  #[test]
  fn out_of_memory() {
    let error = Error::out_of_memory(1 << 40).for_name("/big");
    assert_eq!(error.code(), "ENOMEM");
    assert_eq!(error.errno(), Some(12));
    assert_eq!(
      error.to_string(),
      "ENOMEM: cannot allocate memory, malloc '/big': cannot allocate 1 TiB for the copy"
    );
  }

  #[test]
  fn too_many_mappings() {
    let error = Error::too_many_mappings(61435, 65530).for_name("/x");
    assert_eq!(error.code(), "ENOMEM");
    assert_eq!(error.syscall(), Some("mmap"));
    assert!(error.to_string().starts_with(
      "ENOMEM: cannot allocate memory, mmap '/x': this process holds 61435 shared memory mappings"
    ));
  }

  #[test]
  fn human_sizes() {
    assert_eq!(human_bytes(4096), "4 KiB");
    assert_eq!(human_bytes(100), "100 bytes");
    assert_eq!(human_bytes(32 << 20), "32 MiB");
    assert_eq!(human_bytes(1536 << 10), "1.5 MiB");
  }
}
