/* SPDX-License-Identifier: MIT */
/* drv_libevent.c - libevent 2.1 (Debian's libevent-dev): one persistent
 * read event per fd; the "setup" step is event_del + event_add. */
#include "driver.h"

#include <event2/event.h>
#include <stdint.h>
#include <stdlib.h>

static struct event_base *base;
static struct event **ev;
static int nfds;

static void on_ev(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  bench_on_read((int)(intptr_t)arg);
}

static int drv_init(const char *arg) {
  (void)arg;
  base = event_base_new();
  return base ? 0 : -1;
}

static int drv_watch(int n, const int *fds) {
  nfds = n;
  ev = calloc((size_t)n, sizeof *ev);
  if (!ev)
    return -1;
  for (int i = 0; i < n; i++) {
    ev[i] = event_new(base, fds[i], EV_READ | EV_PERSIST, on_ev,
                      (void *)(intptr_t)i);
    if (!ev[i] || event_add(ev[i], NULL) < 0)
      return -1;
  }
  return 0;
}

static void drv_rewatch(void) {
  for (int i = 0; i < nfds; i++) {
    event_del(ev[i]);
    event_add(ev[i], NULL);
  }
}

static void drv_run_once(void) { event_base_loop(base, EVLOOP_ONCE); }

static long long drv_syscalls(void) { return -1; }

static void drv_fini(void) {
  for (int i = 0; i < nfds; i++)
    event_free(ev[i]);
  free(ev);
  event_base_free(base);
}

const struct bench_driver bench_libevent = {"libevent",   drv_init,
                                            drv_watch,    drv_rewatch,
                                            drv_run_once, drv_syscalls,
                                            drv_fini};
