"""A Python receiver for a named-shm Channel (docs/channel-layout.md).

    python3 consumer.py <name> [count]

Opens the channel's segment in /dev/shm, claims the receiver slot, prints
each message it receives (as text) and stops at `count` messages or when the
stream ends. While the ring is empty it sleeps on the channel's futex word,
counted in `receiver_sleepers` as a Node receiver is, so the sender wakes it
and an idle receiver costs no CPU.

Linux only (/dev/shm and the futex system call), x86-64 and arm64. The full
fences the layout asks for come from libatomic (GCC's runtime: `libatomic1`
on Debian and Ubuntu, `libatomic` on Alpine and Fedora).
"""

import ctypes
import mmap
import os
import struct
import sys
import threading

MAGIC, VERSION, HEADER = 0x4843534E, 2, 512
FLAGS, CLOSED_WORD, HEAD, DATA_SEQ, RECEIVER_SLEEPERS = 20, 24, 64, 72, 76
TAIL, SPACE_SEQ, SENDER_SLEEPERS, RECEIVER, SENDERS = 128, 136, 140, 144, 256
KIND_MESSAGE, KIND_WRAP, CLOSED = 1, 2, 2**64 - 1
FLAG_SENDER_SEEN = 1

libc = ctypes.CDLL(None, use_errno=True)
SYS_FUTEX = {"x86_64": 202, "aarch64": 98}.get(os.uname().machine)
if sys.platform != "linux" or SYS_FUTEX is None:
    raise OSError("consumer.py runs on Linux x86-64 and arm64 (it sleeps with the futex system call)")
FUTEX_WAIT, FUTEX_WAKE, EVERYONE = 0, 1, 2**31 - 1
try:
    # C11's atomic_thread_fence: what Rust's fence() compiles to.
    fence = ctypes.CDLL("libatomic.so.1").atomic_thread_fence
except OSError as error:
    raise OSError("consumer.py needs libatomic.so.1 (apt install libatomic1, or apk add libatomic)") from error
ACQUIRE, RELEASE, SEQ_CST = 2, 3, 5  # memory_order values


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


# The longest sleep: a sender that died between publishing and waking costs
# a second, not forever.
SLEEP_AT_MOST = Timespec(1, 0)


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

    def futex(self, offset, op, value, timeout=None):
        word = ctypes.c_void_p(self.base + offset)
        libc.syscall(SYS_FUTEX, word, op, ctypes.c_uint32(value), timeout, None, 0)

    def wake_senders(self):
        """Step 4 of receiving: wake the senders that sleep for space, if any."""
        fence(SEQ_CST)  # between the store of tail (or the stamp) and this load
        if self.ints[SENDER_SLEEPERS // 4]:
            self.ints[SPACE_SEQ // 4] = (self.ints[SPACE_SEQ // 4] + 1) & 0xFFFFFFFF
            self.futex(SPACE_SEQ, FUTEX_WAKE, EVERYONE)

    def sleep(self, tail):
        """Sleeps on data_seq while nothing comes after `tail` (at most a second)."""
        self.ints[RECEIVER_SLEEPERS // 4] += 1  # only the receiver writes it
        fence(SEQ_CST)  # a sender that stores head after this sees us counted
        seq = self.ints[DATA_SEQ // 4]
        if self.words[HEAD // 8] == tail:
            self.futex(DATA_SEQ, FUTEX_WAIT, seq, ctypes.byref(SLEEP_AT_MOST))
        self.ints[RECEIVER_SLEEPERS // 4] -= 1

    def ended(self, tail):
        """Every sender that came has left, and the ring is drained."""
        if not self.ints[FLAGS // 4] & FLAG_SENDER_SEEN:
            return False
        return not any(self.words[SENDERS // 8 + i] for i in range(32)) and self.words[HEAD // 8] == tail

    def receive(self):
        """The next message as bytes, None at the end of the stream (sleeps while empty)."""
        while True:
            tail, head = self.words[TAIL // 8], self.words[HEAD // 8]
            if tail != head:
                break
            if self.ended(tail):
                return None
            self.sleep(tail)
        fence(ACQUIRE)  # the record after head; a no-op on x86-64, needed on arm64
        at = tail % self.capacity
        length, kind = struct.unpack_from("<2I", self.mm, HEADER + at)
        if kind == KIND_WRAP:
            tail += self.capacity - at
            at = 0
            length, kind = struct.unpack_from("<2I", self.mm, HEADER)
        following = tail + 8 + (length + 7) // 8 * 8
        if kind != KIND_MESSAGE or length > self.max_message or 8 + length > self.capacity - at or following > head:
            raise ValueError("corrupt record")
        payload = bytes(self.mm[HEADER + at + 8 : HEADER + at + 8 + length])
        fence(RELEASE)  # the payload is read before senders may reuse its bytes
        self.words[TAIL // 8] = following
        self.wake_senders()
        return payload

    def close(self):
        self.ints[CLOSED_WORD // 4] = 1  # what senders look at on every send
        self.words[RECEIVER // 8] = CLOSED
        self.wake_senders()  # a sender asleep for space sees the channel closed
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
