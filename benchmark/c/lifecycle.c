// The 4 KiB lifecycle in C, the reference for benchmark/cases/lifecycle.mjs:
// shm_open(O_CREAT | O_EXCL), ftruncate, mmap, write, munmap, close,
// shm_unlink. Prints {"median": ns, "p99": ns} per cycle.
//
//   lifecycle <name> <size> <batch> <samples> [<warm-up samples>]

#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "timing.h"

int main(int argc, char **argv) {
  if (argc != 5 && argc != 6) return 2;
  const char *name = argv[1];
  size_t size = strtoul(argv[2], 0, 10);
  int batch = atoi(argv[3]), samples = atoi(argv[4]);
  char *source = malloc(size);
  memset(source, 7, size);
  double *times = malloc(sizeof(double) * samples);
  int warmup = argc == 6 ? atoi(argv[5]) : samples / 16 + 1;
  for (int s = -warmup; s < samples; s++) {
    double start = now_ns();
    for (int i = 0; i < batch; i++) {
      int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
      if (fd < 0 || ftruncate(fd, size) != 0) { perror("shm_open/ftruncate"); return 1; }
      char *view = mmap(0, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (view == MAP_FAILED) { perror("mmap"); return 1; }
      memcpy(view, source, size);
      munmap(view, size);
      close(fd);
      shm_unlink(name);
    }
    if (s >= 0) times[s] = (now_ns() - start) / batch;
  }
  print_summary(times, samples);
  return 0;
}
