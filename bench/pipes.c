/* SPDX-License-Identifier: MIT */
/*
 * pipes.c - the pipes benchmark, in the manner of libevent's classic
 * bench: N socket pairs, each watched for reading; each iteration writes
 * one byte into A of them spread across the set, and each read callback
 * reads its byte and, while a budget of W writes remains, writes one byte
 * to the next pair, so events cascade.  Every iteration must dispatch
 * exactly A + W reads (checked: a wrong count fails the run).
 *
 * --setup adds, before each iteration, the change of every watcher's
 * interest and its restoration, as each library's API does it.
 *
 * Output: one line per run, "name n variant median_us min_us p90_us
 * reads_per_iter syscalls_per_iter", times per iteration.
 *
 * Usage: pipes --driver NAME[:ARG] [--n N] [--active A] [--writes W]
 *              [--samples S] [--iters I] [--setup]
 *   NAME: poller (ARG: select, poll, epoll, uring), raw-epoll, libev,
 *   libevent, libuv.
 */
#define _GNU_SOURCE
#include "driver.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int npairs = 1000, nactive = 100, nwrites = 100;
static int *rfd, *wfd;
static int writes_left, reads_done, read_errors;

void bench_on_read(int idx) {
  char c;
  if (read(rfd[idx], &c, 1) != 1) {
    read_errors++;
    return;
  }
  reads_done++;
  if (writes_left > 0) {
    writes_left--;
    int next = idx + 1 == npairs ? 0 : idx + 1;
    if (write(wfd[next], "e", 1) != 1)
      read_errors++;
  }
}

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static const struct bench_driver *drv;
static int setup_variant;

/* One iteration; returns 0 when exactly A + W reads were dispatched. */
static int iteration(void) {
  if (setup_variant)
    drv->rewatch();
  writes_left = nwrites;
  reads_done = 0;
  int space = npairs / nactive;
  for (int i = 0; i < nactive; i++)
    if (write(wfd[i * space], "e", 1) != 1)
      return -1;
  int want = nactive + nwrites;
  while (reads_done < want && !read_errors)
    drv->run_once();
  return reads_done == want && !read_errors ? 0 : -1;
}

/* The measured part (callgrind: --toggle-collect=run_samples). */
__attribute__((noinline)) static int run_samples(double *samples, int nsamples,
                                                 int iters) {
  for (int s = 0; s < nsamples; s++) {
    double t0 = now_us();
    for (int i = 0; i < iters; i++)
      if (iteration() < 0)
        return -1;
    samples[s] = (now_us() - t0) / iters;
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *name = "poller:epoll";
  int nsamples = 25, iters = 10;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--driver") && i + 1 < argc)
      name = argv[++i];
    else if (!strcmp(argv[i], "--n") && i + 1 < argc)
      npairs = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--active") && i + 1 < argc)
      nactive = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--writes") && i + 1 < argc)
      nwrites = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--samples") && i + 1 < argc)
      nsamples = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--iters") && i + 1 < argc)
      iters = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--setup"))
      setup_variant = 1;
    else {
      fprintf(stderr, "usage: see the comment at the top of pipes.c\n");
      return 2;
    }
  }
  char base[64], *arg;
  drv = bench_find(name, base, sizeof base, &arg);
  if (!drv) {
    fprintf(stderr, "unknown driver %s\n", base);
    return 2;
  }
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  if ((rlim_t)npairs * 2 + 64 > rl.rlim_cur) {
    printf("%s %d skipped: open-file limit %llu\n", name, npairs,
           (unsigned long long)rl.rlim_cur);
    return 0;
  }
  if (nactive < 1 || nactive > npairs || nsamples < 1 || iters < 1)
    return 2;
  rfd = calloc((size_t)npairs, sizeof *rfd);
  wfd = calloc((size_t)npairs, sizeof *wfd);
  for (int i = 0; i < npairs; i++) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                   sv) < 0) {
      perror("socketpair");
      return 1;
    }
    rfd[i] = sv[0];
    wfd[i] = sv[1];
  }
  if (drv->init(arg) < 0) {
    printf("%s %d skipped: driver unavailable\n", name, npairs);
    return 0;
  }
  if (drv->watch(npairs, rfd) < 0) {
    fprintf(stderr, "%s: watch failed\n", name);
    return 1;
  }
  /* Warm up: first-touch costs are not the library's steady state. */
  if (iteration() < 0 || iteration() < 0) {
    fprintf(stderr, "%s: wrong number of reads in warm-up\n", name);
    return 1;
  }
  long long sys0 = drv->syscalls();
  double *samples = calloc((size_t)nsamples, sizeof *samples);
  if (run_samples(samples, nsamples, iters) < 0) {
    fprintf(stderr, "%s: wrong number of reads (%d, errors %d)\n", name,
            reads_done, read_errors);
    return 1;
  }
  long long sys1 = drv->syscalls();
  qsort(samples, (size_t)nsamples, sizeof *samples, cmp_double);
  double med = samples[nsamples / 2];
  double p90 = samples[(nsamples * 9) / 10 < nsamples ? (nsamples * 9) / 10
                                                      : nsamples - 1];
  double per_iter_sys =
      sys0 < 0 ? -1 : (double)(sys1 - sys0) / ((double)nsamples * iters);
  printf("%s %d %s %.1f %.1f %.1f %d %.1f\n", name, npairs,
         setup_variant ? "setup+run" : "run", med, samples[0], p90,
         nactive + nwrites, per_iter_sys);
  drv->fini();
  for (int i = 0; i < npairs; i++) {
    close(rfd[i]);
    close(wfd[i]);
  }
  free(samples);
  free(rfd);
  free(wfd);
  return 0;
}
