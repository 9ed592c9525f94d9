//! The channel over real mappings, with threads standing in for processes
//! (the ava suite does it with processes).

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::*;
use crate::error::Error;
use crate::mapping::{Access, Mapping};
use crate::{Name, OpenOptions, Segment};

/// A fresh segment of `bytes`, its name already gone, mapped once per end.
fn mappings(tag: &str, bytes: usize, count: usize) -> Vec<Arc<Mapping>> {
  let name = Name::parse(&format!("named-shm-channel-{tag}-{}", std::process::id())).unwrap();
  let options = OpenOptions {
    create: true,
    exclusive: true,
    ..OpenOptions::default()
  };
  let segment = Segment::open(&name, bytes as u64, &options).unwrap();
  Segment::delete(&name).unwrap();
  (0..count)
    .map(|_| segment.map(Access::ReadWrite).unwrap())
    .collect()
}

fn send(channel: &mut Channel, bytes: &[u8]) -> Result<Sent, Error> {
  // SAFETY: `bytes` lives for the call.
  unsafe {
    channel.send(
      bytes.as_ptr(),
      bytes.len(),
      Some(Duration::from_secs(10)),
      true,
      false,
    )
  }
}

fn receive(channel: &mut Channel) -> Result<Option<Vec<u8>>, Error> {
  match channel.receive(Some(Duration::from_secs(10)), true, false)? {
    Received::Message(message) => {
      let payload = channel.copy_payload(&message)?;
      channel.release(&message)?;
      Ok(Some(payload))
    }
    Received::Ended => Ok(None),
    Received::TimedOut => panic!("timed out"),
  }
}

/// Message `n` of sender `from`: its size varies, its bytes say who and which.
fn message(from: u8, n: u32, max: usize) -> Vec<u8> {
  let len = (n as usize * 7919 + from as usize * 13) % (max + 1);
  let mut bytes = vec![from; len];
  for (i, byte) in n
    .to_le_bytes()
    .iter()
    .enumerate()
    .take(len.saturating_sub(1))
  {
    bytes[i + 1] = *byte;
  }
  bytes
}

#[test]
fn messages_arrive_in_order_across_wraps_and_full_rings() {
  let geometry = Geometry::new(256, 100).unwrap();
  let maps = mappings("order", geometry.segment_bytes(), 2);
  let mut receiver = Channel::create(&maps[0], geometry).unwrap();
  let mut sender = Channel::attach(&maps[1]).unwrap();
  assert_eq!(sender.geometry(), geometry);
  const COUNT: u32 = 20_000;
  let producer = thread::spawn(move || {
    for n in 0..COUNT {
      assert_eq!(send(&mut sender, &message(1, n, 100)).unwrap(), Sent::Sent);
    }
    sender.close();
  });
  for n in 0..COUNT {
    assert_eq!(receive(&mut receiver).unwrap().unwrap(), message(1, n, 100));
  }
  assert_eq!(receive(&mut receiver).unwrap(), None);
  producer.join().unwrap();
}

#[test]
fn four_senders_interleave_but_each_keeps_its_order() {
  let geometry = Geometry::new(4096, 500).unwrap();
  let maps = mappings("four", geometry.segment_bytes(), 5);
  let mut receiver = Channel::create(&maps[0], geometry).unwrap();
  // Claim every sender slot before any can close and end the stream.
  let senders: Vec<_> = (1..=4u8)
    .map(|from| {
      let mut channel = Channel::attach(&maps[from as usize]).unwrap();
      send(&mut channel, &[from]).unwrap();
      (from, channel)
    })
    .collect();
  const COUNT: u32 = 5_000;
  let threads: Vec<_> = senders
    .into_iter()
    .map(|(from, mut channel)| {
      thread::spawn(move || {
        for n in 0..COUNT {
          send(&mut channel, &message(from, n, 500)).unwrap();
        }
      })
    })
    .collect();
  let mut next = [0u32; 5];
  let mut firsts = 0;
  while let Some(bytes) = receive(&mut receiver).unwrap() {
    if bytes.len() == 1 && next[bytes[0] as usize] == 0 && firsts < 4 {
      firsts += 1;
      continue;
    }
    let from = if bytes.is_empty() {
      0
    } else {
      bytes[0] as usize
    };
    // Empty messages carry no sender: find whose next one is empty.
    let from = if from == 0 {
      (1..=4)
        .find(|&f| next[f] < COUNT && message(f as u8, next[f], 500).is_empty())
        .unwrap()
    } else {
      from
    };
    assert_eq!(bytes, message(from as u8, next[from], 500));
    next[from] += 1;
  }
  for thread in threads {
    thread.join().unwrap();
  }
  assert_eq!(&next[1..], &[COUNT; 4]);
}

#[test]
fn closing_and_codes() {
  let geometry = Geometry::new(64, 24).unwrap();
  let maps = mappings("codes", geometry.segment_bytes(), 3);
  let mut receiver = Channel::create(&maps[0], geometry).unwrap();
  let mut sender = Channel::attach(&maps[1]).unwrap();
  let too_big = [0u8; 25];
  assert_eq!(
    send(&mut sender, &too_big).unwrap_err().code(),
    "ERR_INVALID_ARG_VALUE"
  );
  assert_eq!(
    receiver
      .receive(Some(Duration::ZERO), false, false)
      .unwrap(),
    Received::TimedOut
  );
  // A second receiver is refused while the first lives.
  let mut other = Channel::attach(&maps[2]).unwrap();
  assert_eq!(
    other
      .receive(Some(Duration::ZERO), false, false)
      .unwrap_err()
      .code(),
    "ERR_SHM_CHANNEL_BUSY"
  );
  // Two records of 32 bytes fill it; a third times out.
  assert_eq!(send(&mut sender, &[1; 24]).unwrap(), Sent::Sent);
  assert_eq!(send(&mut sender, &[1; 24]).unwrap(), Sent::Sent);
  // SAFETY: a live array.
  let full = unsafe {
    sender.send(
      [2u8; 24].as_ptr(),
      24,
      Some(Duration::from_millis(20)),
      true,
      false,
    )
  };
  assert_eq!(full.unwrap(), Sent::TimedOut);
  receiver.close();
  assert_eq!(
    send(&mut sender, &[3]).unwrap_err().code(),
    "ERR_SHM_CHANNEL_CLOSED"
  );
  assert_eq!(
    other.receive(None, false, false).unwrap_err().code(),
    "ERR_SHM_CHANNEL_CLOSED"
  );
  sender.close();
  assert_eq!(
    send(&mut sender, &[3]).unwrap_err().code(),
    "ERR_SHM_CHANNEL_CLOSED"
  );
}

#[test]
fn a_sender_thread_that_dies_is_detected() {
  let geometry = Geometry::new(1024, 100).unwrap();
  let maps = mappings("died", geometry.segment_bytes(), 2);
  let mut receiver = Channel::create(&maps[0], geometry).unwrap();
  let theirs = Arc::clone(&maps[1]);
  thread::spawn(move || {
    let mut sender = Channel::attach(&theirs).unwrap();
    send(&mut sender, b"last words").unwrap();
    // Never closed: the thread ends as if killed.
    std::mem::forget(sender);
  })
  .join()
  .unwrap();
  assert_eq!(receive(&mut receiver).unwrap().unwrap(), b"last words");
  // The thread id is retired a moment after join returns.
  let error = match receiver.receive(Some(Duration::from_secs(10)), false, true) {
    Err(error) => error,
    Ok(other) => panic!("the dead sender was never noticed: {other:?}"),
  };
  assert_eq!(error.code(), "ERR_SHM_PEER_DIED");
}

#[test]
fn foreign_segments_are_refused() {
  let maps = mappings("foreign", 4096, 1);
  maps[0].write_at(0, b"not a channel at all").unwrap();
  assert_eq!(
    Channel::attach(&maps[0]).unwrap_err().code(),
    "ERR_SHM_NOT_A_CHANNEL"
  );
  let small = mappings("small", 100, 1);
  assert_eq!(
    Channel::attach(&small[0]).unwrap_err().code(),
    "ERR_SHM_NOT_A_CHANNEL"
  );
  // A header that claims more than the segment holds.
  let geometry = Geometry::new(4096, 100).unwrap();
  let maps = mappings("claims", geometry.segment_bytes(), 1);
  drop(Channel::create(&maps[0], geometry).unwrap());
  maps[0].write_at(8, &(1u32 << 20).to_le_bytes()).unwrap();
  assert_eq!(
    Channel::attach(&maps[0]).unwrap_err().code(),
    "ERR_SHM_NOT_A_CHANNEL"
  );
  // A corrupt record is an error, never a read out of bounds.
  let maps = mappings("corrupt", geometry.segment_bytes(), 1);
  let mut channel = Channel::create(&maps[0], geometry).unwrap();
  send(&mut channel, b"fine").unwrap();
  maps[0]
    .write_at(layout::HEADER_BYTES, &u32::MAX.to_le_bytes())
    .unwrap();
  assert_eq!(
    channel
      .receive(Some(Duration::ZERO), false, false)
      .unwrap_err()
      .code(),
    "ERR_SHM_NOT_A_CHANNEL"
  );
}

#[test]
fn a_header_written_as_bytes_is_a_channel() {
  let geometry = Geometry::new(1024, 100).unwrap();
  let maps = mappings("bytes", geometry.segment_bytes(), 2);
  maps[0].write_at(0, &geometry.header_start()).unwrap();
  assert_eq!(Channel::attach(&maps[1]).unwrap().geometry(), geometry);
}

#[test]
fn geometry_bounds() {
  assert!(Geometry::new(63, 8).is_err());
  assert!(Geometry::new(100, 8).is_err());
  assert_eq!(Geometry::max_message_for(4096), 2040);
  assert!(Geometry::new(4096, 2040).is_ok());
  assert!(Geometry::new(4096, 2041).is_err());
}
