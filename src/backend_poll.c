/* SPDX-License-Identifier: MIT */
/*
 * backend_poll.c - poll(2), every Unix.
 *
 * A dense array of struct pollfd, one per watched fd; e->bidx is the fd's
 * index in it, and removal swaps the last entry into the hole (as smol-rs
 * polling does), so add, change and remove are O(1) and the array stays
 * packed for the kernel.  A wait is O(registered fds), as poll(2) is.
 *
 * poll(2) is level-triggered only.  The core emulates ONESHOT (by removing
 * the fd after a report) and ET (by reporting transitions; see poller.c).
 * When more fds are ready than the caller's buffer holds, the scan starts
 * where the previous one stopped, so no fd starves (test wait_partial_harvest).
 * A registered fd closed behind poller's back comes back as POLLNVAL,
 * which the core reports once as ERR|NVAL and then disarms.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>

struct poll_state {
  struct pollfd *set;
  int n, cap;
  int next; /* where the next scan starts */
};

/* The public bits are poll(2)'s own (poller.h): masks pass through both
 * ways with no translation.  POLLRDHUP is Linux's; elsewhere the bit is
 * never set in a report and means nothing to the kernel in a request. */
_Static_assert(POLLER_IN == POLLIN && POLLER_PRI == POLLPRI &&
                   POLLER_OUT == POLLOUT && POLLER_ERR == POLLERR &&
                   POLLER_HUP == POLLHUP && POLLER_NVAL == POLLNVAL,
               "the POLLER_* bits must equal the POLL* bits");
#ifdef POLLRDHUP
_Static_assert(POLLER_RDHUP == POLLRDHUP, "POLLER_RDHUP must be POLLRDHUP");
#define POLL_ASKABLE (POLLER_IN | POLLER_PRI | POLLER_OUT | POLLER_RDHUP)
#else
#define POLL_ASKABLE (POLLER_IN | POLLER_PRI | POLLER_OUT)
#endif

short poller__to_pollbits(unsigned events) {
  return (short)(events & POLL_ASKABLE);
}

unsigned poller__from_pollbits(short revents) {
  return (unsigned)(unsigned short)revents &
         (POLL_ASKABLE | POLLER_ERR | POLLER_HUP | POLLER_NVAL);
}

static int poll_probe(void) { return 0; }

static int poll_init(poller *p) {
  struct poll_state *s = calloc(1, sizeof *s);
  if (!s)
    return -ENOMEM;
  p->bstate = s;
  return 0;
}

static void poll_fini(poller *p) {
  struct poll_state *s = p->bstate;
  if (!s)
    return;
  free(s->set);
  free(s);
  p->bstate = NULL;
}

static int poll_ctl(poller *p, int fd, struct poller__fd *e, unsigned have,
                    unsigned want, int rearm) {
  struct poll_state *s = p->bstate;
  (void)rearm;
  if (!want) {
    if (!have)
      return 0;
    int i = e->bidx;
    s->n--;
    if (i != s->n) {
      s->set[i] = s->set[s->n];
      p->fds[s->set[i].fd].bidx = i;
    }
    e->bidx = -1;
    return 0;
  }
  if (!have) {
    if (s->n == s->cap) {
      int cap = s->cap ? s->cap * 2 : 64;
      struct pollfd *set = realloc(s->set, (size_t)cap * sizeof *set);
      if (!set)
        return -ENOMEM;
      s->set = set;
      s->cap = cap;
    }
    e->bidx = s->n++;
    s->set[e->bidx].fd = fd;
    s->set[e->bidx].revents = 0;
  }
  s->set[e->bidx].events = poller__to_pollbits(want);
  return 0;
}

static int poll_wait(poller *p, poller_event *out, int max, int timeout_ms) {
  struct poll_state *s = p->bstate;
  p->stats.syscalls++;
  int ready = poll(s->set, (nfds_t)s->n, timeout_ms);
  if (ready < 0)
    return -errno;
  int k = 0;
  if (ready == 0 || s->n == 0)
    return 0;
  int start = s->next < s->n ? s->next : 0;
  int i = start;
  do {
    if (s->set[i].revents) {
      if (k == max) {
        s->next = i; /* the next wait starts with the first one left out */
        return k;
      }
      out[k].fd = s->set[i].fd;
      out[k].events = poller__from_pollbits(s->set[i].revents);
      out[k].gen = 0;
      out[k].data = NULL;
      k++;
    }
    if (++i == s->n)
      i = 0;
  } while (i != start);
  s->next = i;
  return k;
}

static int poll_reinit(poller *p) {
  /* No kernel object: the core re-adds every fd after this. */
  struct poll_state *s = p->bstate;
  s->n = 0;
  s->next = 0;
  return 0;
}

const struct poller__backend poller__backend_poll = {
    .id = POLLER_POLL,
    .name = "poll",
    .caps = 0,
    .probe = poll_probe,
    .init = poll_init,
    .fini = poll_fini,
    .ctl = poll_ctl,
    .wait = poll_wait,
    .fd = NULL,
    .reinit = poll_reinit,
};
