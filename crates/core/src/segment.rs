//! The segment lifecycle: open or create, map, delete.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use std::sync::Arc;

use crate::mapping::{Access, Mapping};
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

/// Who owns a segment, and who else may use it (POSIX systems).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ownership {
  /// The owner's user id. The owner can always read, write, shrink and
  /// chmod the segment, whatever its mode.
  pub uid: u32,
  /// The permission bits (`0o600`, `0o666`, ...).
  pub mode: u32,
}

/// An open named segment. Closing it (drop) leaves its mappings intact.
#[derive(Debug)]
pub struct Segment {
  handle: os::Handle,
  name: Name,
  size: u64,
  read_only: bool,
  created: bool,
  ownership: Option<Ownership>,
}

/// Why [`Segment::open_with`] failed: opening or creating, or the caller's
/// initialization (whose error is handed back as it was).
#[derive(Debug)]
pub enum OpenError<E> {
  /// Opening, creating or publishing the segment failed.
  Open(Error),
  /// The initialization failed; nothing was published.
  Init(E),
}

impl From<OpenError<std::convert::Infallible>> for Error {
  fn from(error: OpenError<std::convert::Infallible>) -> Error {
    match error {
      OpenError::Open(error) => error,
      OpenError::Init(never) => match never {},
    }
  }
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
    let no_init = None::<fn(Arc<Mapping>) -> std::result::Result<(), std::convert::Infallible>>;
    Segment::open_inner(name, size, options, no_init).map_err(Error::from)
  }

  /// As [`Segment::open`], and when this call creates the segment, `init`
  /// runs first with a read-write mapping of it, before any other process
  /// can open it by name; the name is published only after `init` returns
  /// `Ok`. If it returns `Err`, nothing is published and nothing is left
  /// behind. `init` does not run when the segment already exists, and runs
  /// at most once: if another process publishes the name first, this call
  /// opens theirs (`created()` is then `false`) and the segment `init`
  /// filled is dropped.
  ///
  /// # Errors
  /// As [`Segment::open`], in [`OpenError::Open`]; `init`'s own error in
  /// [`OpenError::Init`].
  pub fn open_with<E>(
    name: &Name,
    size: u64,
    options: &OpenOptions,
    init: impl FnOnce(Arc<Mapping>) -> std::result::Result<(), E>,
  ) -> std::result::Result<Segment, OpenError<E>> {
    Segment::open_inner(name, size, options, Some(init))
  }

  fn open_inner<E>(
    name: &Name,
    size: u64,
    options: &OpenOptions,
    init: Option<impl FnOnce(Arc<Mapping>) -> std::result::Result<(), E>>,
  ) -> std::result::Result<Segment, OpenError<E>> {
    check_options(size, options).map_err(OpenError::Open)?;
    if !options.create {
      return Segment::open_existing(name, size, options.read_only).map_err(OpenError::Open);
    }
    let mut creating = Creating::new(name, size, options, init);
    if options.exclusive {
      return creating.create();
    }
    // Open-or-create: another process may create or delete the name between
    // our two calls, so go round until one of them settles it. Only a
    // creator and a deleter racing in lockstep could keep us here; give up
    // with the last error rather than spin forever.
    let mut last = None;
    for _ in 0..OPEN_OR_CREATE_ROUNDS {
      match Segment::open_existing(name, size, options.read_only) {
        Err(error) if error.code() == "ENOENT" => {}
        Ok(segment) => return segment.refuse_foreign_owner().map_err(OpenError::Open),
        Err(error) => return Err(OpenError::Open(error)),
      }
      match creating.create() {
        Err(OpenError::Open(error)) if error.code() == "EEXIST" => last = Some(error),
        other => return other,
      }
    }
    Err(OpenError::Open(
      last
        .unwrap_or_else(|| unreachable!())
        .for_name(name.os_name()),
    ))
  }

  /// Open-or-create found a segment: use it only if this user owns it.
  ///
  /// `create` says "the segment I make or made". One another user made
  /// first (squatting the name) is theirs: its owner can read what we
  /// write, change it under us and shrink it, whatever its mode says. So
  /// open-or-create refuses it with [`Error::ForeignOwner`]; a caller that
  /// means to share another user's segment opens it without `create`.
  fn refuse_foreign_owner(self) -> Result<Segment> {
    match (self.ownership, os::effective_uid()) {
      (Some(ownership), Some(uid)) if ownership.uid != uid => Err(Error::ForeignOwner {
        name: self.name.os_name().to_owned(),
        uid: ownership.uid,
        mode: ownership.mode,
      }),
      _ => Ok(self),
    }
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
    let ownership = os::ownership_of(&handle)?;
    Ok(Segment {
      handle,
      name: name.clone(),
      size: if size == 0 { actual } else { size },
      read_only,
      created: false,
      ownership,
    })
  }

  /// Removes the name (`shm_unlink`). Open handles and mappings keep working.
  ///
  /// # Errors
  /// `ENOENT` when no segment has the name; `EACCES` when this user may not remove it.
  pub fn delete(name: &Name) -> Result<()> {
    os::unlink(name.os_name()).map_err(|e| e.for_name(name.os_name()))
  }

  /// Maps the segment's `size()` bytes. A [`Access::CopyOnWrite`] mapping
  /// comes with a shared read-only alias of the same bytes (two OS
  /// mappings), where its words are waited on.
  ///
  /// # Errors
  /// [`Error::ReadOnly`] for [`Access::ReadWrite`] on a read-only handle;
  /// `ENOMEM` when the address space or `vm.max_map_count` is exhausted;
  /// [`Error::Size`] when another program shrank the segment below `size()`
  /// (mapping it would fault on the missing pages).
  pub fn map(&self, access: Access) -> Result<Arc<Mapping>> {
    if self.read_only && access == Access::ReadWrite {
      return Err(Error::ReadOnly);
    }
    map_handle(&self.handle, &self.name, self.size, access)
  }

  /// The open OS object and what `map` checks first (`overlay.rs`).
  #[cfg(unix)]
  pub(crate) fn parts(&self) -> (&os::Handle, &Name, u64, bool) {
    (&self.handle, &self.name, self.size, self.read_only)
  }

  /// What a fault in a mapping of this segment meant ([`Mapping::was_shrunk`]):
  /// [`Error::Size`] if another process shrank the segment below `size()`,
  /// else `ENOSPC`: tmpfs had no page to give (a segment made with
  /// `reserve: false` on a full `/dev/shm`).
  pub fn fault_error(&self) -> Error {
    match os::size_of(&self.handle) {
      Ok(actual) if actual < self.size => Error::Size {
        name: self.name.os_name().to_owned(),
        requested: self.size,
        actual,
      },
      _ => Error::Os {
        code: "ENOSPC",
        errno: 28,
        syscall: "mmap",
        name: Some(self.name.os_name().to_owned()),
        detail: Some(
          "the system had no memory for a page of the segment (was it created with reserve: false \
           on a full /dev/shm?); those bytes read as zeros in this process and writes to them are lost"
            .into(),
        ),
      },
    }
  }

  /// The segment's name.
  pub fn name(&self) -> &Name {
    &self.name
  }

  /// Bytes this handle maps: the size given, or the segment's when 0 was.
  pub fn size(&self) -> u64 {
    self.size
  }

  /// Who owns the segment and its permission bits, as they were at open;
  /// `None` on Windows.
  pub fn ownership(&self) -> Option<Ownership> {
    self.ownership
  }

  /// Whether the handle was opened for reading only.
  pub fn is_read_only(&self) -> bool {
    self.read_only
  }

  /// Whether the call that opened this handle created the segment (an
  /// exclusive create always did; open-or-create tells which happened).
  pub fn created(&self) -> bool {
    self.created
  }
}

/// The argument rules every open shares.
fn check_options(size: u64, options: &OpenOptions) -> Result<()> {
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
  Ok(())
}

/// Maps `size` bytes of `handle`, the segment `name`.
fn map_handle(handle: &os::Handle, name: &Name, size: u64, access: Access) -> Result<Arc<Mapping>> {
  let needed = if access == Access::CopyOnWrite { 2 } else { 1 };
  let len = mappable_len(handle, name, size, needed)?;
  let map = |access| os::map(handle, len, access).map_err(|e| e.for_name(name.os_name()));
  let ptr = map(access)?;
  let alias = if access == Access::CopyOnWrite {
    match map(Access::ReadOnly) {
      Ok(alias) => Some(alias),
      Err(error) => {
        // SAFETY: mapped just above and not yet handed to anyone.
        unsafe { os::unmap(ptr, len) };
        return Err(error);
      }
    }
  } else {
    None
  };
  Ok(Mapping::new(ptr, len, access, alias))
}

/// What every mapping of `size` bytes of `handle` checks first: the object
/// is that long (else pages past its end would fault), the length fits this
/// process, and `needed` more mappings keep within the budget.
pub(crate) fn mappable_len(
  handle: &os::Handle,
  name: &Name,
  size: u64,
  needed: usize,
) -> Result<usize> {
  let actual = os::size_of(handle)?;
  if actual < size {
    return Err(Error::Size {
      name: name.os_name().to_owned(),
      requested: size,
      actual,
    });
  }
  let len = usize::try_from(size).map_err(|_| {
    Error::InvalidArgument(format!(
      "A segment of {size} bytes does not fit this process's address space"
    ))
  })?;
  if let Some(limit) = os::max_map_count() {
    let held = Mapping::count();
    if held + needed > mapping_budget(limit) {
      return Err(Error::too_many_mappings(held, limit).for_name(name.os_name()));
    }
  }
  Ok(len)
}

/// One creating `open`: the segment it made and initialized, kept across the
/// rounds of open-or-create so that `init` runs at most once per call.
struct Creating<'a, F> {
  name: &'a Name,
  size: u64,
  options: &'a OpenOptions,
  init: Option<F>,
  made: Option<os::Unnamed>,
}

impl<'a, E, F: FnOnce(Arc<Mapping>) -> std::result::Result<(), E>> Creating<'a, F> {
  fn new(name: &'a Name, size: u64, options: &'a OpenOptions, init: Option<F>) -> Self {
    Creating {
      name,
      size,
      options,
      init,
      made: None,
    }
  }

  /// Makes and initializes the segment (once), then publishes it.
  fn create(&mut self) -> std::result::Result<Segment, OpenError<E>> {
    let os_name = self.name.os_name();
    let made = match self.made.take() {
      Some(made) => made,
      None => {
        let options = os::CreateOptions {
          mode: self.options.mode,
          reserve: self.options.reserve,
          for_init: self.init.is_some(),
        };
        let made = os::create_unnamed(os_name, self.size, &options)
          .map_err(|e| OpenError::Open(e.for_name(os_name)))?;
        if let Some(init) = self.init.take() {
          let mapping = map_handle(made.handle(), self.name, self.size, Access::ReadWrite)
            .map_err(OpenError::Open)?;
          // Dropping `made` on failure removes every trace of it.
          init(mapping).map_err(OpenError::Init)?;
        }
        made
      }
    };
    if let Err(error) = os::publish(&made, os_name) {
      let error = error.for_name(os_name);
      if error.code() == "EEXIST" {
        // Someone else's segment has the name: ours may still be published
        // in a later round, should theirs be deleted.
        self.made = Some(made);
      }
      return Err(OpenError::Open(error));
    }
    let handle = made.into_handle();
    let (handle, read_only) = if self.options.read_only {
      // The creator sized it through a writable handle; keep only a read one.
      match os::reopen_read_only(&handle, os_name) {
        Ok(reopened) => (reopened, true),
        Err(error) => {
          // Published but unusable (EACCES for a mode without read, EMFILE):
          // take the name back, or every retry would meet EEXIST.
          os::unlink_created(&handle, os_name);
          return Err(OpenError::Open(error.for_name(os_name)));
        }
      }
    } else {
      (handle, false)
    };
    let ownership = os::ownership_of(&handle).map_err(OpenError::Open)?;
    Ok(Segment {
      handle,
      name: self.name.clone(),
      size: self.size,
      read_only,
      created: true,
      ownership,
    })
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

#[cfg(test)]
mod init_tests {
  use super::*;

  fn name(test: &str) -> Name {
    Name::parse(&format!("named-shm-{test}-{}", std::process::id())).unwrap()
  }

  fn create() -> OpenOptions {
    OpenOptions {
      create: true,
      ..OpenOptions::default()
    }
  }

  #[test]
  fn init_fills_the_segment_before_its_name_appears() {
    let name = name("init-fills");
    let segment = Segment::open_with(&name, 4096, &create(), |mapping| {
      assert_eq!(
        Segment::open(&name, 0, &OpenOptions::default())
          .unwrap_err()
          .code(),
        "ENOENT"
      );
      mapping.write_at(0, b"header").map_err(|_| "write")
    })
    .unwrap();
    assert!(segment.created());
    let opened = Segment::open(&name, 0, &OpenOptions::default()).unwrap();
    assert!(!opened.created());
    let mut bytes = [0u8; 6];
    opened
      .map(Access::ReadOnly)
      .unwrap()
      .read_at(0, &mut bytes)
      .unwrap();
    assert_eq!(&bytes, b"header");
    Segment::delete(&name).unwrap();
  }

  #[test]
  fn a_failed_init_publishes_nothing_and_does_not_run_on_an_existing_segment() {
    let name = name("init-fails");
    let failed = Segment::open_with(&name, 4096, &create(), |_| Err("no"));
    assert!(matches!(failed, Err(OpenError::Init("no"))));
    assert_eq!(
      Segment::open(&name, 0, &OpenOptions::default())
        .unwrap_err()
        .code(),
      "ENOENT"
    );
    let first = Segment::open(&name, 4096, &create()).unwrap();
    assert!(first.created());
    let second = Segment::open_with(&name, 4096, &create(), |_| -> std::result::Result<(), ()> {
      panic!("init ran on an existing segment")
    })
    .unwrap();
    assert!(!second.created());
    Segment::delete(&name).unwrap();
  }

  #[test]
  fn threads_racing_to_create_publish_one_initialized_segment() {
    let name = name("init-race");
    let creators: Vec<_> = (0..4u8)
      .map(|id| {
        let name = name.clone();
        std::thread::spawn(move || {
          let segment = Segment::open_with(&name, 4096, &create(), |mapping| {
            mapping.write_at(0, &[id + 1; 64]).map_err(|_| ())
          })
          .unwrap();
          let mut header = [0u8; 64];
          let mapping = segment.map(Access::ReadOnly).unwrap();
          mapping.read_at(0, &mut header).unwrap();
          (segment.created(), header)
        })
      })
      .collect();
    let results: Vec<_> = creators.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|(created, _)| *created).count(), 1);
    let header = results[0].1;
    assert!(header[0] != 0 && header.iter().all(|&b| b == header[0]));
    assert!(results.iter().all(|(_, seen)| *seen == header));
    Segment::delete(&name).unwrap();
  }
}
