/* SPDX-License-Identifier: MIT */
/*
 * backend_select_win32.c - Winsock select, the "select" backend on Windows.
 *
 * Winsock's fd_set is not a bitmap but a count followed by an array of
 * SOCKETs, FD_SETSIZE (64) long by default.  Winsock's select reads as
 * many entries as the count says, so a larger set is simply a larger
 * allocation with the same layout (Microsoft's select documentation: the
 * FD_SETSIZE limit is the application's, not Winsock's).  This backend
 * keeps the watched sockets in a dense array (e->bidx indexes it) and
 * builds the three sets from it at each wait, in sets that grow with it.
 *
 * Sockets only: a handle that is not a socket is refused with ENOTSOCK, a
 * number that is no handle at all with EBADF (by the core).  A registered
 * socket closed behind poller's back makes select fail with WSAENOTSOCK;
 * the closed sockets are then found one by one and reported as NVAL,
 * which the core reports once and disarms.
 *
 * Winsock reports a failed connect in the exception set only, never as
 * writable, and urgent data there too: a socket watched for anything is
 * in the exception set, and an entry there is ERR when SO_ERROR holds an
 * error, else PRI.  A closed peer makes the socket readable, as on Unix.
 * Level-triggered only; the core emulates ET and ONESHOT.  A wait is
 * O(registered sockets).
 */
#define WIN32_LEAN_AND_MEAN
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <winsock2.h>

enum { SET_R, SET_W, SET_X, NSETS };

/* The layout of Winsock's fd_set with room for `cap` sockets. */
struct wset {
  u_int fd_count;
  SOCKET fd_array[];
};

struct wsel_state {
  struct {
    int fd;
    unsigned want;
    unsigned got; /* set by the last select */
  } *reg;          /* the watched sockets, dense; e->bidx indexes it */
  int n, cap;  /* entries used and allocated in reg and in each set */
  struct wset *set[NSETS];
  int next; /* where the next scan starts (fairness) */
};

#define SOCK(fd) ((SOCKET)(uintptr_t)(unsigned)(fd))

static int wsel_probe(void) { return poller__win_startup(); }

static int wsel_init(poller *p) {
  int r = poller__win_startup();
  if (r < 0)
    return r;
  struct wsel_state *s = calloc(1, sizeof *s);
  if (!s)
    return -ENOMEM;
  p->bstate = s;
  return 0;
}

static void wsel_fini(poller *p) {
  struct wsel_state *s = p->bstate;
  if (!s)
    return;
  for (int i = 0; i < NSETS; i++)
    free(s->set[i]);
  free(s->reg);
  free(s);
  p->bstate = NULL;
}

static int grow(struct wsel_state *s) {
  int cap = s->cap ? s->cap * 2 : 64;
  if (cap > (INT_MAX - (int)sizeof(struct wset)) / (int)sizeof(SOCKET))
    return -ENOMEM;
  void *reg = realloc(s->reg, (size_t)cap * sizeof *s->reg);
  if (!reg)
    return -ENOMEM;
  s->reg = reg;
  for (int i = 0; i < NSETS; i++) {
    struct wset *w =
        realloc(s->set[i], sizeof *w + (size_t)cap * sizeof(SOCKET));
    if (!w)
      return -ENOMEM;
    s->set[i] = w;
  }
  s->cap = cap;
  return 0;
}

static int wsel_ctl(poller *p, int fd, struct poller__fd *e, unsigned have,
                    unsigned want, int rearm) {
  struct wsel_state *s = p->bstate;
  (void)rearm;
  if (!want) {
    if (!have)
      return 0;
    int i = e->bidx;
    s->n--;
    if (i != s->n) {
      s->reg[i] = s->reg[s->n];
      p->fds[s->reg[i].fd].bidx = i;
    }
    e->bidx = -1;
    return 0;
  }
  if (!have) {
    if (!poller__win_is_socket(fd)) {
      p->stats.syscalls++;
      return poller__platform_fd_open(fd) ? -ENOTSOCK : -EBADF;
    }
    if (s->n == s->cap) {
      int r = grow(s);
      if (r < 0)
        return r;
    }
    e->bidx = s->n;
    s->reg[s->n].fd = fd;
    s->n++;
  }
  s->reg[e->bidx].want = want;
  return 0;
}

/* After WSAENOTSOCK: reports the watched sockets that are closed. */
static int report_closed(poller *p, poller_event *out, int max) {
  struct wsel_state *s = p->bstate;
  int k = 0;
  for (int i = 0; i < s->n && k < max; i++) {
    p->stats.syscalls++;
    if (!poller__win_is_socket(s->reg[i].fd))
      out[k++] = (poller_event){
          .fd = s->reg[i].fd, .events = POLLER_NVAL, .data = NULL, .gen = 0};
  }
  return k;
}

static int wsel_wait(poller *p, poller_event *out, int max, int timeout_ms) {
  struct wsel_state *s = p->bstate;
  for (int i = 0; i < NSETS; i++)
    if (s->set[i])
      s->set[i]->fd_count = 0;
  for (int i = 0; i < s->n; i++) {
    SOCKET sock = SOCK(s->reg[i].fd);
    unsigned want = s->reg[i].want;
    if (want & POLLER_IN)
      s->set[SET_R]->fd_array[s->set[SET_R]->fd_count++] = sock;
    if (want & POLLER_OUT)
      s->set[SET_W]->fd_array[s->set[SET_W]->fd_count++] = sock;
    s->set[SET_X]->fd_array[s->set[SET_X]->fd_count++] = sock;
  }
  struct timeval tv, *tvp = NULL;
  if (timeout_ms >= 0) {
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    tvp = &tv;
  }
  if (s->n == 0) {
    /* Winsock refuses a select without sockets (WSAEINVAL); the wakeup
     * socket is always registered, so this is only a safety net. */
    Sleep(timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms);
    return 0;
  }
  p->stats.syscalls++;
  int ready = select(0,
                     s->set[SET_R]->fd_count ? (fd_set *)s->set[SET_R] : NULL,
                     s->set[SET_W]->fd_count ? (fd_set *)s->set[SET_W] : NULL,
                     (fd_set *)s->set[SET_X], tvp);
  if (ready == SOCKET_ERROR) {
    int err = WSAGetLastError();
    if (err == WSAENOTSOCK)
      return report_closed(p, out, max);
    return -poller__win_errno(err);
  }
  if (ready == 0)
    return 0;
  /* select leaves the ready sockets in each set; the fd table leads from
   * a socket to its entry of reg, so marking them is O(ready). */
  for (int i = 0; i < s->n; i++)
    s->reg[i].got = 0;
  static const unsigned set_bit[NSETS] = {POLLER_IN, POLLER_OUT, POLLER_ERR};
  for (int j = 0; j < NSETS; j++)
    for (u_int m = 0; m < s->set[j]->fd_count; m++) {
      int fd = (int)(uintptr_t)s->set[j]->fd_array[m];
      struct poller__fd *e = poller__entry(p, fd);
      if (e && e->bidx >= 0 && e->bidx < s->n && s->reg[e->bidx].fd == fd)
        s->reg[e->bidx].got |= set_bit[j];
    }
  /* The scan starts where the previous one stopped when the caller's
   * buffer was full, so no socket starves (test wait_partial_harvest). */
  int k = 0;
  int start = s->next < s->n ? s->next : 0;
  int i = start;
  do {
    unsigned bits = s->reg[i].got;
    if (bits & POLLER_ERR) {
      /* The exception set: a pending error (a failed connect), else
       * urgent data. */
      int err = 0, len = sizeof err;
      p->stats.syscalls++;
      bits &= ~POLLER_ERR;
      if (getsockopt(SOCK(s->reg[i].fd), SOL_SOCKET, SO_ERROR, (char *)&err,
                     &len) == 0 &&
          err != 0)
        bits |= POLLER_ERR;
      else if (s->reg[i].want & POLLER_PRI)
        bits |= POLLER_PRI;
    }
    if (bits) {
      if (k == max) {
        s->next = i;
        return k;
      }
      out[k++] = (poller_event){
          .fd = s->reg[i].fd, .events = bits, .data = NULL, .gen = 0};
    }
    if (++i == s->n)
      i = 0;
  } while (i != start);
  s->next = i;
  return k;
}

static int wsel_reinit(poller *p) {
  (void)p;
  return -ENOSYS; /* no fork on Windows: poller.h */
}

const struct poller__backend poller__backend_select = {
    .id = POLLER_SELECT,
    .name = "select",
    /* add checks the socket at once, so a non-socket is refused by
     * poller_add itself (ENOTSOCK), not disarmed at the next wait. */
    .caps = POLLER__CAP_SYNC_ADD | POLLER__CAP_EDGE_PROBE |
            POLLER__CAP_SELECT_VIEW,
    .probe = wsel_probe,
    .init = wsel_init,
    .fini = wsel_fini,
    .ctl = wsel_ctl,
    .wait = wsel_wait,
    .fd = NULL,
    .reinit = wsel_reinit,
};
