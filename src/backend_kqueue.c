/*
 * backend_kqueue.c - kqueue(2): FreeBSD, OpenBSD, NetBSD, DragonFly,
 * macOS, and Linux through libkqueue (see docs/kqueue.md).
 *
 * IN maps to EVFILT_READ, OUT to EVFILT_WRITE, one knote each.  Native
 * modes: level; ET with EV_CLEAR; ONESHOT with EV_DISPATCH, which disables
 * the knote after one report (EV_ONESHOT would delete it) and ctl(rearm)
 * enables again.  udata carries fd | generation << 32 so the core drops
 * reports of an earlier registration of the same fd number.
 *
 * Adds are synchronous, with EV_RECEIPT, so a bad fd fails at poller_add
 * with -EBADF, and a file kqueue refuses (EINVAL or ENODEV for some
 * devices on macOS, mio#1377) is reported always ready instead, as select
 * and poll would.  Removals are synchronous too (libuv#4323).  Other
 * changes are batched into the changelist of the next kevent() wait, as
 * libuv does; a change the kernel refuses there comes back as an EV_ERROR
 * entry, reported as ERR|NVAL (the core then disarms the fd).
 *
 * kqueue reports one event per filter: the read and write events of one
 * fd are merged into one report (cpython#110038, redis#2428).
 * The event list is never longer than the caller's buffer, so nothing
 * fetched is ever dropped, at the price of fewer fds per wait when both
 * filters fire.  EV_EOF on the read filter is the peer's shutdown of its
 * writing half (RDHUP); on the write filter it means the peer stopped
 * reading (libuv#3277), reported as HUP; a socket error (a refused
 * connect) comes as EV_EOF with the errno in fflags (tornado#223) and is
 * reported as ERR.
 */
#include "internal.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/event.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

struct kqueue_state {
  int kq;
  struct kevent *changes; /* batched changes, sent with the next wait */
  int nchanges, capchanges;
  struct kevent *events; /* the kernel's reports */
  int capevents;
};

static void *make_udata(int fd, unsigned gen) {
  return (void *)(uintptr_t)((uint64_t)(uint32_t)fd | ((uint64_t)gen << 32));
}

static int kq_probe(void) {
  int kq = kqueue();
  if (kq < 0)
    return -errno;
  close(kq);
  return 0;
}

static int kq_init(poller *p) {
  struct kqueue_state *s = calloc(1, sizeof *s);
  if (!s)
    return -ENOMEM;
  s->kq = kqueue();
  if (s->kq < 0) {
    int r = -errno;
    free(s);
    return r;
  }
  p->bstate = s;
  return 0;
}

static void kq_fini(poller *p) {
  struct kqueue_state *s = p->bstate;
  if (!s)
    return;
  close(s->kq);
  free(s->changes);
  free(s->events);
  free(s);
  p->bstate = NULL;
}

/* Grows the change list and the event list for what one more fd needs. */
static int reserve(poller *p, struct kqueue_state *s) {
  int need = (int)(p->count + 2) * 2;
  if (need > s->capchanges) {
    struct kevent *c = realloc(s->changes, (size_t)need * 2 * sizeof *c);
    if (!c)
      return -ENOMEM;
    s->changes = c;
    s->capchanges = need * 2;
  }
  if (need > s->capevents) {
    struct kevent *e = realloc(s->events, (size_t)need * 2 * sizeof *e);
    if (!e)
      return -ENOMEM;
    s->events = e;
    s->capevents = need * 2;
  }
  return 0;
}

static unsigned short mode_flags(unsigned want) {
  unsigned short f = 0;
  if (want & POLLER_ET)
    f |= EV_CLEAR;
  if (want & POLLER_ONESHOT)
    f |= EV_DISPATCH;
  return f;
}

#define WANT_READ(w) ((w) & (POLLER_IN | POLLER_PRI | POLLER_RDHUP))
#define WANT_WRITE(w) ((w) & POLLER_OUT)

/* Builds the changes that take fd from `have` to `want` into ch[] (at most
 * 4).  A filter whose mode changes (EV_CLEAR, EV_DISPATCH) is deleted and
 * added again: re-adding an existing knote does not replace those flags
 * everywhere. */
static int build(struct kevent *ch, int fd, struct poller__fd *e,
                 unsigned have, unsigned want, int rearm, unsigned short extra) {
  int n = 0;
  void *ud = make_udata(fd, e->gen);
  unsigned short add = EV_ADD | EV_ENABLE | mode_flags(want) | extra;
  int remode = have && want && mode_flags(have) != mode_flags(want);
  static const short filters[2] = {EVFILT_READ, EVFILT_WRITE};
  for (int f = 0; f < 2; f++) {
    unsigned in_want = f == 0 ? WANT_READ(want) : WANT_WRITE(want);
    unsigned in_have = f == 0 ? WANT_READ(have) : WANT_WRITE(have);
    if (in_want) {
      if (in_have && remode)
        EV_SET(&ch[n++], fd, filters[f], EV_DELETE | extra, 0, 0, ud);
      if (!in_have || have != want || rearm)
        EV_SET(&ch[n++], fd, filters[f], add, 0, 0, ud);
    } else if (in_have) {
      EV_SET(&ch[n++], fd, filters[f], EV_DELETE | extra, 0, 0, ud);
    }
  }
  return n;
}

static int kq_ctl(poller *p, int fd, struct poller__fd *e, unsigned have,
                  unsigned want, int rearm) {
  struct kqueue_state *s = p->bstate;
  struct kevent ch[4], rc[4];
  int r;
  if (!want) {
    /* Synchronous removal.  ENOENT and EBADF mean the kernel already
     * dropped the knotes (a closed fd): nothing is held. */
    int n = build(ch, fd, e, have, 0, 0, 0);
    if (n) {
      p->stats.syscalls++;
      (void)kevent(s->kq, ch, n, NULL, 0, NULL);
    }
    return 0;
  }
  if ((r = reserve(p, s)) < 0)
    return r;
  if (have) {
    /* A change: batched into the next wait's changelist. */
    int n = build(&s->changes[s->nchanges], fd, e, have, want, rearm, 0);
    s->nchanges += n;
    return 0;
  }
  /* A new registration: at once, with a receipt per filter. */
  int n = build(ch, fd, e, 0, want, 0, EV_RECEIPT);
  p->stats.syscalls++;
  int got = kevent(s->kq, ch, n, rc, n, NULL);
  if (got < 0)
    return -errno;
  int err = 0;
  for (int i = 0; i < got; i++)
    if ((rc[i].flags & EV_ERROR) && rc[i].data && !err)
      err = (int)rc[i].data;
  if (!err)
    return 0;
  /* Undo the filter that may have been added. */
  int m = build(ch, fd, e, want, 0, 0, 0);
  if (m) {
    p->stats.syscalls++;
    (void)kevent(s->kq, ch, m, NULL, 0, NULL);
  }
  if (err == EBADF)
    return -EBADF;
  if (err == EINVAL || err == ENODEV || err == EPERM || err == ENOTSUP)
    return POLLER__ALWAYS_READY;
  return -err;
}

static int kq_wait(poller *p, poller_event *out, int max, int timeout_ms) {
  struct kqueue_state *s = p->bstate;
  struct timespec ts, *tsp = NULL;
  if (timeout_ms >= 0) {
    ts.tv_sec = timeout_ms / 1000;
    ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
    tsp = &ts;
  }
  int nev = max < s->capevents ? max : s->capevents;
  if (nev < 1)
    nev = 1;
  if (!s->events && reserve(p, s) < 0)
    return -ENOMEM;
  p->stats.syscalls++;
  int n = kevent(s->kq, s->changes, s->nchanges, s->events, nev, tsp);
  if (n < 0) {
    if (errno == EINTR)
      s->nchanges = 0; /* the changes were applied before the wait */
    return -errno;
  }
  s->nchanges = 0;
  int k = 0;
  for (int i = 0; i < n; i++) {
    struct kevent *ev = &s->events[i];
    uint64_t ud = (uint64_t)(uintptr_t)ev->udata;
    int fd = (int)ev->ident;
    unsigned gen = (unsigned)(ud >> 32);
    unsigned bits;
    if (ev->flags & EV_ERROR) {
      if (!ev->data)
        continue;
      bits = POLLER_ERR | POLLER_NVAL; /* a batched change was refused */
    } else if (ev->filter == EVFILT_READ) {
      bits = POLLER_IN;
      /* The read filter cannot tell the peer's half-close from a full
       * one; pipes and closed sockets are the common case, reported as
       * epoll does (IN|RDHUP|HUP). */
      if (ev->flags & EV_EOF)
        bits |= POLLER_RDHUP | POLLER_HUP | (ev->fflags ? POLLER_ERR : 0);
    } else if (ev->filter == EVFILT_WRITE) {
      bits = POLLER_OUT;
      if (ev->flags & EV_EOF)
        bits |= POLLER_HUP | (ev->fflags ? POLLER_ERR : 0);
    } else {
      continue;
    }
    /* One report per fd: e->bidx (this backend's slot) holds the index
     * + 1 of the fd's report in this wait, and is cleared below. */
    struct poller__fd *e = poller__entry(p, fd);
    if (e && e->bidx > 0 && e->bidx <= k && out[e->bidx - 1].fd == fd &&
        out[e->bidx - 1].gen == gen) {
      out[e->bidx - 1].events |= bits;
      continue;
    }
    if (e)
      e->bidx = k + 1;
    out[k].fd = fd;
    out[k].events = bits;
    out[k].gen = gen;
    out[k].data = NULL;
    k++;
  }
  for (int i = 0; i < k; i++) {
    struct poller__fd *e = poller__entry(p, out[i].fd);
    if (e)
      e->bidx = 0;
  }
  return k;
}

static int kq_commit(poller *p) {
  struct kqueue_state *s = p->bstate;
  if (!s->nchanges)
    return 0;
  p->stats.syscalls++;
  int r = kevent(s->kq, s->changes, s->nchanges, NULL, 0, NULL);
  s->nchanges = 0;
  return r < 0 ? -errno : 0;
}

static int kq_fd(const poller *p) {
  return ((const struct kqueue_state *)p->bstate)->kq;
}

static int kq_reinit(poller *p) {
  /* A kqueue is not inherited by a forked child: the old number is not a
   * kqueue there and may already belong to another file, so it is not
   * closed (libuv#1583, cpython#110395).  A new one is made. */
  struct kqueue_state *s = p->bstate;
  int kq = kqueue();
  if (kq < 0)
    return -errno;
  s->kq = kq;
  s->nchanges = 0;
  return 0;
}

const struct poller__backend poller__backend_kqueue = {
    .id = POLLER_KQUEUE,
    .name = "kqueue",
    .caps = POLLER_ET | POLLER_ONESHOT | POLLER__CAP_SYNC_ADD,
    .probe = kq_probe,
    .init = kq_init,
    .fini = kq_fini,
    .ctl = kq_ctl,
    .wait = kq_wait,
    .commit = kq_commit,
    .fd = kq_fd,
    .reinit = kq_reinit,
};
