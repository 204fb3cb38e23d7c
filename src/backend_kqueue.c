/* SPDX-License-Identifier: MIT */
/*
 * backend_kqueue.c - kqueue(2): FreeBSD, OpenBSD, NetBSD, DragonFly,
 * macOS, and Linux through libkqueue (see docs/kqueue.md).
 *
 * IN, PRI and RDHUP map to EVFILT_READ, OUT to EVFILT_WRITE, one knote
 * each.  Native modes: level; ET with EV_CLEAR; ONESHOT with EV_DISPATCH,
 * which disables the knote after one report (EV_ONESHOT would delete it)
 * and ctl(rearm) deletes and adds again (see build).  A read filter whose
 * interest lacks IN is EV_CLEAR (see filter_flags).  udata carries
 * fd | generation << 32 so the core drops reports of an earlier
 * registration of the same fd number.
 *
 * Every change is applied at once, with EV_RECEIPT on each entry, so each
 * change gets its own result and an eventlist exactly as long as the
 * changelist holds them all.  A change the kernel refuses is returned to
 * the core, which drops that registration alone (and reports it as
 * ERR|NVAL when the change came from the wait's flush).  Changes are not
 * carried in the wait's changelist: there a refused change needs a free
 * slot of the eventlist, or kevent() fails as a whole and every later
 * wait with it (FreeBSD and macOS kevent(2): "If an error occurs while
 * processing an element of the changelist and there is enough room in the
 * eventlist, then the event will be placed in the eventlist ... Otherwise,
 * -1 will be returned"), and with receipts FreeBSD returns them without
 * waiting at all.  A change therefore costs one kevent() call, as an
 * epoll_ctl() does on epoll.
 *
 * Files kqueue cannot meaningfully watch are reported always ready by the
 * core, as epoll's EPERM files are: regular files and directories (the
 * read filter of a vnode is ready only while bytes remain past the
 * offset, so an empty file would never be readable, unlike select and
 * poll), block devices, and devices the kernel refuses (EINVAL or ENODEV
 * on macOS, mio#1377).
 *
 * kqueue reports one event per filter; the read and write events of one
 * fd are merged into one report (cpython#110038, redis#2428).  A wait
 * fetches up to 2 * max events, so both halves of an fd fit even when max
 * is 1.  Events that do not fit in the caller's buffer are not lost: a
 * level knote is reported again by the next kevent(), and an EV_CLEAR or
 * EV_DISPATCH event, which the kernel will not repeat, is held in a
 * buffer of the backend (sized at add time) and reported by the next
 * wait first.
 *
 * Hang-ups are reported with epoll's bits for each kind of file.  EV_EOF
 * on the read filter of a socket is the peer's shutdown of its writing
 * half: RDHUP (with IN).  HUP means that both directions are gone; the
 * filters cannot say so (EV_EOF on the write filter also follows our own
 * shutdown(SHUT_WR), libuv#3277), so after an EV_EOF on a socket one
 * poll(2) of that fd asks the kernel.  A pipe, fifo or tty whose writer is
 * gone reports HUP (with IN); a pipe whose reader is gone reports ERR
 * (with OUT), as epoll does.  A socket error comes as EV_EOF with the
 * errno in fflags and is reported as ERR.
 *
 * A kqueue is not inherited by fork (kqueue(2)): the backend remembers the
 * process that made it, never closes the number in another process, and
 * keeps the number across an in-process reinit (see kq_reinit).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/event.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#ifdef LIBKQUEUE
/* libkqueue cuts every kevent() to this many events (MAX_KEVENT in its
 * src/common/private.h). */
#define LIBKQUEUE_MAX_KEVENT 512
#endif

/* What kind of file an fd is, as far as hang-ups go (see above). */
enum { FT_OTHER = 0, FT_SOCKET = 1, FT_PIPE = 2, FT_KIND = 3 };
/* Also in the kind table: the fd's read filter was made level after a
 * hang-up (see filter_flags). */
#define FT_LEVELED 0x80

struct kqueue_state {
  int kq;
  pid_t owner;           /* the process kq belongs to (kqueue(2): a
                            kqueue is not inherited by fork) */
  struct kevent *events; /* the kernel's reports, capevents long */
  struct kevent *held;   /* edge events that did not fit, capevents long */
  int capevents;
  int nheld, firstheld; /* held[firstheld, nheld) are still to report */
  unsigned char *ftype; /* FT_* by fd, nftype long */
  int nftype;
  unsigned rotate; /* where kq_wait starts reading the kernel's list */
  int spilled;     /* the last wait had no room for every event */
};

/* Where a pointer has 32 bits the generation does not fit and reads back
 * as 0, which the core takes for the current one. */
static void *make_udata(int fd, unsigned gen) {
  return (void *)(uintptr_t)((uint64_t)(uint32_t)fd | ((uint64_t)gen << 32));
}

static int set_cloexec(int fd) {
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
    return -errno;
  return 0;
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
  (void)set_cloexec(s->kq);
  s->owner = getpid();
  p->bstate = s;
  return 0;
}

static void kq_fini(poller *p) {
  struct kqueue_state *s = p->bstate;
  if (!s)
    return;
  /* In a forked child that did not reinit, the number is no longer a
   * kqueue and may already belong to another file (libuv#1583,
   * cpython#110395): it is not ours to close. */
  if (s->owner == getpid())
    close(s->kq);
  free(s->events);
  free(s->held);
  free(s->ftype);
  free(s);
  p->bstate = NULL;
}

/* Grows the event lists to hold one event per knote that can exist once
 * fd is registered (two per fd, one for the wakeup channel), and the file
 * kind table to reach fd.  Called on add only, never on the wait path. */
static int reserve(poller *p, struct kqueue_state *s, int fd) {
  size_t need = (p->count + 2) * 2;
  if (need > (size_t)s->capevents) {
    size_t cap = need * 2;
    if (cap > INT32_MAX / sizeof(struct kevent))
      return -ENOMEM;
    struct kevent *e = realloc(s->events, cap * sizeof *e);
    if (!e)
      return -ENOMEM;
    s->events = e;
    struct kevent *h = realloc(s->held, cap * sizeof *h);
    if (!h)
      return -ENOMEM;
    s->held = h;
    s->capevents = (int)cap;
  }
  if (fd >= s->nftype) {
    size_t n = s->nftype ? (size_t)s->nftype : 64;
    while (n <= (size_t)fd)
      n *= 2;
    unsigned char *t = realloc(s->ftype, n);
    if (!t)
      return -ENOMEM;
    memset(t + s->nftype, 0, n - (size_t)s->nftype);
    s->ftype = t;
    s->nftype = (int)n;
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
#define WANT_WRITE(w) ((w)&POLLER_OUT)

/* The kqueue flags of filter f (0 read, 1 write) for the interest w.  The
 * read filter fires for ordinary data whatever the interest, so when the
 * interest lacks IN (PRI or RDHUP alone):
 * - a level read filter would fire at every wait while data is unread,
 *   for reports the core masks to nothing, and the wait would spin (test
 *   interest_without_in_sleeps_on_data).  It is made EV_CLEAR, which wakes
 *   once per arrival of data; when it reports something the interest
 *   keeps (RDHUP, HUP, ERR: conditions that last), it is made level again
 *   (`leveled`, see level_after_hangup), so that condition is reported at
 *   every wait as epoll does;
 * - EV_DISPATCH (ONESHOT) would spend its one report on data the core
 *   masks to nothing, and disable the filter before the hang-up (test
 *   oneshot_rdhup_alone_survives_data).  It is EV_CLEAR instead: the core
 *   disarms the registration after the report it does deliver, and drops
 *   what the filter reports later until the re-arm adds it afresh. */
static unsigned short filter_flags(unsigned w, int f, int leveled) {
  unsigned short fl = mode_flags(w);
  if (f == 0 && !(w & POLLER_IN)) {
    if (w & POLLER_ONESHOT)
      fl = (unsigned short)((fl & ~EV_DISPATCH) | EV_CLEAR);
    else if (!(w & POLLER_ET) && !leveled)
      fl |= EV_CLEAR;
  }
  return fl;
}

/* Builds the changes that take fd from `have` to `want` into ch[] (at most
 * 4), each with EV_RECEIPT.  A filter is only touched when its own part of
 * the interest changes (IN, PRI, RDHUP for the read filter, OUT for the
 * write filter), its mode changes, or it must be re-armed: IN to IN|OUT
 * adds the write filter and leaves the read filter alone.  A filter that
 * is touched is deleted and added again, never re-added in place:
 * - re-adding an existing knote does not replace EV_CLEAR and EV_DISPATCH
 *   everywhere, and libkqueue answers it (and EV_ENABLE with EV_RECEIPT)
 *   with a spurious error (docs/kqueue.md);
 * - a fresh add looks at readiness afresh, as EPOLL_CTL_MOD does, which is
 *   what re-arms a ONESHOT (EV_DISPATCH);
 * - a number replaced behind the poller (dup2 onto it) has lost its
 *   knotes on the BSDs, as any close of the number removes them, and only
 *   an add watches the new file (test replaced_number_then_mod_no_spin). */
static int build(struct kevent *ch, int fd, const struct poller__fd *e,
                 unsigned have, unsigned want, int rearm, int leveled) {
  int n = 0;
  void *ud = make_udata(fd, e->gen);
  static const short filters[2] = {EVFILT_READ, EVFILT_WRITE};
  for (int f = 0; f < 2; f++) {
    unsigned in_want = f == 0 ? WANT_READ(want) : WANT_WRITE(want);
    unsigned in_have = f == 0 ? WANT_READ(have) : WANT_WRITE(have);
    unsigned short fw = filter_flags(want, f, leveled);
    if (in_want) {
      int touch = !in_have || rearm || in_want != in_have ||
                  filter_flags(have, f, leveled) != fw;
      if (in_have && touch)
        EV_SET(&ch[n++], fd, filters[f], EV_DELETE | EV_RECEIPT, 0, 0, ud);
      if (touch)
        EV_SET(&ch[n++], fd, filters[f], EV_ADD | EV_ENABLE | EV_RECEIPT | fw,
               0, 0, ud);
    } else if (in_have) {
      EV_SET(&ch[n++], fd, filters[f], EV_DELETE | EV_RECEIPT, 0, 0, ud);
    }
  }
  return n;
}

/* Sends n changes built with EV_RECEIPT and returns the first error the
 * kernel gave one of them (0 for none).  A deletion that finds nothing
 * (ENOENT, or EBADF for a closed fd: closing drops its knotes) is not an
 * error: what it removes is gone.  The eventlist has one slot per change,
 * so every receipt fits and the call never waits for events. */
static int apply(poller *p, struct kqueue_state *s, const struct kevent *ch,
                 int n) {
  struct kevent rc[4];
  static const struct timespec zero = {0, 0};
  if (!n)
    return 0;
  p->stats.syscalls++;
  int got = kevent(s->kq, ch, n, rc, n, &zero);
  if (got < 0)
    return -errno;
  /* Receipts come back in the order of the changes. */
  for (int i = 0; i < got && i < n; i++) {
    if (!(rc[i].flags & EV_ERROR) || !rc[i].data)
      continue;
    int err = (int)rc[i].data;
    if ((ch[i].flags & EV_DELETE) && (err == ENOENT || err == EBADF))
      continue;
    return -err;
  }
  return 0;
}

/* Sorts a new fd: 0 with its kind in *kind for a file kqueue watches,
 * POLLER__ALWAYS_READY for one it cannot meaningfully watch, or -errno. */
static int classify(int fd, int *kind) {
  struct stat st;
  if (fstat(fd, &st) < 0)
    return -errno;
  if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode))
    return POLLER__ALWAYS_READY;
  if (S_ISSOCK(st.st_mode))
    *kind = FT_SOCKET;
  else if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode))
    *kind = FT_PIPE; /* pipes, fifos, ttys: a gone writer is HUP */
  else
    *kind = FT_OTHER;
  return 0;
}

static int kq_ctl(poller *p, int fd, struct poller__fd *e, unsigned have,
                  unsigned want, int rearm) {
  struct kqueue_state *s = p->bstate;
  struct kevent ch[4];
  if (!have && want) {
    int kind = FT_OTHER, r = classify(fd, &kind);
    if (r != 0)
      return r;
    if ((r = reserve(p, s, fd)) < 0)
      return r;
    s->ftype[fd] = (unsigned char)kind;
  }
  /* A read filter made level after a hang-up keeps that flag until it is
   * added again; any change of the read part adds it again. */
  int leveled = 0;
  if (fd < s->nftype && (s->ftype[fd] & FT_LEVELED)) {
    if (want && WANT_READ(want) == WANT_READ(have) && !rearm &&
        mode_flags(want) == mode_flags(have))
      leveled = 1;
    else
      s->ftype[fd] &= (unsigned char)~FT_LEVELED;
  }
  int r = apply(p, s, ch, build(ch, fd, e, have, want, rearm, leveled));
  if (r == 0 || !want)
    return 0; /* a removal that fails has nothing left to remove */
  /* Nothing is left half registered: the core drops the registration. */
  (void)apply(p, s, ch, build(ch, fd, e, have | want, 0, 0, leveled));
  if (!have && (r == -EINVAL || r == -ENODEV || r == -EPERM || r == -ENOTSUP ||
                r == -EOPNOTSUPP))
    return POLLER__ALWAYS_READY;
  return r;
}

/* Whether a socket has lost both directions (epoll's HUP).  poll(2)
 * reports POLLHUP whatever the interest. */
static int socket_hung_up(poller *p, int fd) {
  struct pollfd pf = {fd, 0, 0};
  p->stats.syscalls++;
  return poll(&pf, 1, 0) == 1 && (pf.revents & POLLHUP);
}

/* Marks a report whose HUP is still to be decided by socket_hung_up;
 * never set in what wait returns. */
#define NEEDS_HUP_CHECK 0x40000000u

/* The bits of one kernel event, 0 for an event to ignore. */
static unsigned event_bits(const struct kqueue_state *s,
                           const struct kevent *ev) {
  int fd = (int)ev->ident;
  int kind = fd >= 0 && fd < s->nftype ? s->ftype[fd] & FT_KIND : FT_OTHER;
  unsigned bits;
  if (ev->flags & EV_ERROR)
    return 0; /* a receipt; changes never ride on a wait */
  if (ev->filter == EVFILT_READ) {
    bits = POLLER_IN;
#ifdef EV_OOBAND
    /* macOS flags urgent data on the read filter. */
    if (ev->flags & EV_OOBAND)
      bits |= POLLER_PRI;
#endif
    if (ev->flags & EV_EOF)
      bits |= kind == FT_SOCKET ? POLLER_RDHUP | NEEDS_HUP_CHECK : POLLER_HUP;
  } else if (ev->filter == EVFILT_WRITE) {
    bits = POLLER_OUT;
    if (ev->flags & EV_EOF) {
      if (kind == FT_SOCKET)
        bits |= NEEDS_HUP_CHECK;
      else if (kind == FT_PIPE)
        bits |= POLLER_ERR; /* the reader is gone: writes fail (EPIPE) */
      else
        bits |= POLLER_HUP;
    }
  } else {
    return 0;
  }
  if ((ev->flags & EV_EOF) && ev->fflags)
    bits |= POLLER_ERR;
  return bits;
}

/* Adds the event to out[0, *k): merged into fd's report of this wait, or
 * as a new one while there is room.  Returns 0 when it found no room. */
static int take(poller *p, const struct kqueue_state *s,
                const struct kevent *ev, poller_event *out, int *k, int max) {
  unsigned bits = event_bits(s, ev);
  if (!bits)
    return 1;
  int fd = (int)ev->ident;
  unsigned gen = (unsigned)((uint64_t)(uintptr_t)ev->udata >> 32);
  /* One report per fd: e->bidx (this backend's slot) holds the index + 1
   * of the fd's report in this wait; kq_wait clears it before returning. */
  struct poller__fd *e = poller__entry(p, fd);
  if (e && e->bidx > 0 && e->bidx <= *k && out[e->bidx - 1].fd == fd &&
      out[e->bidx - 1].gen == gen) {
    out[e->bidx - 1].events |= bits;
    return 1;
  }
  if (*k >= max)
    return 0;
  if (e)
    e->bidx = *k + 1;
  out[*k] = (poller_event){.fd = fd, .events = bits, .data = NULL, .gen = gen};
  (*k)++;
  return 1;
}

/* Whether an event that did not fit must be kept: the kernel repeats a
 * level event at the next kevent(), but not an EV_CLEAR or EV_DISPATCH
 * one.  An event of an earlier registration is dropped here already. */
static int must_hold(const poller *p, const struct kevent *ev) {
  unsigned gen = (unsigned)((uint64_t)(uintptr_t)ev->udata >> 32);
  const struct poller__fd *e = poller__entry(p, (int)ev->ident);
  if (!e || (gen && e->gen != gen) || !(e->flags & FD_REGISTERED))
    return 0;
  return (ev->flags & (EV_CLEAR | EV_DISPATCH)) ||
         (poller__kmask(e) & (POLLER_ET | POLLER_ONESHOT));
}

/* Makes an EV_CLEAR read filter of a level registration (filter_flags)
 * level again once it reports a lasting condition the interest keeps. */
static void level_after_hangup(poller *p, struct kqueue_state *s,
                               const poller_event *ev) {
  int fd = ev->fd;
  struct poller__fd *e = poller__entry(p, fd);
  if (!e || !(e->flags & FD_REGISTERED) || (ev->gen && e->gen != ev->gen) ||
      fd >= s->nftype || (s->ftype[fd] & FT_LEVELED))
    return;
  unsigned k = poller__kmask(e);
  if (!WANT_READ(k) || (k & (POLLER_IN | POLLER_ET | POLLER_ONESHOT)))
    return; /* not a level read filter made EV_CLEAR by filter_flags */
  if (!(ev->events & ((k & POLLER_RDHUP) | POLLER_HUP | POLLER_ERR)))
    return;
  struct kevent ch[2];
  void *ud = make_udata(fd, e->gen);
  EV_SET(&ch[0], fd, EVFILT_READ, EV_DELETE | EV_RECEIPT, 0, 0, ud);
  EV_SET(&ch[1], fd, EVFILT_READ,
         EV_ADD | EV_ENABLE | EV_RECEIPT | filter_flags(k, 0, 1), 0, 0, ud);
  if (apply(p, s, ch, 2) == 0)
    s->ftype[fd] |= FT_LEVELED;
}

static int kq_wait(poller *p, poller_event *out, int max, int timeout_ms) {
  struct kqueue_state *s = p->bstate;
  int k = 0;
  /* Held events first: they happened before anything still queued. */
  while (s->firstheld < s->nheld &&
         take(p, s, &s->held[s->firstheld], out, &k, max))
    s->firstheld++;
  if (s->firstheld == s->nheld)
    s->nheld = s->firstheld = 0;
  for (int round = 0; !s->nheld && s->events && k < max; round++) {
    struct timespec ts, *tsp = NULL;
    if (k > 0 || round > 0)
      timeout_ms = 0;
    if (timeout_ms >= 0) {
      ts.tv_sec = timeout_ms / 1000;
      ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
      tsp = &ts;
    }
    /* Room for the read and the write event of each fd reported. */
    int want = max - k;
    int nev = want > s->capevents / 2 ? s->capevents : want * 2;
#ifdef LIBKQUEUE
    /* libkqueue asks epoll for as many fds as the eventlist has slots and
     * drops the events of the fds that find no slot left, EV_CLEAR ones
     * included (docs/kqueue.md).  An eventlist with a slot for every knote
     * never runs out. */
    nev = s->capevents;
#endif
    p->stats.syscalls++;
    int n = kevent(s->kq, NULL, 0, s->events, nev, tsp);
    if (n < 0) {
      if (k == 0)
        return -errno;
      break;
    }
    /* The kernel's order is kept (the fd ready first is reported first,
     * as on epoll), except after a wait that had no room for everything:
     * the kernel queues a level knote again behind the others after each
     * kevent(), and libkqueue keeps epoll's order, so an fd that found no
     * room would find none at the next wait either.  Then the list is
     * read from a point that moves on by the number of fds reported,
     * round robin (test wait_max_one_alternates). */
    int start = n > 0 && s->spilled ? (int)(s->rotate % (unsigned)n) : 0;
    int k0 = k;
    s->spilled = 0;
    for (int j = 0; j < n; j++) {
      const struct kevent *ev = &s->events[(start + j) % n];
      if (take(p, s, ev, out, &k, max))
        continue;
      s->spilled = 1;
      if (must_hold(p, ev))
        s->held[s->nheld++] = *ev;
    }
    s->rotate += (unsigned)(k - k0);
#ifdef LIBKQUEUE
    /* libkqueue returns at most LIBKQUEUE_MAX_KEVENT events per call
     * whatever the eventlist's length; a native kevent() fills it.  While
     * calls come back that full and there is room, ask again (without
     * waiting): level events seen twice merge into one report. */
    if (n == LIBKQUEUE_MAX_KEVENT && n < nev &&
        round < s->capevents / LIBKQUEUE_MAX_KEVENT)
      continue;
#endif
    break;
  }
  for (int i = 0; i < k; i++) {
    struct poller__fd *e = poller__entry(p, out[i].fd);
    if (e)
      e->bidx = 0;
    if (out[i].events & NEEDS_HUP_CHECK) {
      out[i].events &= ~NEEDS_HUP_CHECK;
      if (socket_hung_up(p, out[i].fd))
        out[i].events |= POLLER_HUP;
    }
    level_after_hangup(p, s, &out[i]);
  }
  return k;
}

static int kq_fd(const poller *p) {
  return ((const struct kqueue_state *)p->bstate)->kq;
}

/* A new, empty kqueue (the core then adds every registration again). */
static int kq_reinit(poller *p) {
  struct kqueue_state *s = p->bstate;
  s->nheld = s->firstheld = 0;
  if (s->owner != getpid()) {
    /* A forked child: the old number is not a kqueue here and may belong
     * to another file by now (libuv#1583, cpython#110395), so it is
     * neither closed nor reused: poller_fd changes. */
    int kq = kqueue();
    if (kq < 0)
      return -errno;
    (void)set_cloexec(kq);
    s->kq = kq;
    s->owner = getpid();
    return 0;
  }
#ifndef LIBKQUEUE
  /* In the owning process the old kqueue is replaced under its number, so
   * poller_fd stays the same for a loop that nests it.  dup2 closes the
   * old kqueue, and with it every knote. */
  int kq = kqueue();
  if (kq < 0)
    return -errno;
  if (dup2(kq, s->kq) < 0) {
    int r = -errno;
    close(kq);
    return r;
  }
  close(kq);
  (void)set_cloexec(s->kq);
#else
  /* libkqueue finds its kqueues by descriptor number, and a kqueue moved
   * to another number by dup2 is unknown there (docs/kqueue.md).  The
   * kqueue is emptied in place instead, which keeps the number too: every
   * knote the table says it holds is deleted. */
  for (int fd = 0; fd < p->nfds; fd++) {
    struct poller__fd *e = &p->fds[fd];
    struct kevent ch[4];
    if (poller__kmask(e))
      (void)apply(p, s, ch, build(ch, fd, e, poller__kmask(e), 0, 0, 0));
  }
#endif
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
    .commit = NULL,
    .fd = kq_fd,
    .reinit = kq_reinit,
};
