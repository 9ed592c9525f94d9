//! What the unit tests share: a fresh segment, already deleted by name so a
//! failing test leaves nothing in `/dev/shm`.

use crate::{Name, OpenOptions, Segment};

/// A new 4 KiB segment, unique to `test` and this process, with its name gone.
pub(crate) fn scratch_segment(test: &str) -> Segment {
  let name = Name::parse(&format!("named-shm-{test}-{}", std::process::id())).unwrap();
  let options = OpenOptions {
    create: true,
    exclusive: true,
    ..OpenOptions::default()
  };
  let segment = Segment::open(&name, 4096, &options).unwrap();
  Segment::delete(&name).unwrap();
  segment
}
