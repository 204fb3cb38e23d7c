/* SPDX-License-Identifier: MIT */
/*
 * backend_epoll.c - epoll(7), Linux.
 *
 * Native level, edge (EPOLLET) and oneshot (EPOLLONESHOT) modes.  Every
 * registration carries its generation in the upper half of data.u64, so a
 * report queued by the kernel before a poller_del and a new poller_add of
 * the same fd number is recognised as stale (libev's egen).
 *
 * epoll refuses regular files and some devices with EPERM (asio#111,
 * clustershell#56): the core then reports them always ready, as select and poll
 * would.  epoll watches open file descriptions: a closed fd with a live
 * dup stays in the set until poller_del (libuv#1468); poller_del
 * therefore removes synchronously, before the caller can close.
 *
 * Such a "ghost" (the set's entry for a file no longer at its number) can
 * only be removed by replacing the set: the core does so when one reports
 * (stale reports) or may exist unseen (MOD of a replaced number).  So that
 * a replacement never needs a descriptor the process may not have, an
 * empty instance is kept in reserve (spare); and so that it never detaches
 * a loop that nests poller_fd, poller_fd is a second, stable instance
 * (outer) holding the working one, created at the first poller_fd call:
 * pollers that are not nested pay nothing for it.
 *
 * A forked child's copy of the outer instance is the parent's, and holds
 * the parent's set: at fork (pthread_atfork) its number is given an empty
 * instance, never readable, and one first created in a child before
 * poller_reinit starts empty too; poller_reinit then makes the number
 * hold the child's own set.
 */
#define _GNU_SOURCE /* dup3 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

/* The public bits are epoll's own (poller.h): masks pass through both
 * ways with no translation. */
_Static_assert(POLLER_IN == EPOLLIN && POLLER_PRI == EPOLLPRI &&
                   POLLER_OUT == EPOLLOUT && POLLER_ERR == EPOLLERR &&
                   POLLER_HUP == EPOLLHUP && POLLER_RDHUP == EPOLLRDHUP &&
                   POLLER_ONESHOT == EPOLLONESHOT && POLLER_ET == EPOLLET,
               "the POLLER_* bits must equal the EPOLL* bits");

#define EPOLL_READY                                                            \
  (POLLER_IN | POLLER_PRI | POLLER_OUT | POLLER_ERR | POLLER_HUP | POLLER_RDHUP)

struct epoll_state {
  int epfd;  /* the working set, the one epoll_wait sleeps on */
  int spare; /* an empty instance for the next rebuild, or -1 */
  int outer; /* poller_fd: holds epfd, created on demand, or -1 */
  int old;   /* the set a rebuild replaced, until settle, or -1 */
  /* In the list of outer instances, for the fork handler. */
  int linked;
  struct epoll_state *prev, *next;
};

/* ---- outer instances, emptied in a forked child ---- */

static pthread_mutex_t outer_lock = PTHREAD_MUTEX_INITIALIZER;
static struct epoll_state *outers;
static pthread_once_t outer_once = PTHREAD_ONCE_INIT;

static void outer_prepare(void) { pthread_mutex_lock(&outer_lock); }
static void outer_parent(void) { pthread_mutex_unlock(&outer_lock); }

/* Puts an empty epoll instance (never readable, close-on-exec) on the
 * number `num`; dup3 drops what was there in the same step.  Returns 0,
 * or -1 when no instance can be made (the number is then closed).  Only
 * system calls: it runs in a forked child's atfork handler. */
static int outer_empty(int num) {
  int o = epoll_create1(EPOLL_CLOEXEC);
  if (o >= 0 && dup3(o, num, O_CLOEXEC) >= 0) {
    close(o);
    return 0;
  }
  /* Out of descriptors: closing the number frees one. */
  if (o >= 0)
    close(o);
  close(num);
  o = epoll_create1(EPOLL_CLOEXEC);
  if (o < 0)
    return -1;
  if (o == num)
    return 0;
  int r = dup3(o, num, O_CLOEXEC) < 0 ? -1 : 0;
  close(o);
  return r;
}

/* In the child: the outer instances are the parent's, holding its sets,
 * so a loop nesting poller_fd would see the parent's readiness.  Each
 * number gets an empty instance instead, until poller_reinit. */
static void outer_child(void) {
  for (struct epoll_state *s = outers; s; s = s->next)
    if (s->outer >= 0 && outer_empty(s->outer) < 0)
      s->outer = -1;
  pthread_mutex_unlock(&outer_lock);
}

static void outer_register(void) {
  (void)pthread_atfork(outer_prepare, outer_parent, outer_child);
}

/* The bits a report may have and still be final at once: no hang-up (it
 * adds IN, left to the core's filter) and nothing unknown. */
#define FAST_BITS (POLLER_IN | POLLER_PRI | POLLER_OUT | POLLER_ERR)

/* An interest mask as epoll_ctl takes it: the same bits. */
static inline uint32_t to_epoll(unsigned want) {
  return want & (EPOLL_READY | POLLER_ET | POLLER_ONESHOT);
}

/* A report as the caller gets it: the same bits, masked so that a bit the
 * kernel may add one day (EPOLLMSG, EPOLLWAKEUP...) never leaks out. */
static inline unsigned to_bits(uint32_t ev) { return ev & EPOLL_READY; }

static int epoll_probe(void) {
  int fd = epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0)
    return -errno;
  close(fd);
  return 0;
}

static int epoll_init(poller *p) {
  struct epoll_state *s = malloc(sizeof *s);
  if (!s)
    return -ENOMEM;
  s->outer = -1;
  s->old = -1;
  s->linked = 0;
  s->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (s->epfd < 0) {
    int r = -errno;
    free(s);
    return r;
  }
  s->spare = epoll_create1(EPOLL_CLOEXEC);
  if (s->spare < 0) {
    int r = -errno;
    close(s->epfd);
    free(s);
    return r;
  }
  p->bstate = s;
  return 0;
}

static void epoll_fini(poller *p) {
  struct epoll_state *s = p->bstate;
  if (!s)
    return;
  if (s->linked) {
    pthread_mutex_lock(&outer_lock);
    if (s->prev)
      s->prev->next = s->next;
    else
      outers = s->next;
    if (s->next)
      s->next->prev = s->prev;
    pthread_mutex_unlock(&outer_lock);
  }
  close(s->epfd);
  if (s->spare >= 0)
    close(s->spare);
  if (s->outer >= 0)
    close(s->outer);
  if (s->old >= 0)
    close(s->old);
  free(s);
  p->bstate = NULL;
}

static int epoll_ctl_fd(poller *p, int fd, struct poller__fd *e, unsigned have,
                        unsigned want, int rearm) {
  struct epoll_state *s = p->bstate;
  struct epoll_event ev;
  int op;
  (void)rearm;
  if (!want)
    op = EPOLL_CTL_DEL;
  else if (!have)
    op = EPOLL_CTL_ADD;
  else
    op = EPOLL_CTL_MOD;
  ev.events = to_epoll(want);
  ev.data.u64 = (uint64_t)(uint32_t)fd | ((uint64_t)e->gen << 32);
  if (op == EPOLL_CTL_MOD && (e->flags & FD_GHOST_NUMBER)) {
    /* An older file's entry may sit under this number (a poller_del of
     * it failed after close or after dup2 over the number), and this MOD may land on it instead of on
     * ours if that file is back on the number: both entries would then
     * report under the live generation (test
     * mod_after_close_before_del_reports_once).  A new set drops it; once
     * per such number, never on the common paths. */
    p->rebuild_due = 1;
  }
  p->stats.syscalls++;
  if (epoll_ctl(s->epfd, op, fd, &ev) == 0)
    return 0;
  int err = errno;
  if ((err == EBADF || err == ENOENT) && op == EPOLL_CTL_DEL) {
    /* The registration's file left the number (closed: EBADF; another
     * file put there: ENOENT) while something else may keep it open, so
     * its entry may stay in the set under this number (tests
     * mod_after_close_before_del_reports_once and
     * mod_after_replaced_before_del_reports_once). */
    poller__set_flags(p, e, FD_GHOST_NUMBER);
  }
  if (err == EEXIST && op == EPOLL_CTL_ADD) {
    /* The core holds nothing for fd, so the set's entry for this very
     * (file, number) pair is a ghost: a poller_del whose removal failed
     * because the fd was closed while a dup kept the file, and the file
     * has come back on the number.  It becomes this registration. */
    p->stats.syscalls++;
    if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, fd, &ev) == 0)
      return 0;
    err = errno;
  }
  if (err == ENOENT && op == EPOLL_CTL_MOD) {
    /* The number holds a file the set does not know: fd was closed and
     * reopened, or another file was dup2'ed onto it.  In the second case
     * the old file may live on through a dup, and its entry carries this
     * registration's generation: its reports would pass as current (and
     * outside the interest) at every wait.  Register the new file and
     * have the core replace the set, which drops the ghost. */
    p->rebuild_due = 1;
    op = EPOLL_CTL_ADD;
    p->stats.syscalls++;
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
      return 0;
    err = errno;
  }
  if (err == EBADF && op == EPOLL_CTL_MOD) {
    /* The number was closed behind the poller.  If a dup keeps its file
     * alive, the set still holds that file's entry under this
     * registration's generation, which the core keeps (disarmed) until
     * poller_del: re-armed on a new file, the registration would be
     * reported twice, once for each file (test
     * contract_closed_with_dup_then_rearm_reports_once).  Only a new set
     * drops the entry; this costs one rebuild per refused change, never
     * on a poller_del. */
    p->rebuild_due = 1;
  }
  if (err == EPERM && op == EPOLL_CTL_ADD)
    return POLLER__ALWAYS_READY;
  return -err;
}

/* Converts the kernel's report *b into *o, in place (see epoll_wait_fd:
 * *o may overlap the report before b, never b or a later one).  Reports
 * of plain, current registrations get their final form at once; the
 * others are marked POLLER__RAW (and counted in *raw) for the core's
 * filter, which checks everything (bound, flags, generation, hang-up).
 * The fast test is two compares:
 *   - the bits are among IN, PRI, OUT and ERR: a hang-up (which must add
 *     IN, poller__hup_in) and any bit the kernel may add one day go to
 *     the filter, so the fast path needs neither a mask nor a merge;
 *   - the entry at fd & fdmask holds the plain tag {fd, gen} equal to the
 *     kernel's data (internal.h): the entry is that very fd's (so the
 *     masked index is its number: no bound check needed, and a number
 *     beyond the table fails the compare), the registration is
 *     plain, and the report carries its generation. */
static inline void convert(const struct epoll_event *b, poller_event *o,
                           const struct poller__fd *fds, unsigned mask,
                           int *raw) {
  /* The report is read whole first, with memcpy: the reads may alias the
   * caller's slots (the buffer is shared), which typed reads of another
   * type would let the compiler move past the stores below. */
  uint32_t ev;
  uint64_t u;
  memcpy(&ev, (const char *)b + offsetof(struct epoll_event, events),
         sizeof ev);
  memcpy(&u, (const char *)b + offsetof(struct epoll_event, data), sizeof u);
  /* fd and gen go out as they came in. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  /* One 8-byte copy of the kernel's data: fd in its low half, gen in its
   * high half, the order of the two first fields of poller_event. */
  _Static_assert(offsetof(poller_event, fd) == 0 &&
                     offsetof(poller_event, gen) == 4,
                 "fd and gen are the first 8 bytes of a report");
  memcpy(o, &u, sizeof u);
#else
  o->fd = (int)(uint32_t)u;
  o->gen = (unsigned)(u >> 32);
#endif
  const struct poller__fd *e = &fds[(uint32_t)u & mask];
  /* The entry is always in the table, so its data is read before the
   * verdict, with no branch: a raw report's data is never read (the
   * filter rewrites or drops it). */
  o->data = e->data;
  o->events = ev;
  if (__builtin_expect((ev & ~FAST_BITS) != 0 || poller__tag_word(e) != u, 0)) {
    o->events = to_bits(ev) | POLLER__RAW;
    (*raw)++;
    return;
  }
#ifdef POLLER__CHECK_INVARIANTS
  /* The plain tag's invariant (internal.h): a report taken on the fast
   * path is of a plain registration, of its current generation.  A flag
   * set without voiding the tag would break it. */
  if (e->flags != FD_REGISTERED || e->gen != (unsigned)(u >> 32))
    abort();
#endif
}

static int epoll_wait_fd(poller *p, poller_event *out, int max,
                         int timeout_ms) {
  struct epoll_state *s = p->bstate;
  /* The kernel writes its reports (r bytes each: 12 on x86-64, where the
   * struct is packed, and on i686; 16 on arm64) at the end of the
   * caller's buffer of max slots (s >= r bytes each), from offset
   * B = max * (s - r), and they are converted in place, front to back.
   * Report i is read whole before out[i] is written, and out[i] ends at
   * (i + 1) * s <= B + (i + 1) * r, where report i + 1 starts, because
   * i + 1 <= max: nothing unread is ever overwritten.  No buffer of our
   * own: no memory per fd, no copy.  B must suit the struct's alignment. */
  _Static_assert(sizeof(poller_event) >= sizeof(struct epoll_event),
                 "the in-place conversion needs a slot per kernel report");
  _Static_assert((sizeof(poller_event) - sizeof(struct epoll_event)) %
                         _Alignof(struct epoll_event) ==
                     0,
                 "the kernel's reports must be aligned in the buffer");
  struct epoll_event *buf =
      (struct epoll_event *)(void *)((char *)out +
                                     (size_t)max *
                                         (sizeof(poller_event) -
                                          sizeof(struct epoll_event)));
  p->stats.syscalls++;
  int n = epoll_wait(s->epfd, buf, max, timeout_ms);
  if (n < 0)
    return -errno;
  /* Each report is converted in place by convert() above. */
  const struct poller__fd *fds = p->fds;
  const unsigned mask = p->fdmask;
  int raw = 0;
  /* Four reports per turn, at constant offsets from one pair of pointers:
   * the loop's own instructions (4 per turn) are then 1 per report of
   * about 15 (GCC 12, callgrind); rolled, or unrolled by the compiler
   * (which steps both pointers per report), they cost 2 to 4. */
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    convert(&buf[i], &out[i], fds, mask, &raw);
    convert(&buf[i + 1], &out[i + 1], fds, mask, &raw);
    convert(&buf[i + 2], &out[i + 2], fds, mask, &raw);
    convert(&buf[i + 3], &out[i + 3], fds, mask, &raw);
  }
  for (; i < n; i++)
    convert(&buf[i], &out[i], fds, mask, &raw);
  p->nfinal = raw ? -1 : n;
  return n;
}

/* Makes `outer` watch the working set `set`. */
static int hold(poller *p, int outer, int set) {
  struct epoll_event ev = {.events = EPOLLIN};
  p->stats.syscalls++;
  return epoll_ctl(outer, EPOLL_CTL_ADD, set, &ev) < 0 ? -errno : 0;
}

static int epoll_fd(const poller *p) {
  /* bstate is the backend's own, even through a const poller. */
  struct epoll_state *s = p->bstate;
  if (s->outer >= 0)
    return s->outer;
  (void)pthread_once(&outer_once, outer_register);
  /* Under the lock, so that a fork in another thread never copies an
   * outer instance the fork handler does not know. */
  pthread_mutex_lock(&outer_lock);
  int o = epoll_create1(EPOLL_CLOEXEC);
  /* In a forked child before poller_reinit the working set is the
   * parent's: the outer instance starts empty, and poller_reinit makes
   * it hold the child's set. */
  if (o >= 0 && p->fork_gen == poller__platform_fork_gen()) {
    struct epoll_event ev = {.events = EPOLLIN};
    if (epoll_ctl(o, EPOLL_CTL_ADD, s->epfd, &ev) < 0) {
      close(o);
      o = -1;
    }
  }
  if (o >= 0) {
    s->outer = o;
    if (!s->linked) {
      s->linked = 1;
      s->prev = NULL;
      s->next = outers;
      if (outers)
        outers->prev = s;
      outers = s;
    }
  }
  pthread_mutex_unlock(&outer_lock);
  return o; /* -1: out of descriptors (poller.h) */
}

/* In-process: replaces the working set with the spare, an empty
 * instance, so that ghosts of closed fds go with the old one; the core
 * then adds every registration again.  poller_fd keeps its number and its
 * place in a loop that nests it: the outer instance only swaps what it
 * holds. */
static int epoll_rebuild(poller *p) {
  struct epoll_state *s = p->bstate;
  int fresh = s->spare;
  if (fresh < 0 && (fresh = epoll_create1(EPOLL_CLOEXEC)) < 0)
    return -errno;
  s->spare = -1;
  if (s->outer >= 0) {
    int r = hold(p, s->outer, fresh);
    if (r < 0) {
      s->spare = fresh;
      return r;
    }
    p->stats.syscalls++;
    (void)epoll_ctl(s->outer, EPOLL_CTL_DEL, s->epfd, NULL);
  }
  /* The replaced set stays open until settle: it tells which edges were
   * still undelivered.  A set a nested rebuild replaces in between holds
   * nothing settle needs. */
  p->stats.syscalls++;
  if (s->old >= 0)
    close(s->epfd);
  else
    s->old = s->epfd;
  s->epfd = fresh;
  return 0;
}

/* The number of reports one harvest call of settle takes. */
#define SETTLE_BATCH 64

/* Calls fn for each report of set, without blocking.  Level entries come
 * back at every call, so the calls are bounded by the number of entries
 * the set may hold: each call takes at least SETTLE_BATCH new ones, as
 * epoll hands out its ready list in order and requeues level entries at
 * its end. */
static void harvest(poller *p, int set,
                    void (*fn)(poller *p, struct poller__fd *e, int fd)) {
  struct epoll_event buf[SETTLE_BATCH];
  size_t rounds = (p->count + 1) / SETTLE_BATCH + 2;
  for (size_t r = 0; r < rounds; r++) {
    p->stats.syscalls++;
    int n = epoll_wait(set, buf, SETTLE_BATCH, 0);
    for (int i = 0; i < n; i++) {
      uint64_t u = buf[i].data.u64;
      int fd = (int)(uint32_t)u;
      struct poller__fd *e = poller__entry(p, fd);
      if (e && (e->flags & FD_REGISTERED) && e->gen == (unsigned)(u >> 32))
        fn(p, e, fd);
    }
    if (n < SETTLE_BATCH)
      break;
  }
}

/* Re-polls fd in the working set with the mask it holds: the kernel
 * queues a report (an edge, for ET) when the file is ready. */
static void repoll(poller *p, struct poller__fd *e, int fd) {
  struct epoll_state *s = p->bstate;
  struct epoll_event ev;
  ev.events = to_epoll(poller__kmask(e));
  ev.data.u64 = (uint64_t)(uint32_t)fd | ((uint64_t)e->gen << 32);
  p->stats.syscalls++;
  (void)epoll_ctl(s->epfd, EPOLL_CTL_MOD, fd, &ev);
}

static int is_edge(const struct poller__fd *e) {
  unsigned k = poller__kmask(e);
  return (k & POLLER_ET) && !(k & POLLER_ONESHOT);
}

/* A report of the new set taken by settle: an ET edge of an entry marked
 * FD_REBUILT is dropped, which is the point; a ONESHOT entry was disarmed
 * by the harvest and is armed again (it is still ready, so it is queued
 * again); a level entry is queued again by the kernel itself. */
static void settle_new(poller *p, struct poller__fd *e, int fd) {
  unsigned k = poller__kmask(e);
  if ((k & POLLER_ONESHOT) || (is_edge(e) && !(e->flags & FD_REBUILT)))
    repoll(p, e, fd);
}

/* A report still queued in the old set: for an ET entry, an edge that came
 * after the last wait and that the harvest of the new set took: queue it
 * again in the new set. */
static void settle_old(poller *p, struct poller__fd *e, int fd) {
  if (is_edge(e))
    repoll(p, e, fd);
}

/* After a rebuild, once every registration is in the new set: adding a
 * ready ET registration gave it an edge although nothing happened to its
 * file, and it would be reported again.  The new set's reports are taken
 * first (dropping those edges), then the old set's: an ET edge still
 * queued there came after the last wait, so it is queued again.  An edge
 * arriving between the two harvests is queued in both sets and thus
 * reported.  Costs nothing outside a rebuild. */
static void epoll_settle(poller *p) {
  struct epoll_state *s = p->bstate;
  if (s->old < 0)
    return;
  harvest(p, s->epfd, settle_new);
  harvest(p, s->old, settle_old);
  p->stats.syscalls++;
  close(s->old);
  s->old = -1;
  if (s->spare < 0) {
    /* The number just freed makes this succeed unless another thread
     * took it; without a spare the next rebuild creates one. */
    p->stats.syscalls++;
    s->spare = epoll_create1(EPOLL_CLOEXEC);
  }
}

static int epoll_reinit(poller *p) {
  /* In a forked child every descriptor of the state refers to one of the
   * parent's instances: closing the child's copies leaves the parent's
   * sets alone, while a change made through them would change the
   * parent's (eventlet#68).  So each is replaced, none is changed; the
   * outer instance keeps its number (dup3 closes the old reference), so
   * poller_fd stays valid for a caller that nests it. */
  struct epoll_state *s = p->bstate;
  int fresh = epoll_create1(EPOLL_CLOEXEC);
  if (fresh < 0)
    return -errno;
  int spare = epoll_create1(EPOLL_CLOEXEC);
  int r = spare < 0 ? -errno : 0;
  if (r == 0 && s->outer >= 0) {
    int o = epoll_create1(EPOLL_CLOEXEC);
    if (o < 0)
      r = -errno;
    else if ((r = hold(p, o, fresh)) == 0 && dup3(o, s->outer, O_CLOEXEC) < 0)
      r = -errno;
    if (o >= 0)
      close(o);
  }
  if (r < 0) {
    close(fresh);
    if (spare >= 0)
      close(spare);
    return r;
  }
  close(s->epfd);
  s->epfd = fresh;
  if (s->spare >= 0)
    close(s->spare);
  s->spare = spare;
  return 0;
}

const struct poller__backend poller__backend_epoll = {
    .id = POLLER_EPOLL,
    .name = "epoll",
    .caps = POLLER_ET | POLLER_ONESHOT | POLLER__CAP_SYNC_ADD |
            POLLER__CAP_STALE_REBUILD | POLLER__CAP_PLAIN_TAG,
    .probe = epoll_probe,
    .init = epoll_init,
    .fini = epoll_fini,
    .ctl = epoll_ctl_fd,
    .wait = epoll_wait_fd,
    .fd = epoll_fd,
    .reinit = epoll_reinit,
    .rebuild = epoll_rebuild,
    .settle = epoll_settle,
};
