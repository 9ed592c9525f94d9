//! Segment names and the names the operating systems use for them.
//!
//! Everything here is a pure function of the name and the target platform, so
//! the rules for every platform are unit-tested on any one of them.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The longest name accepted, in UTF-8 bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// `PSHMNAMLEN` on macOS: a POSIX shared memory name, leading `/` included,
/// is at most 31 bytes (`xnu/bsd/kern/posix_shm.c`).
const MACOS_MAX_OS_NAME: usize = 31;

/// `NAME_MAX` on Linux: `/dev/shm/<name>` is one directory entry.
const LINUX_MAX_COMPONENT: usize = 255;

/// Readable bytes of the original name kept in a hashed form.
const HASHED_PREFIX_BYTES: usize = 9;
/// Hex digits of SHA-256 kept in a hashed form (80 bits).
const HASHED_DIGEST_HEX: usize = 20;

/// The platform whose naming rules apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
  /// Linux and other POSIX systems whose `shm_open` names are file names.
  Linux,
  /// macOS: POSIX names of at most 31 bytes.
  MacOs,
  /// Windows: named file mappings in the `Local\` or `Global\` namespace.
  Windows,
}

impl Platform {
  /// The platform this crate was compiled for.
  pub const fn current() -> Platform {
    if cfg!(windows) {
      Platform::Windows
    } else if cfg!(target_vendor = "apple") {
      Platform::MacOs
    } else {
      Platform::Linux
    }
  }
}

/// Windows kernel object namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Namespace {
  /// `Local\`: the caller's session (the default).
  Local,
  /// `Global\`: every session; creating needs `SeCreateGlobalPrivilege`.
  Global,
}

/// A validated segment name and the form the OS knows it by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name {
  given: String,
  os_name: String,
  hashed: bool,
}

impl Name {
  /// Validates `given` and maps it for the current platform.
  ///
  /// # Errors
  /// [`Error::InvalidName`] when `given` is empty, longer than 255 UTF-8 bytes,
  /// contains NUL, or is `/`, `.` or `..` (with or without a leading `/`).
  pub fn parse(given: &str) -> Result<Name> {
    Name::parse_for(given, Platform::current(), Namespace::Local)
  }

  /// Like [`Name::parse`], in the Windows namespace `namespace` (ignored elsewhere).
  ///
  /// # Errors
  /// As [`Name::parse`].
  pub fn parse_in(given: &str, namespace: Namespace) -> Result<Name> {
    Name::parse_for(given, Platform::current(), namespace)
  }

  /// Validates `given` and maps it with the rules of `platform`.
  ///
  /// # Errors
  /// As [`Name::parse`].
  pub fn parse_for(given: &str, platform: Platform, namespace: Namespace) -> Result<Name> {
    let invalid = |reason| Error::InvalidName {
      name: given.to_owned(),
      reason,
    };
    if given.is_empty() {
      return Err(invalid("must not be empty"));
    }
    if given.len() > MAX_NAME_BYTES {
      return Err(invalid("must be at most 255 UTF-8 bytes"));
    }
    if given.contains('\0') {
      return Err(invalid("must not contain NUL"));
    }
    let (os_name, hashed) = match platform {
      Platform::Linux | Platform::MacOs => {
        let key = posix_key(given);
        check_key(key).map_err(invalid)?;
        let limit = if platform == Platform::MacOs {
          MACOS_MAX_OS_NAME - 1
        } else {
          LINUX_MAX_COMPONENT
        };
        if key.contains('/') || key.len() > limit {
          (format!("/{}", hashed_key(key)), true)
        } else {
          (format!("/{key}"), false)
        }
      }
      Platform::Windows => {
        let (key, namespace) = windows_key(given, namespace);
        check_key(key).map_err(invalid)?;
        let prefix = match namespace {
          Namespace::Local => "Local\\",
          Namespace::Global => "Global\\",
        };
        // A kernel object name may hold any character but `\`, which
        // separates the namespace (CreateFileMappingW, "lpName").
        if key.contains('\\') {
          (format!("{prefix}{}", hashed_key(key)), true)
        } else {
          (format!("{prefix}{key}"), false)
        }
      }
    };
    Ok(Name {
      given: given.to_owned(),
      os_name,
      hashed,
    })
  }

  /// The name as the caller gave it.
  pub fn as_str(&self) -> &str {
    &self.given
  }

  /// The name the OS uses: `/frames` for `shm_open`, `Local\frames` on Windows.
  pub fn os_name(&self) -> &str {
    &self.os_name
  }

  /// Whether [`Name::os_name`] is a hashed form rather than the name itself.
  pub fn is_hashed(&self) -> bool {
    self.hashed
  }
}

/// `'/a'` and `'a'` are one segment: drop one leading `/`.
fn posix_key(given: &str) -> &str {
  given.strip_prefix('/').unwrap_or(given)
}

/// On Windows a `Global\` or `Local\` prefix in the name picks the namespace.
fn windows_key(given: &str, default: Namespace) -> (&str, Namespace) {
  if let Some(rest) = given.strip_prefix("Global\\") {
    (rest, Namespace::Global)
  } else if let Some(rest) = given.strip_prefix("Local\\") {
    (rest, Namespace::Local)
  } else {
    (posix_key(given), default)
  }
}

fn check_key(key: &str) -> std::result::Result<(), &'static str> {
  match key {
    "" => Err("must name something besides '/'"),
    "." | ".." => Err("must not be '.' or '..'"),
    _ => Ok(()),
  }
}

/// The hashed form: up to 9 readable bytes of the name, a dot, and 80 bits of
/// SHA-256 in hex, 30 bytes at most, so that with its `/` it fits macOS too.
/// The same name hashes to the same form on every platform.
fn hashed_key(key: &str) -> String {
  let mut readable: String = key
    .chars()
    .map(|c| {
      if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
        c
      } else {
        '_'
      }
    })
    .take(HASHED_PREFIX_BYTES)
    .collect();
  if readable.is_empty() {
    readable.push('_');
  }
  let digest = Sha256::digest(key.as_bytes());
  let hex: String = digest
    .iter()
    .flat_map(|byte| [byte >> 4, byte & 0xf])
    .take(HASHED_DIGEST_HEX)
    .map(|nibble| char::from_digit(u32::from(nibble), 16).unwrap_or('0'))
    .collect();
  format!("{readable}.{hex}")
}

#[cfg(test)]
mod tests {
  use super::*;

  fn os(given: &str, platform: Platform) -> String {
    Name::parse_for(given, platform, Namespace::Local)
      .unwrap()
      .os_name()
      .to_owned()
  }

  fn reason(given: &str, platform: Platform) -> &'static str {
    match Name::parse_for(given, platform, Namespace::Local) {
      Err(Error::InvalidName { reason, .. }) => reason,
      other => panic!("{given:?} on {platform:?}: expected InvalidName, got {other:?}"),
    }
  }

  const ALL: [Platform; 3] = [Platform::Linux, Platform::MacOs, Platform::Windows];

  #[test]
  fn identity_on_posix() {
    assert_eq!(os("frames", Platform::Linux), "/frames");
    assert_eq!(os("/frames", Platform::Linux), "/frames");
    assert_eq!(os("frames", Platform::MacOs), "/frames");
    assert!(
      !Name::parse_for("frames", Platform::Linux, Namespace::Local)
        .unwrap()
        .is_hashed()
    );
  }

  #[test]
  fn identity_on_windows() {
    assert_eq!(os("frames", Platform::Windows), "Local\\frames");
    assert_eq!(os("/frames", Platform::Windows), "Local\\frames");
    // `/` is an ordinary character in a kernel object name.
    assert_eq!(os("/tmp/app.shm", Platform::Windows), "Local\\tmp/app.shm");
  }

  #[test]
  fn windows_namespaces() {
    assert_eq!(os("Global\\frames", Platform::Windows), "Global\\frames");
    assert_eq!(os("Local\\frames", Platform::Windows), "Local\\frames");
    let global = Name::parse_for("frames", Platform::Windows, Namespace::Global).unwrap();
    assert_eq!(global.os_name(), "Global\\frames");
    let hashed = os("a\\b", Platform::Windows);
    assert!(hashed.starts_with("Local\\a_b."), "{hashed}");
    assert_eq!(
      reason("Global\\", Platform::Windows),
      "must name something besides '/'"
    );
  }

  #[test]
  fn inner_slash_is_hashed_on_posix() {
    for platform in [Platform::Linux, Platform::MacOs] {
      let name = os("/tmp/app.shm", platform);
      assert!(name.starts_with("/tmp_app_s."), "{name}");
      assert_eq!(name.len(), 1 + 9 + 1 + 20);
      assert!(!name[1..].contains('/'));
      // A leading slash does not change the segment.
      assert_eq!(os("tmp/app.shm", platform), name);
    }
  }

  #[test]
  fn hashed_form_is_the_same_on_every_posix_platform() {
    assert_eq!(os("a/b", Platform::Linux), os("a/b", Platform::MacOs));
    assert_ne!(os("a/b", Platform::Linux), os("a/c", Platform::Linux));
    assert_ne!(os("a/b", Platform::Linux), os("a_b", Platform::Linux));
  }

  #[test]
  fn hashing_is_deterministic() {
    // Pinned: changing the hash would strand every segment made before.
    assert_eq!(os("a/b", Platform::Linux), "/a_b.c14cddc033f64b9dea80");
  }

  #[test]
  fn macos_length_limit() {
    let thirty = "x".repeat(30);
    assert_eq!(os(&thirty, Platform::MacOs), format!("/{thirty}"));
    let thirty_one = "x".repeat(31);
    let hashed = os(&thirty_one, Platform::MacOs);
    assert!(hashed.len() <= 31, "{hashed}");
    assert!(hashed.starts_with("/xxxxxxxxx."));
    // Linux keeps it as it is.
    assert_eq!(os(&thirty_one, Platform::Linux), format!("/{thirty_one}"));
  }

  #[test]
  fn longest_names() {
    let max = "n".repeat(255);
    for platform in ALL {
      let name = Name::parse_for(&max, platform, Namespace::Local).unwrap();
      assert_eq!(name.as_str(), max);
    }
    assert_eq!(os(&max, Platform::Linux), format!("/{max}"));
    let too_long = "n".repeat(256);
    for platform in ALL {
      assert_eq!(
        reason(&too_long, platform),
        "must be at most 255 UTF-8 bytes"
      );
    }
    // 64 four-byte characters are 256 bytes.
    assert_eq!(
      reason(&"😀".repeat(64), Platform::Linux),
      "must be at most 255 UTF-8 bytes"
    );
  }

  #[test]
  fn multibyte_names_hash_to_ascii() {
    let name = os("😀/😀", Platform::MacOs);
    assert!(name.is_ascii(), "{name}");
    assert_eq!(os("😀", Platform::Linux), "/😀");
  }

  #[test]
  fn invalid_names() {
    for platform in ALL {
      assert_eq!(reason("", platform), "must not be empty");
      assert_eq!(reason("/", platform), "must name something besides '/'");
      assert_eq!(reason(".", platform), "must not be '.' or '..'");
      assert_eq!(reason("..", platform), "must not be '.' or '..'");
      assert_eq!(reason("/..", platform), "must not be '.' or '..'");
      assert_eq!(reason("a\0b", platform), "must not contain NUL");
    }
  }

  #[test]
  fn double_slash_is_an_inner_slash() {
    let name = os("//a", Platform::Linux);
    assert_ne!(name, "/a");
    assert!(name.starts_with("/_a."), "{name}");
  }
}
