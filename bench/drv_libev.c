/* SPDX-License-Identifier: MIT */
/* drv_libev.c - libev (Debian's libev-dev): one ev_io per fd; the "setup"
 * step is ev_io_stop + ev_io_set + ev_io_start. */
#include "driver.h"

#include <ev.h>
#include <stdlib.h>

static struct ev_loop *loop;
static ev_io *w;
static int nfds;
static const int *fdv;

static void on_io(struct ev_loop *l, ev_io *io, int revents) {
  (void)l;
  (void)revents;
  bench_on_read((int)(io - w));
}

static int drv_init(const char *arg) {
  (void)arg;
  loop = ev_loop_new(EVBACKEND_EPOLL);
  return loop ? 0 : -1;
}

static int drv_watch(int n, const int *fds) {
  nfds = n;
  fdv = fds;
  w = calloc((size_t)n, sizeof *w);
  if (!w)
    return -1;
  for (int i = 0; i < n; i++) {
    ev_io_init(&w[i], on_io, fds[i], EV_READ);
    ev_io_start(loop, &w[i]);
  }
  return 0;
}

static void drv_rewatch(void) {
  for (int i = 0; i < nfds; i++) {
    ev_io_stop(loop, &w[i]);
    ev_io_set(&w[i], fdv[i], EV_READ);
    ev_io_start(loop, &w[i]);
  }
}

static void drv_run_once(void) { ev_run(loop, EVRUN_ONCE); }

static long long drv_syscalls(void) { return -1; }

static void drv_fini(void) {
  for (int i = 0; i < nfds; i++)
    ev_io_stop(loop, &w[i]);
  ev_loop_destroy(loop);
  free(w);
  w = NULL;
}

const struct bench_driver bench_libev = {"libev",      drv_init,
                                         drv_watch,    drv_rewatch,
                                         drv_run_once, drv_syscalls,
                                         drv_fini};
