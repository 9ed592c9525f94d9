//! The segment lifecycle of SPEC §1: open or create, map, delete.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::mapping::{live_count, Access, Mapping};
use crate::name::Name;
use crate::os;

/// The largest size JavaScript can express exactly: 2^53 − 1.
pub const MAX_SIZE: u64 = (1 << 53) - 1;

/// How long an opener waits for a segment that another program created but
/// has not sized yet (a creator that calls `shm_open(O_CREAT)` then
/// `ftruncate`, as Python's `multiprocessing.shared_memory` does).
const SIZING_GRACE: Duration = Duration::from_millis(100);

/// How many segment mappings one process may hold under the kernel's
/// `vm.max_map_count`. Reaching the limit itself makes the runtime's own next
/// mmap fail, and V8 aborts on that (seen: `std::bad_alloc`), so a sixteenth
/// is left to it and attach says `ENOMEM` first.
fn mapping_budget(limit: usize) -> usize {
  limit - limit / 16
}

/// How often open-or-create retries when the name flips between present and absent.
const OPEN_OR_CREATE_ROUNDS: usize = 1000;

/// Options of [`Segment::open`], the flags of `PR_OpenSharedMemory`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenOptions {
  /// Create the segment if it does not exist (`PR_SHM_CREATE`).
  pub create: bool,
  /// With `create`, fail with `EEXIST` if it exists (`PR_SHM_EXCL`).
  pub exclusive: bool,
  /// Permission bits of a created segment, masked by the umask.
  pub mode: u32,
  /// Open for reading only; every mapping is then read-only.
  pub read_only: bool,
  /// Reserve the memory when creating, so a full `/dev/shm` fails now.
  pub reserve: bool,
}

impl Default for OpenOptions {
  fn default() -> Self {
    OpenOptions {
      create: false,
      exclusive: false,
      mode: 0o600,
      read_only: false,
      reserve: true,
    }
  }
}

/// An open named segment. Closing it (drop) leaves its mappings intact.
#[derive(Debug)]
pub struct Segment {
  handle: os::Handle,
  name: Name,
  size: u64,
  read_only: bool,
}

impl Segment {
  /// Opens (or creates, per `options`) the segment `name`.
  ///
  /// `size` is the size of a created segment; for an existing one, 0 means
  /// its current size and anything else at most that.
  ///
  /// A created segment appears to other processes only at its full size and
  /// zero-filled; an opener never sees it half made.
  ///
  /// # Errors
  /// `ENOENT` without `create` when it does not exist, `EEXIST` with
  /// `exclusive` when it does, `EACCES` when `mode` forbids this user,
  /// `ENOSPC` when `reserve` finds too little memory, [`Error::Size`] when an
  /// existing segment is smaller than `size`, [`Error::InvalidArgument`] for
  /// `exclusive` without `create`, a created size of 0 or above [`MAX_SIZE`].
  pub fn open(name: &Name, size: u64, options: &OpenOptions) -> Result<Segment> {
    if options.exclusive && !options.create {
      return Err(Error::InvalidArgument(
        "The option 'exclusive' needs 'create'".into(),
      ));
    }
    if size > MAX_SIZE {
      return Err(Error::InvalidArgument(format!(
        "The argument 'size' must be at most 2^53 - 1. Received {size}"
      )));
    }
    if options.create && size == 0 {
      return Err(Error::InvalidArgument(
        "The argument 'size' must be at least 1 to create a segment".into(),
      ));
    }
    if !options.create {
      return Segment::open_existing(name, size, options.read_only);
    }
    if options.exclusive {
      return Segment::create_new(name, size, options);
    }
    // Open-or-create: another process may create or delete the name between
    // our two calls, so go round until one of them settles it. Only a
    // creator and a deleter racing in lockstep could keep us here; give up
    // with the last error rather than spin forever.
    let mut last = None;
    for _ in 0..OPEN_OR_CREATE_ROUNDS {
      match Segment::open_existing(name, size, options.read_only) {
        Err(error) if error.code() == "ENOENT" => {}
        other => return other,
      }
      match Segment::create_new(name, size, options) {
        Err(error) if error.code() == "EEXIST" => last = Some(error),
        other => return other,
      }
    }
    Err(
      last
        .unwrap_or_else(|| unreachable!())
        .for_name(name.os_name()),
    )
  }

  fn create_new(name: &Name, size: u64, options: &OpenOptions) -> Result<Segment> {
    let handle = os::create(name.os_name(), size, options.mode, options.reserve)
      .map_err(|e| e.for_name(name.os_name()))?;
    let (handle, read_only) = if options.read_only {
      // The creator sized it through a writable handle; keep only a read one.
      let reopened =
        os::reopen_read_only(&handle, name.os_name()).map_err(|e| e.for_name(name.os_name()))?;
      (reopened, true)
    } else {
      (handle, false)
    };
    Ok(Segment {
      handle,
      name: name.clone(),
      size,
      read_only,
    })
  }

  fn open_existing(name: &Name, size: u64, read_only: bool) -> Result<Segment> {
    let handle = os::open(name.os_name(), read_only).map_err(|e| e.for_name(name.os_name()))?;
    let actual = wait_until_sized(&handle)?;
    if actual == 0 || size > actual {
      return Err(Error::Size {
        name: name.os_name().to_owned(),
        requested: size,
        actual,
      });
    }
    Ok(Segment {
      handle,
      name: name.clone(),
      size: if size == 0 { actual } else { size },
      read_only,
    })
  }

  /// Removes the name (`shm_unlink`). Open handles and mappings keep working.
  ///
  /// # Errors
  /// `ENOENT` when no segment has the name; `EACCES` when this user may not remove it.
  pub fn delete(name: &Name) -> Result<()> {
    os::unlink(name.os_name()).map_err(|e| e.for_name(name.os_name()))
  }

  /// Maps the segment's `size()` bytes.
  ///
  /// # Errors
  /// [`Error::ReadOnly`] for [`Access::ReadWrite`] on a read-only handle;
  /// `ENOMEM` when the address space or `vm.max_map_count` is exhausted;
  /// [`Error::Size`] when another program shrank the segment below `size()`
  /// (mapping it would fault on the missing pages).
  pub fn map(&self, access: Access) -> Result<Mapping> {
    let len = self.mappable_len(access)?;
    let ptr = os::map(&self.handle, len, access).map_err(|e| e.for_name(self.name.os_name()))?;
    Ok(Mapping::new(ptr, len, access))
  }

  /// The checks every mapping of the segment passes first; returns its length.
  pub(crate) fn mappable_len(&self, access: Access) -> Result<usize> {
    if self.read_only && access == Access::ReadWrite {
      return Err(Error::ReadOnly);
    }
    let actual = os::size_of(&self.handle)?;
    if actual < self.size {
      return Err(Error::Size {
        name: self.name.os_name().to_owned(),
        requested: self.size,
        actual,
      });
    }
    let len = usize::try_from(self.size).map_err(|_| {
      Error::InvalidArgument(format!(
        "A segment of {} bytes does not fit this process's address space",
        self.size
      ))
    })?;
    if let Some(limit) = os::max_map_count() {
      let held = live_count();
      if held >= mapping_budget(limit) {
        return Err(Error::too_many_mappings(held, limit).for_name(self.name.os_name()));
      }
    }
    Ok(len)
  }

  /// The open OS object.
  #[cfg(unix)]
  pub(crate) fn handle(&self) -> &os::Handle {
    &self.handle
  }

  /// The segment's name.
  pub fn name(&self) -> &Name {
    &self.name
  }

  /// Bytes this handle maps: the size given, or the segment's when 0 was.
  pub fn size(&self) -> u64 {
    self.size
  }

  /// Whether the handle was opened for reading only.
  pub fn is_read_only(&self) -> bool {
    self.read_only
  }
}

/// Returns the segment's size, waiting up to [`SIZING_GRACE`] while it is 0.
fn wait_until_sized(handle: &os::Handle) -> Result<u64> {
  let deadline = Instant::now() + SIZING_GRACE;
  let mut pause = Duration::from_micros(50);
  loop {
    let size = os::size_of(handle)?;
    if size > 0 || Instant::now() >= deadline {
      return Ok(size);
    }
    std::thread::sleep(pause);
    pause = (pause * 2).min(Duration::from_millis(10));
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn mapping_budget_leaves_the_runtime_a_sixteenth() {
    assert_eq!(mapping_budget(65530), 61435);
    assert_eq!(mapping_budget(16), 15);
    assert_eq!(mapping_budget(0), 0);
  }
}
