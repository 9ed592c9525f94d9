"""A Python receiver for a named-shm Channel (docs/channel-layout.md).

    python3 consumer.py <name> [count]

Opens the channel's segment in /dev/shm, claims the receiver slot, prints
each message it receives (as text) and stops at `count` messages or when the
stream ends. Linux; polling, with a futex wake for senders that sleep.
"""

import ctypes
import mmap
import os
import struct
import sys
import threading
import time

MAGIC, VERSION, HEADER = 0x4843534E, 2, 512
CLOSED_WORD, HEAD, DATA_SEQ, TAIL, SPACE_SEQ, SENDER_SLEEPERS, RECEIVER, SENDERS = 24, 64, 72, 128, 136, 140, 144, 256
KIND_MESSAGE, KIND_WRAP, CLOSED = 1, 2, 2**64 - 1
FLAG_SENDER_SEEN = 1

libc = ctypes.CDLL(None, use_errno=True)
SYS_futex, FUTEX_WAKE = 202 if os.uname().machine == "x86_64" else 98, 1


class ChannelReceiver:
    def __init__(self, name):
        with open("/dev/shm/" + name.lstrip("/"), "r+b") as file:
            self.mm = mmap.mmap(file.fileno(), 0)
        magic, version, self.capacity, self.max_message = struct.unpack_from("<4I", self.mm, 0)
        if magic != MAGIC or version != VERSION:
            raise ValueError(f"not a channel of layout version {VERSION}")
        self.words = memoryview(self.mm).cast("Q")  # aligned 8-byte loads and stores
        self.ints = memoryview(self.mm).cast("I")
        # A stamp with a zero high half: never judged dead by the others.
        if self.words[RECEIVER // 8] != 0:
            raise RuntimeError("the channel already has a receiver")
        self.words[RECEIVER // 8] = threading.get_native_id()
        self.base = ctypes.addressof(ctypes.c_char.from_buffer(self.mm))

    def receive(self):
        """The next message as bytes, None at the end of the stream (polls while empty)."""
        while True:
            tail, head = self.words[TAIL // 8], self.words[HEAD // 8]
            if tail != head:
                break
            if self.ints[20 // 4] & FLAG_SENDER_SEEN and not any(self.words[SENDERS // 8 + i] for i in range(32)):
                if self.words[HEAD // 8] == tail:
                    return None
            time.sleep(0.0005)
        at = tail % self.capacity
        length, kind = struct.unpack_from("<2I", self.mm, HEADER + at)
        if kind == KIND_WRAP:
            tail += self.capacity - at
            at = 0
            length, kind = struct.unpack_from("<2I", self.mm, HEADER)
        if kind != KIND_MESSAGE or length > self.max_message or 8 + length > self.capacity - at:
            raise ValueError("corrupt record")
        payload = bytes(self.mm[HEADER + at + 8 : HEADER + at + 8 + length])
        self.words[TAIL // 8] = tail + 8 + (length + 7) // 8 * 8
        if self.ints[SENDER_SLEEPERS // 4]:
            self.ints[SPACE_SEQ // 4] = (self.ints[SPACE_SEQ // 4] + 1) & 0xFFFFFFFF
            libc.syscall(SYS_futex, ctypes.c_void_p(self.base + SPACE_SEQ), FUTEX_WAKE, 2**31 - 1, None, None, 0)
        return payload

    def close(self):
        self.ints[CLOSED_WORD // 4] = 1  # what senders look at on every send
        self.words[RECEIVER // 8] = CLOSED
        del self.words, self.ints
        self.mm.close()


if __name__ == "__main__":
    channel = ChannelReceiver(sys.argv[1])
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else None
    received = 0
    while limit is None or received < limit:
        message = channel.receive()
        if message is None:
            break
        print(message.decode())
        received += 1
    print(f"received {received}")
    channel.close()
