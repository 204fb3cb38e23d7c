/* SPDX-License-Identifier: MIT */
/* drv_poller.c - poller's core API: poller_wait and a dispatch through the
 * data pointer.  The "setup" step is poller_mod to another mask and back,
 * which poller's change queue turns into no system call at all. */
#include "driver.h"

#include "poller.h"

#include <stdint.h>
#include <stdlib.h>

static poller *p;
static int nfds;
static const int *fdv;
static poller_event events[512];

static int drv_init(const char *arg) {
  int b = arg ? poller_backend_from_name(arg) : POLLER_AUTO;
  if (b < 0)
    return -1;
  return poller_open(&p, (enum poller_backend)b) == 0 ? 0 : -1;
}

static int drv_watch(int n, const int *fds) {
  nfds = n;
  fdv = fds;
  for (int i = 0; i < n; i++)
    if (poller_add(p, fds[i], POLLER_IN, (void *)(intptr_t)i) < 0)
      return -1;
  return 0;
}

static void drv_rewatch(void) {
  for (int i = 0; i < nfds; i++) {
    poller_mod(p, fdv[i], POLLER_IN | POLLER_OUT, (void *)(intptr_t)i);
    poller_mod(p, fdv[i], POLLER_IN, (void *)(intptr_t)i);
  }
}

static void drv_run_once(void) {
  int n = poller_wait(p, events, 512, -1);
  for (int i = 0; i < n; i++)
    bench_on_read((int)(intptr_t)events[i].data);
}

static long long drv_syscalls(void) {
  poller_stats st;
  poller_stats_get(p, &st);
  return (long long)st.syscalls;
}

static void drv_fini(void) {
  poller_close(p);
  p = NULL;
}

const struct bench_driver bench_poller = {"poller",     drv_init,
                                          drv_watch,    drv_rewatch,
                                          drv_run_once, drv_syscalls,
                                          drv_fini};
