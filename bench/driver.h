/* SPDX-License-Identifier: MIT */
/*
 * driver.h - the interface every benchmark driver implements: one small
 * file per event library (poller on each backend, a hand-written epoll
 * loop, libev, libevent, libuv).
 *
 * The benchmark owns the descriptors; a driver watches them for reading
 * and calls bench_on_read(idx) from its loop for each ready one.
 */
#ifndef BENCH_DRIVER_H
#define BENCH_DRIVER_H

#include <stdio.h>
#include <string.h>

struct bench_driver {
  const char *name;
  /* Prepares the library (arg: e.g. the poller backend name). Returns 0,
   * or -1 when the driver cannot run here (reported as skipped). */
  int (*init)(const char *arg);
  /* Watches fds[0..n) for reading; index i is passed back. */
  int (*watch)(int n, const int *fds);
  /* The "setup" part of a round: every watcher's interest changed and
   * restored (or removed and re-added), the way the library's own API
   * does it. */
  void (*rewatch)(void);
  /* One loop iteration: waits for and dispatches ready watchers. */
  void (*run_once)(void);
  /* System calls the library made, when it can tell (else -1). */
  long long (*syscalls)(void);
  void (*fini)(void);
};

/* Called by drivers for each readable fd. */
void bench_on_read(int idx);

extern const struct bench_driver bench_poller, bench_raw_epoll, bench_libev,
    bench_libevent, bench_libuv, bench_raw_uring;

/* Finds the driver named by spec ("NAME" or "NAME:ARG") among those this
 * executable was built with, and points *arg at ARG (NULL without one).
 * Each peer library is linked into its own executable: Debian's libev
 * also exports libevent's API names (its event.h emulation), so libev and
 * libevent cannot share one binary. */
static inline const struct bench_driver *bench_find(const char *spec,
                                                    char *buf, size_t len,
                                                    char **arg) {
  const struct bench_driver *all[] = {
#ifdef BENCH_POLLER
      &bench_poller, &bench_raw_epoll,
#endif
#ifdef BENCH_RAW_URING
      &bench_raw_uring,
#endif
#ifdef BENCH_LIBEV
      &bench_libev,
#endif
#ifdef BENCH_LIBEVENT
      &bench_libevent,
#endif
#ifdef BENCH_LIBUV
      &bench_libuv,
#endif
  };
  snprintf(buf, len, "%s", spec);
  *arg = strchr(buf, ':');
  if (*arg)
    *(*arg)++ = '\0';
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    if (!strcmp(all[i]->name, buf))
      return all[i];
  return NULL;
}

#endif
