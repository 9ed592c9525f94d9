/*
 * The physical reference for benchmark/pingpong.mjs: two processes bounce a
 * word in shared memory with raw futex(2) calls (shared, no
 * FUTEX_PRIVATE_FLAG, no spinning), as named-shm's wait/notify with
 * spin: false does. Prints {"p50": ns, "p99": ns} of the round trips.
 * Usage: futex-pingpong ROUNDS WARMUP [PING_CPU PONG_CPU]
 */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void futex_wait(atomic_int *word, int expected) {
  syscall(SYS_futex, word, FUTEX_WAIT, expected, NULL, NULL, 0);
}

static void futex_wake(atomic_int *word) {
  syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Runs this process on `cpu` (a negative one: anywhere). */
static void pin(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);
}

static int by_value(const void *a, const void *b) {
  long long x = *(const long long *)a, y = *(const long long *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc != 3 && argc != 5) return 2;
  int rounds = atoi(argv[1]), warmup = atoi(argv[2]), total = rounds + warmup;
  int ping_cpu = argc == 5 ? atoi(argv[3]) : -1, pong_cpu = argc == 5 ? atoi(argv[4]) : -1;
  atomic_int *word = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  long long *samples = malloc(sizeof(long long) * rounds);
  if (word == MAP_FAILED || samples == NULL) return 1;
  pid_t pong = fork();
  if (pong < 0) return 1;
  if (pong == 0) {
    pin(pong_cpu);
    for (int i = 0; i < total; i++) {
      while (atomic_load(word) != 2 * i + 1) futex_wait(word, 2 * i);
      atomic_store(word, 2 * i + 2);
      futex_wake(word);
    }
    _exit(0);
  }
  pin(ping_cpu);
  for (int i = 0; i < total; i++) {
    long long start = now_ns();
    atomic_store(word, 2 * i + 1);
    futex_wake(word);
    while (atomic_load(word) != 2 * i + 2) futex_wait(word, 2 * i + 1);
    if (i >= warmup) samples[i - warmup] = now_ns() - start;
  }
  waitpid(pong, NULL, 0);
  qsort(samples, rounds, sizeof(long long), by_value);
  printf("{\"p50\": %lld, \"p99\": %lld}\n", samples[rounds / 2], samples[rounds * 99 / 100]);
  return 0;
}
