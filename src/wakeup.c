/* SPDX-License-Identifier: MIT */
/*
 * wakeup.c - the channel poller_wakeup writes to: an eventfd on Linux (one
 * descriptor, a counter that cannot fill), a non-blocking pipe elsewhere.
 * Both ends are close-on-exec.  Writes are async-signal-safe.  The channel
 * is a flag, not a queue (cpython#74224): the core writes only when no
 * wakeup is pending, so the pipe never fills.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

int poller__wakefd_open(int *rfd, int *wfd) {
#ifdef __linux__
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0)
    return -errno;
  *rfd = *wfd = fd;
  return 0;
#else
  int fds[2];
  if (pipe(fds) < 0)
    return -errno;
  for (int i = 0; i < 2; i++) {
    fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
  }
  *rfd = fds[0];
  *wfd = fds[1];
  return 0;
#endif
}

void poller__wakefd_drain(int rfd) {
  uint64_t buf[8];
  while (read(rfd, buf, sizeof buf) > 0) {
  }
}

void poller__wakefd_signal(int wfd) {
  int saved = errno; /* signal handlers must not change errno */
  uint64_t one = 1;
  ssize_t r;
  do
    r = write(wfd, &one, sizeof one);
  while (r < 0 && errno == EINTR);
  errno = saved;
}
