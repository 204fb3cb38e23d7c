/* SPDX-License-Identifier: MIT */
/*
 * backend_select.c - select(2), every Unix.
 *
 * fd_set is a fixed bitmap of FD_SETSIZE (1024 on glibc) bits; FD_SET past
 * it writes outside the object (CVE-2026-39457, mbedtls#4169,
 * pupnp#423).  This backend never uses a fixed fd_set: it keeps its own
 * bit arrays, grown to the highest fd, and hands them to select(2) cast as
 * fd_set, which the kernel accepts for any nfds up to the open-file limit
 * (as libev and libevent do).  Bits are set and tested by our own macros,
 * not FD_SET/FD_ISSET, whose fortified versions abort past FD_SETSIZE.
 *
 * select(2) cannot tell a hang-up from readability, nor report POLLER_HUP,
 * POLLER_RDHUP or POLLER_ERR as such: a closed peer or a pending error
 * makes the fd readable (and writable).  POLLER_PRI maps to the exception
 * set.  Level-triggered only; the core emulates ET and ONESHOT.  A wait is
 * O(highest fd).  When select fails with EBADF (a registered fd was closed
 * behind poller's back), the closed fds are found with fcntl and reported
 * as ERR|NVAL, which the core reports once and disarms.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>

typedef unsigned long word_t;
#define WORD_BITS (8 * sizeof(word_t))
#define BIT_WORD(fd) ((size_t)(fd) / WORD_BITS)
#define BIT_MASK(fd) ((word_t)1 << ((size_t)(fd) % WORD_BITS))

enum { SET_R, SET_W, SET_X, NSETS };

struct select_state {
  word_t *want[NSETS]; /* interest, one bit per fd */
  word_t *got[NSETS];  /* working copies handed to select(2) */
  size_t words;        /* words in each array */
  int *fds;            /* the watched fds, dense; e->bidx indexes it */
  int n, cap;
  int next; /* where the next scan starts (fairness) */
};

static int select_probe(void) { return 0; }

static int select_init(poller *p) {
  struct select_state *s = calloc(1, sizeof *s);
  if (!s)
    return -ENOMEM;
  p->bstate = s;
  return 0;
}

static void select_fini(poller *p) {
  struct select_state *s = p->bstate;
  if (!s)
    return;
  for (int i = 0; i < NSETS; i++) {
    free(s->want[i]);
    free(s->got[i]);
  }
  free(s->fds);
  free(s);
  p->bstate = NULL;
}

static int grow_sets(struct select_state *s, int fd) {
  size_t need = BIT_WORD(fd) + 1;
  if (need <= s->words)
    return 0;
  size_t words = s->words ? s->words : 16;
  while (words < need)
    words *= 2;
  for (int i = 0; i < NSETS; i++) {
    word_t *w = realloc(s->want[i], words * sizeof *w);
    if (!w)
      return -ENOMEM;
    memset(w + s->words, 0, (words - s->words) * sizeof *w);
    s->want[i] = w;
    word_t *g = realloc(s->got[i], words * sizeof *g);
    if (!g)
      return -ENOMEM;
    s->got[i] = g;
  }
  s->words = words;
  return 0;
}

static void set_bit(word_t *set, int fd, int on) {
  if (on)
    set[BIT_WORD(fd)] |= BIT_MASK(fd);
  else
    set[BIT_WORD(fd)] &= ~BIT_MASK(fd);
}

static int select_ctl(poller *p, int fd, struct poller__fd *e, unsigned have,
                      unsigned want, int rearm) {
  struct select_state *s = p->bstate;
  (void)rearm;
  if (!want) {
    if (!have)
      return 0;
    for (int i = 0; i < NSETS; i++)
      set_bit(s->want[i], fd, 0);
    int i = e->bidx;
    s->n--;
    if (i != s->n) {
      s->fds[i] = s->fds[s->n];
      p->fds[s->fds[i]].bidx = i;
    }
    e->bidx = -1;
    return 0;
  }
  if (!have) {
    int r = grow_sets(s, fd);
    if (r < 0)
      return r;
    if (s->n == s->cap) {
      int cap = s->cap ? s->cap * 2 : 64;
      int *fds = realloc(s->fds, (size_t)cap * sizeof *fds);
      if (!fds)
        return -ENOMEM;
      s->fds = fds;
      s->cap = cap;
    }
    e->bidx = s->n;
    s->fds[s->n++] = fd;
  }
  set_bit(s->want[SET_R], fd, (want & POLLER_IN) != 0);
  set_bit(s->want[SET_W], fd, (want & POLLER_OUT) != 0);
  set_bit(s->want[SET_X], fd, (want & POLLER_PRI) != 0);
  return 0;
}

static int test_bit(const word_t *set, int fd) {
  return (set[BIT_WORD(fd)] & BIT_MASK(fd)) != 0;
}

/* After EBADF: reports the watched fds that are closed. */
static int report_closed(poller *p, poller_event *out, int max) {
  struct select_state *s = p->bstate;
  int k = 0;
  for (int i = 0; i < s->n && k < max; i++) {
    p->stats.syscalls++;
    if (fcntl(s->fds[i], F_GETFD) == -1 && errno == EBADF)
      out[k++] = (poller_event){
          .fd = s->fds[i], .events = POLLER_NVAL, .data = NULL, .gen = 0};
  }
  return k;
}

static int select_wait(poller *p, poller_event *out, int max,
                       int timeout_ms) {
  struct select_state *s = p->bstate;
  int maxfd = -1;
  for (int i = 0; i < s->n; i++)
    if (s->fds[i] > maxfd)
      maxfd = s->fds[i];
  size_t words = maxfd >= 0 ? BIT_WORD(maxfd) + 1 : 0;
  for (int i = 0; i < NSETS; i++)
    if (words)
      memcpy(s->got[i], s->want[i], words * sizeof(word_t));
  struct timeval tv, *tvp = NULL;
  if (timeout_ms >= 0) {
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    tvp = &tv;
  }
  p->stats.syscalls++;
  int ready = select(maxfd + 1, words ? (fd_set *)(void *)s->got[SET_R] : NULL,
                     words ? (fd_set *)(void *)s->got[SET_W] : NULL,
                     words ? (fd_set *)(void *)s->got[SET_X] : NULL, tvp);
  if (ready < 0) {
    if (errno == EBADF)
      return report_closed(p, out, max);
    return -errno;
  }
  if (ready == 0 || s->n == 0)
    return 0;
  int k = 0;
  int start = s->next < s->n ? s->next : 0;
  int i = start;
  do {
    int fd = s->fds[i];
    unsigned bits = 0;
    if (test_bit(s->got[SET_R], fd))
      bits |= POLLER_IN;
    if (test_bit(s->got[SET_W], fd))
      bits |= POLLER_OUT;
    if (test_bit(s->got[SET_X], fd))
      bits |= POLLER_PRI;
    if (bits) {
      if (k == max) {
        s->next = i;
        return k;
      }
      out[k++] = (poller_event){
          .fd = fd, .events = bits, .data = NULL, .gen = 0};
    }
    if (++i == s->n)
      i = 0;
  } while (i != start);
  s->next = i;
  return k;
}

static int select_reinit(poller *p) {
  struct select_state *s = p->bstate;
  for (int i = 0; i < NSETS; i++)
    if (s->words)
      memset(s->want[i], 0, s->words * sizeof(word_t));
  s->n = 0;
  s->next = 0;
  return 0;
}

const struct poller__backend poller__backend_select = {
    .id = POLLER_SELECT,
    .name = "select",
    .caps = POLLER__CAP_EDGE_PROBE | POLLER__CAP_SELECT_VIEW,
    .probe = select_probe,
    .init = select_init,
    .fini = select_fini,
    .ctl = select_ctl,
    .wait = select_wait,
    .fd = NULL,
    .reinit = select_reinit,
};
