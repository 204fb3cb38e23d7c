/* SPDX-License-Identifier: MIT */
/*
 * backends.c - the preference-ordered table of backends built in.
 *
 * POLLER_AUTO tries them in this order, skipping those that
 * poller__auto_eligible refuses: io_uring is opened only when the caller or
 * the environment variable POLLER_BACKEND names it (poller.h).  bench/
 * RESULTS.md measures both, and io_uring's poll requests cost more per
 * event than epoll on the kernels we measured (as in liburing#189).
 * The build defines POLLER_HAVE_<NAME> for each backend it compiles.
 */
#include "internal.h"

#include <stddef.h>

const struct poller__backend *const poller__backends[] = {
#ifdef POLLER_HAVE_AFD
    &poller__backend_afd, /* Windows: O(ready), before select */
#endif
#ifdef POLLER_HAVE_EPOLL
    &poller__backend_epoll,
#endif
#ifdef POLLER_HAVE_KQUEUE
    &poller__backend_kqueue,
#endif
#ifdef POLLER_HAVE_URING
    &poller__backend_uring,
#endif
#ifndef _WIN32
    &poller__backend_poll, /* Windows has no poll(2) for sockets it trusts */
#endif
    &poller__backend_select,
    NULL,
};

const struct poller__backend *poller__backend_find(enum poller_backend b) {
  for (int i = 0; poller__backends[i]; i++)
    if (poller__backends[i]->id == b)
      return poller__backends[i];
  return NULL;
}

int poller__auto_eligible(const struct poller__backend *be) {
  /* io_uring only when asked for (poller.h, README): its poll requests
   * cost more per re-armed event than epoll, and it is the backend that
   * seccomp filters and sysctls refuse most often. */
  return be->id != POLLER_URING;
}
