// Attach + detach in C, the reference for benchmark/cases/attach.mjs: mmap
// and munmap of an existing segment. Prints {"median": ns, "p99": ns}.
//
//   attach <name> <size> <batch> <samples>

#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "timing.h"

int main(int argc, char **argv) {
  if (argc != 5) return 2;
  size_t size = strtoull(argv[2], 0, 10);
  int batch = atoi(argv[3]), samples = atoi(argv[4]);
  int fd = shm_open(argv[1], O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) { perror("shm_open"); return 1; }
  double *times = malloc(sizeof(double) * samples);
  int warmup = samples / 16 + 1;
  for (int s = -warmup; s < samples; s++) {
    double start = now_ns();
    for (int i = 0; i < batch; i++) {
      char *view = mmap(0, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (view == MAP_FAILED) { perror("mmap"); return 1; }
      munmap(view, size);
    }
    if (s >= 0) times[s] = (now_ns() - start) / batch;
  }
  print_summary(times, samples);
  return 0;
}
