// Bulk transfer between two processes in C, the reference for
// benchmark/cases/bulk.mjs: the producer fills a private chunk and copies it
// into a shared segment, the consumer copies it out into a private buffer;
// a futex word hands each chunk over and back. Prints {"median": ns,
// "p99": ns} per chunk round.
//
//   bulk <name> <chunk bytes> <chunks>

#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "timing.h"

static void await_value(_Atomic int *word, int value) {
  int seen;
  while ((seen = atomic_load(word)) != value) syscall(SYS_futex, word, FUTEX_WAIT, seen, 0, 0, 0);
}

static void set_value(_Atomic int *word, int value) {
  atomic_store(word, value);
  syscall(SYS_futex, word, FUTEX_WAKE, 1, 0, 0, 0);
}

int main(int argc, char **argv) {
  if (argc != 4) return 2;
  size_t chunk = strtoull(argv[2], 0, 10);
  int chunks = atoi(argv[3]), warmup = 2;
  int fd = shm_open(argv[1], O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0 || ftruncate(fd, chunk + 4096) != 0) { perror("shm_open"); return 1; }
  shm_unlink(argv[1]);
  char *segment = mmap(0, chunk + 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (segment == MAP_FAILED) { perror("mmap"); return 1; }
  _Atomic int *word = (_Atomic int *)segment;
  char *data = segment + 4096;
  char *own = malloc(chunk);
  memset(own, 0, chunk);
  pid_t consumer = fork();
  if (consumer == 0) {
    for (int i = 0; i < chunks + warmup; i++) {
      await_value(word, 2 * i + 1);
      memcpy(own, data, chunk);
      set_value(word, 2 * i + 2);
    }
    return 0;
  }
  double *times = malloc(sizeof(double) * chunks);
  for (int i = 0; i < chunks + warmup; i++) {
    double start = now_ns();
    memset(own, i, chunk);
    memcpy(data, own, chunk);
    set_value(word, 2 * i + 1);
    await_value(word, 2 * i + 2);
    if (i >= warmup) times[i - warmup] = now_ns() - start;
  }
  waitpid(consumer, 0, 0);
  print_summary(times, chunks);
  return 0;
}
