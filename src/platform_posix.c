/* SPDX-License-Identifier: MIT */
/*
 * platform_posix.c - the core's operating-system calls on Unix (see
 * platform.h).
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

int poller__platform_probe(poller__pollfd *pf, int n) {
  int r = poll(pf, (nfds_t)n, 0);
  return r < 0 ? -errno : r;
}

int poller__platform_wait_readable(int fd, int timeout_ms) {
  struct pollfd pf = {fd, POLLIN, 0};
  int r = poll(&pf, 1, timeout_ms);
  return r < 0 ? -errno : r;
}

int poller__platform_fd_open(int fd) {
  /* Only EBADF says "not open": any other failure leaves it to the
   * kernel's own registration call to judge the descriptor. */
  return fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

int poller__platform_dup_above(int fd) {
  int to = fcntl(fd, F_DUPFD_CLOEXEC, fd + 1);
  return to < 0 ? -errno : to;
}

void poller__platform_close(int fd) { close(fd); }

long long poller__platform_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int poller__platform_env_trusted(void) {
  return getuid() == geteuid() && getgid() == getegid();
}

atomic_uint poller__fork_generation;
static pthread_once_t fork_watch_once = PTHREAD_ONCE_INIT;

/* Runs in the child of every fork: the child is single-threaded here, and
 * an atomic increment is async-signal-safe, as a handler that runs after
 * fork in a multithreaded program must be. */
static void fork_child_count(void) {
  atomic_fetch_add_explicit(&poller__fork_generation, 1, memory_order_relaxed);
}

static void fork_watch_install(void) {
  (void)pthread_atfork(NULL, NULL, fork_child_count);
}

void poller__platform_fork_watch(void) {
  (void)pthread_once(&fork_watch_once, fork_watch_install);
}
