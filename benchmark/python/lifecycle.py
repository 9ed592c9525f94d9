"""The 4 KiB lifecycle with Python's multiprocessing.shared_memory, for
benchmark/cases/lifecycle.mjs: create, write, close, unlink.
Prints {"median": ns, "p99": ns} per cycle.

    python3 lifecycle.py <name> <size> <batch> <samples> [<warm-up samples>]
"""

import json
import sys
import time
from multiprocessing import shared_memory


def main() -> None:
    name, size, batch, samples = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    source = bytes([7]) * size
    times = []
    warmup = int(sys.argv[5]) if len(sys.argv) > 5 else samples // 16 + 1
    for s in range(-warmup, samples):
        start = time.perf_counter_ns()
        for _ in range(batch):
            shm = shared_memory.SharedMemory(name=name, create=True, size=size)
            shm.buf[:size] = source
            shm.close()
            shm.unlink()
        if s >= 0:
            times.append((time.perf_counter_ns() - start) / batch)
    times.sort()
    print(json.dumps({"median": times[len(times) // 2], "p99": times[len(times) * 99 // 100]}))


if __name__ == "__main__":
    main()
