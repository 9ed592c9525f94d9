// What the C reference programs share: a monotonic clock in nanoseconds and
// the one summary line every benchmark case reads, {"median": ns, "p99": ns}.

#ifndef NAMED_SHM_BENCH_TIMING_H
#define NAMED_SHM_BENCH_TIMING_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/** Sorts the `count` samples in place and prints their median and p99. */
static void print_summary(double *samples, int count) {
  qsort(samples, count, sizeof(double), compare_doubles);
  printf("{\"median\": %.1f, \"p99\": %.1f}\n", samples[count / 2], samples[count * 99 / 100]);
}

#endif
