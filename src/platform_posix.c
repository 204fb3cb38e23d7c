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
