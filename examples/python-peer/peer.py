"""The Python side of examples/python-peer: opens the segment Node created,
by name, reads Node's message and writes an answer into the same memory.

    python3 peer.py NAME

Layout (peer.js says the same): at 0 Node's message, at 2048 Python's, each
a little-endian u32 length followed by UTF-8 bytes.
"""

import os
import struct
import sys
from multiprocessing import shared_memory

NODE_MESSAGE = 0
PYTHON_MESSAGE = 2048


def open_untracked(name):
    """Open without Python's resource tracker, which would delete the
    segment when this process exits (the segment is Node's to delete)."""
    try:
        return shared_memory.SharedMemory(name=name, track=False)
    except TypeError:  # Python < 3.13 has no `track`
        from multiprocessing import resource_tracker

        shm = shared_memory.SharedMemory(name=name)
        resource_tracker.unregister(shm._name, "shared_memory")
        return shm


def main():
    shm = open_untracked(sys.argv[1])
    try:
        (length,) = struct.unpack_from("<I", shm.buf, NODE_MESSAGE)
        message = bytes(shm.buf[NODE_MESSAGE + 4 : NODE_MESSAGE + 4 + length]).decode()
        print(f"python read what node wrote: {message}", flush=True)
        answer = f"hello from python {os.getpid()}, who read '{message}'".encode()
        struct.pack_into("<I", shm.buf, PYTHON_MESSAGE, len(answer))
        shm.buf[PYTHON_MESSAGE + 4 : PYTHON_MESSAGE + 4 + len(answer)] = answer
    finally:
        shm.close()


if __name__ == "__main__":
    main()
