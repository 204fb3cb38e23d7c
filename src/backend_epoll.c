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
 */
#define _GNU_SOURCE /* dup3 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

/* POLLER_IN, _ERR and _HUP equal their EPOLL bits; OUT and PRI are
 * swapped (the public values follow the API's own order). */
_Static_assert(POLLER_IN == EPOLLIN && POLLER_ERR == EPOLLERR &&
                   POLLER_HUP == EPOLLHUP && EPOLLOUT == POLLER_OUT << 1 &&
                   EPOLLPRI == POLLER_PRI >> 1 &&
                   EPOLLRDHUP == POLLER_RDHUP << 8,
               "the bit moves in epoll_wait_fd rely on these values");

struct epoll_state {
  int epfd;
};

static uint32_t to_epoll(unsigned want) {
  uint32_t ev = want & (POLLER_IN | POLLER_ERR | POLLER_HUP);
  if (want & POLLER_OUT)
    ev |= EPOLLOUT;
  if (want & POLLER_PRI)
    ev |= EPOLLPRI;
  if (want & POLLER_RDHUP)
    ev |= EPOLLRDHUP;
  if (want & POLLER_ET)
    ev |= EPOLLET;
  if (want & POLLER_ONESHOT)
    ev |= EPOLLONESHOT;
  return ev;
}

/* Branch-free: IN, ERR, HUP keep their places, OUT (0x4) and PRI (0x2)
 * swap, EPOLLRDHUP (0x2000) moves to POLLER_RDHUP (0x20). */
static inline unsigned to_bits(uint32_t ev) {
  if (!(ev & (EPOLLOUT | EPOLLPRI | EPOLLRDHUP)))
    return ev; /* IN, ERR, HUP only: the same bits (the usual report) */
  return (ev & (POLLER_IN | POLLER_ERR | POLLER_HUP)) |
         ((ev >> 1) & POLLER_OUT) | ((ev << 1) & POLLER_PRI) |
         ((ev >> 8) & POLLER_RDHUP);
}

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
  s->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (s->epfd < 0) {
    int r = -errno;
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
  close(s->epfd);
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
  p->stats.syscalls++;
  if (epoll_ctl(s->epfd, op, fd, &ev) == 0)
    return 0;
  int err = errno;
  if (err == EPERM && op == EPOLL_CTL_ADD)
    return POLLER__ALWAYS_READY;
  if (err == ENOENT && op == EPOLL_CTL_MOD) {
    /* The kernel dropped it: the fd was closed and reopened under the
     * same number.  Register the new file afresh. */
    p->stats.syscalls++;
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
      return 0;
    err = errno;
  }
  return -err;
}

static int epoll_wait_fd(poller *p, poller_event *out, int max,
                         int timeout_ms) {
  struct epoll_state *s = p->bstate;
  /* The kernel writes its 12-byte reports into the upper half of the
   * caller's buffer (24-byte reports), and they are converted in place,
   * front to back: report i is read before out[i] is written, and out[i]
   * ends at or below where report i + 1 starts, so nothing unread is ever
   * overwritten.  No buffer of our own: no memory per fd, no copy. */
  _Static_assert(sizeof(poller_event) >= 2 * sizeof(struct epoll_event),
                 "the in-place conversion needs 2 kernel reports per slot");
  struct epoll_event *buf =
      (struct epoll_event *)(void *)((char *)out +
                                     (size_t)max * (sizeof(poller_event) -
                                                    sizeof(struct epoll_event)));
  p->stats.syscalls++;
  int n = epoll_wait(s->epfd, buf, max, timeout_ms);
  if (n < 0)
    return -errno;
  /* Plain registrations get their final report at once (the core's
   * verdict, inlined); the others are marked POLLER__RAW for the core's
   * filter. */
  const struct poller__fd *fds = p->fds;
  const unsigned nfds = (unsigned)p->nfds;
  int raw = 0;
  for (int i = 0; i < n; i++) {
    uint64_t u = buf[i].data.u64;
    unsigned bits = to_bits(buf[i].events);
    int fd = (int)(uint32_t)u;
    unsigned gen = (unsigned)(u >> 32);
    if (!poller__report_plain(fds, nfds, &out[i], fd, bits, gen)) {
      out[i].fd = fd;
      out[i].events = bits | POLLER__RAW;
      out[i].gen = gen;
      out[i].data = NULL;
      raw++;
    }
  }
  p->nfinal = raw ? -1 : n;
  return n;
}

static int epoll_fd(const poller *p) {
  return ((const struct epoll_state *)p->bstate)->epfd;
}

static int epoll_reinit(poller *p) {
  /* The child's copy of the epoll fd refers to the parent's instance:
   * closing the copy leaves the parent's set alone, while any change made
   * through it would change the parent's (eventlet#68).  The new instance
   * takes the old number (dup3 closes the old reference), so poller_fd
   * stays valid for a caller that nests it; the core also rebuilds the set
   * this way in-process to drop ghosts of closed fds (poller.c). */
  struct epoll_state *s = p->bstate;
  int fd = epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0)
    return -errno;
  if (dup3(fd, s->epfd, O_CLOEXEC) < 0) {
    int r = -errno;
    close(fd);
    return r;
  }
  close(fd);
  return 0;
}

const struct poller__backend poller__backend_epoll = {
    .id = POLLER_EPOLL,
    .name = "epoll",
    .caps = POLLER_ET | POLLER_ONESHOT | POLLER__CAP_SYNC_ADD |
            POLLER__CAP_STALE_REBUILD,
    .probe = epoll_probe,
    .init = epoll_init,
    .fini = epoll_fini,
    .ctl = epoll_ctl_fd,
    .wait = epoll_wait_fd,
    .fd = epoll_fd,
    .reinit = epoll_reinit,
};
