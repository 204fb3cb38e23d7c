/* SPDX-License-Identifier: MIT */
/* drv_raw_epoll.c - the floor: a hand-written epoll loop with the index in
 * data.u32 and no bookkeeping.  Its "setup" step is EPOLL_CTL_DEL + ADD
 * per watcher, what a program without a change queue does. */
#include "driver.h"

#include <sys/epoll.h>
#include <unistd.h>

static int epfd = -1;
static int nfds;
static const int *fdv;
static struct epoll_event events[512];
static long long calls;

static int drv_init(const char *arg) {
  (void)arg;
  epfd = epoll_create1(EPOLL_CLOEXEC);
  return epfd < 0 ? -1 : 0;
}

static int drv_watch(int n, const int *fds) {
  nfds = n;
  fdv = fds;
  for (int i = 0; i < n; i++) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    calls++;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fds[i], &ev) < 0)
      return -1;
  }
  return 0;
}

static void drv_rewatch(void) {
  for (int i = 0; i < nfds; i++) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    epoll_ctl(epfd, EPOLL_CTL_DEL, fdv[i], &ev);
    epoll_ctl(epfd, EPOLL_CTL_ADD, fdv[i], &ev);
    calls += 2;
  }
}

static void drv_run_once(void) {
  calls++;
  int n = epoll_wait(epfd, events, 512, -1);
  for (int i = 0; i < n; i++)
    bench_on_read((int)events[i].data.u32);
}

static long long drv_syscalls(void) { return calls; }

static void drv_fini(void) {
  close(epfd);
  epfd = -1;
  calls = 0;
}

const struct bench_driver bench_raw_epoll = {"raw-epoll",  drv_init,
                                             drv_watch,    drv_rewatch,
                                             drv_run_once, drv_syscalls,
                                             drv_fini};
