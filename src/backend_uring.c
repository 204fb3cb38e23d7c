/*
 * backend_uring.c - io_uring poll requests (IORING_OP_POLL_ADD), Linux 5.13+
 * through liburing.
 *
 * Every watched fd has at most one poll request in flight.  Its user_data
 * is  fd (24 bits) | tag (8 bits) << 24 | generation << 32 : the generation
 * lets the core drop reports of an earlier registration of the same fd
 * number, the tag lets this file drop completions of a request it already
 * replaced (a cancelled request still posts a CQE).  The per-fd state (the
 * tag and whether a request is armed) lives in the table entry's backend
 * slot, e->bidx.
 *
 * Modes:
 *  - ET: one multishot request (IORING_POLL_ADD_MULTI), which the kernel
 *    reports edge-triggered; re-armed if the kernel ends it (no F_MORE).
 *  - level: a single-shot request, re-armed by this file after each
 *    completion; the new request is submitted with the next wait, so a fd
 *    that stays ready is reported at every wait, as with epoll.
 *  - ONESHOT: a single-shot request that only ctl(rearm) renews.
 *
 * Adds and changes only queue SQEs; they reach the kernel with the next
 * wait, in the same io_uring_enter (one system call per iteration).
 * Removals are submitted at once: a POLL_REMOVE is executed inline during
 * submission, so the request is gone when poller_del returns and closing
 * the fd right after is safe (libuv#4323, where a deferred
 * removal ran after close).
 *
 * The probe refuses kernels without multishot poll (5.13) and honours the
 * test hook poller__fault[POLLER__FAULT_URING_SETUP]; POLLER_AUTO then falls
 * back (Docker's seccomp EPERM, moby#46762; the
 * kernel.io_uring_disabled sysctl; old kernels).
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/utsname.h>

#define RING_ENTRIES 256
#define REMOVE_UD (~(uint64_t)0) /* completions of removals: skipped */

/* e->bidx layout. */
#define SLOT_TAG 0xffu
#define SLOT_ARMED 0x100u
#define SLOT_INBATCH 0x200u
#define SLOT_REARM 0x400u /* in s->rearm: renew at the next wait */

struct uring_state {
  struct io_uring ring;
  unsigned pending; /* SQEs queued since the last submit */
  /* Level requests that completed: renewed at the start of the next wait,
   * after the caller has read, so the renewed request sees the readiness
   * of that moment (renewing at once would report data already read). */
  int *rearm;
  int nrearm, caprearm;
};

static uint64_t make_ud(int fd, unsigned tag, unsigned gen) {
  return (uint64_t)((uint32_t)fd & 0xffffffu) | ((uint64_t)(tag & 0xff) << 24) |
         ((uint64_t)gen << 32);
}

static unsigned to_pollmask(unsigned want) {
  unsigned m = 0;
  if (want & POLLER_IN)
    m |= POLLIN;
  if (want & POLLER_OUT)
    m |= POLLOUT;
  if (want & POLLER_PRI)
    m |= POLLPRI;
  if (want & POLLER_RDHUP)
    m |= POLLRDHUP;
  return m;
}

static unsigned from_pollmask(unsigned m) {
  unsigned bits = 0;
  if (m & POLLIN)
    bits |= POLLER_IN;
  if (m & POLLOUT)
    bits |= POLLER_OUT;
  if (m & POLLPRI)
    bits |= POLLER_PRI;
  if (m & POLLERR)
    bits |= POLLER_ERR;
  if (m & POLLHUP)
    bits |= POLLER_HUP;
  if (m & POLLRDHUP)
    bits |= POLLER_RDHUP;
  if (m & POLLNVAL)
    bits |= POLLER_NVAL;
  return bits;
}

/* Multishot poll came with Linux 5.13; the opcode probe cannot tell it. */
static int kernel_has_multishot(void) {
  struct utsname u;
  int major = 0, minor = 0;
  if (uname(&u) < 0 || sscanf(u.release, "%d.%d", &major, &minor) != 2)
    return 0;
  return major > 5 || (major == 5 && minor >= 13);
}

static int ring_setup(struct io_uring *ring, unsigned entries) {
  if (poller__fault[POLLER__FAULT_URING_SETUP])
    return poller__fault[POLLER__FAULT_URING_SETUP];
  struct io_uring_params params;
  memset(&params, 0, sizeof params);
  /* COOP_TASKRUN (5.19) avoids an IPI per completion; SUBMIT_ALL (5.18)
   * keeps submitting after a failed SQE.  Older kernels refuse unknown
   * flags with EINVAL: retry without them.  DEFER_TASKRUN is not used: it
   * would keep the ring fd from turning readable for a nesting loop. */
  params.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL |
                 IORING_SETUP_CQSIZE;
  params.cq_entries = entries * 8;
  int r = io_uring_queue_init_params(entries, ring, &params);
  if (r == -EINVAL) {
    memset(&params, 0, sizeof params);
    r = io_uring_queue_init_params(entries, ring, &params);
  }
  if (r < 0)
    return r;
  if (!(params.features & IORING_FEAT_NODROP) ||
      !(params.features & IORING_FEAT_EXT_ARG)) {
    /* Without NODROP an overflowing CQ loses readiness reports; without
     * EXT_ARG (5.11) a wait cannot carry its timeout. */
    io_uring_queue_exit(ring);
    return -ENOSYS;
  }
  return 0;
}

static int uring_probe(void) {
  if (poller__fault[POLLER__FAULT_URING_SETUP])
    return poller__fault[POLLER__FAULT_URING_SETUP];
  if (!kernel_has_multishot())
    return -ENOSYS;
  struct io_uring ring;
  int r = ring_setup(&ring, 4);
  if (r < 0)
    return r;
  struct io_uring_probe *probe = io_uring_get_probe_ring(&ring);
  int ok = probe && io_uring_opcode_supported(probe, IORING_OP_POLL_ADD) &&
           io_uring_opcode_supported(probe, IORING_OP_POLL_REMOVE);
  if (probe)
    io_uring_free_probe(probe);
  io_uring_queue_exit(&ring);
  return ok ? 0 : -ENOSYS;
}

static int uring_init(poller *p) {
  int r = uring_probe();
  if (r < 0)
    return r;
  struct uring_state *s = calloc(1, sizeof *s);
  if (!s)
    return -ENOMEM;
  if ((r = ring_setup(&s->ring, RING_ENTRIES)) < 0) {
    free(s);
    return r;
  }
  p->bstate = s;
  return 0;
}

static void uring_fini(poller *p) {
  struct uring_state *s = p->bstate;
  if (!s)
    return;
  io_uring_queue_exit(&s->ring);
  free(s->rearm);
  free(s);
  p->bstate = NULL;
}

static int submit(poller *p) {
  struct uring_state *s = p->bstate;
  p->stats.syscalls++;
  s->pending = 0;
  int r = io_uring_submit(&s->ring);
  return r < 0 ? r : 0;
}

/* Returns a free SQE, submitting the queued ones when the ring is full. */
static struct io_uring_sqe *get_sqe(poller *p) {
  struct uring_state *s = p->bstate;
  struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
  if (!sqe) {
    if (submit(p) < 0)
      return NULL;
    sqe = io_uring_get_sqe(&s->ring);
  }
  if (sqe)
    s->pending++;
  return sqe;
}

/* Queues a new poll request for fd with mask `want`. */
static int arm(poller *p, int fd, struct poller__fd *e, unsigned want) {
  struct io_uring_sqe *sqe = get_sqe(p);
  if (!sqe)
    return -EBUSY;
  unsigned tag = ((unsigned)e->bidx + 1) & SLOT_TAG;
  /* The wakeup channel is drained at each report: multishot (edge) fits
   * it and never needs renewing. */
  if ((want & POLLER_ET) || (e->flags & FD_INTERNAL))
    io_uring_prep_poll_multishot(sqe, fd, to_pollmask(want));
  else
    io_uring_prep_poll_add(sqe, fd, to_pollmask(want));
  io_uring_sqe_set_data64(sqe, make_ud(fd, tag, e->gen));
  e->bidx = (int32_t)(tag | SLOT_ARMED); /* also drops SLOT_REARM */
  return 0;
}

/* Queues the cancellation of fd's armed request. */
static int disarm(poller *p, int fd, struct poller__fd *e) {
  if (!((unsigned)e->bidx & SLOT_ARMED))
    return 0;
  struct io_uring_sqe *sqe = get_sqe(p);
  if (!sqe)
    return -EBUSY;
  io_uring_prep_poll_remove(sqe, make_ud(fd, (unsigned)e->bidx & SLOT_TAG,
                                         e->gen));
  io_uring_sqe_set_data64(sqe, REMOVE_UD);
  e->bidx = (int32_t)((unsigned)e->bidx & SLOT_TAG);
  return 0;
}

/* Sizes the re-arm list for every fd that may hold a request. */
static int rearm_reserve(poller *p) {
  struct uring_state *s = p->bstate;
  size_t need = p->count + 8;
  if (need <= (size_t)s->caprearm)
    return 0;
  size_t cap = s->caprearm ? (size_t)s->caprearm : 64;
  while (cap < need)
    cap *= 2;
  int *r = realloc(s->rearm, cap * sizeof *r);
  if (!r)
    return -ENOMEM;
  s->rearm = r;
  s->caprearm = (int)cap;
  return 0;
}

/* Files without a poll wait queue (regular files, directories, block
 * devices) complete every poll request at once; a multishot request on
 * them would be renewed forever.  They are always ready, as epoll's EPERM
 * files are (asio#111).  The fstat also validates the fd. */
static int unpollable(int fd) {
  struct stat st;
  if (fstat(fd, &st) < 0)
    return -errno;
  return S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode);
}

static int uring_ctl(poller *p, int fd, struct poller__fd *e, unsigned have,
                     unsigned want, int rearm) {
  int r;
  (void)rearm;
  if (!have && want) {
    e->bidx &= (int32_t)SLOT_TAG; /* a new registration has no request */
    p->stats.syscalls++;
    if ((r = unpollable(fd)) != 0)
      return r < 0 ? r : POLLER__ALWAYS_READY;
    if ((r = rearm_reserve(p)) < 0)
      return r;
  }
  if (!want) {
    if ((r = disarm(p, fd, e)) < 0)
      return r;
    /* Synchronous: the kernel has cancelled the request on return. */
    return submit(p);
  }
  /* A change, or a re-arm: the old request (if still armed) is cancelled
   * and a new one queued, both reaching the kernel with the next wait.
   * The old request's completions carry the old tag and are skipped. */
  if ((r = disarm(p, fd, e)) < 0 || (r = arm(p, fd, e, want)) < 0)
    return r;
  return 0;
}

/* Queues the renewal of the level requests that completed. */
static void renew(poller *p) {
  struct uring_state *s = p->bstate;
  for (int i = 0; i < s->nrearm; i++) {
    int fd = s->rearm[i];
    struct poller__fd *e = &p->fds[fd];
    if (((unsigned)e->bidx & SLOT_REARM) && e->kmask)
      (void)arm(p, fd, e, e->kmask);
    e->bidx &= ~(int32_t)SLOT_REARM;
  }
  s->nrearm = 0;
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int cq_overflowed(struct uring_state *s) {
  return (IO_URING_READ_ONCE(*s->ring.sq.kflags) & IORING_SQ_CQ_OVERFLOW) != 0;
}

/* Publishes the queued SQEs (what liburing's submit does: the SQ array is
 * the identity, set up by liburing at init) and enters the kernel once,
 * submitting them and waiting for `min` completions or the timeout.
 * Returns the kernel's result: the number submitted, or -errno. */
static int enter(poller *p, unsigned min, int timeout_ms) {
  struct uring_state *s = p->bstate;
  struct io_uring_sq *sq = &s->ring.sq;
  unsigned tail = sq->sqe_tail;
  if (sq->sqe_head != tail) {
    sq->sqe_head = tail;
    io_uring_smp_store_release(sq->ktail, tail);
  }
  unsigned submit = tail - IO_URING_READ_ONCE(*sq->khead);
  s->pending = 0;
  struct io_uring_getevents_arg arg;
  struct __kernel_timespec ts;
  unsigned flags = IORING_ENTER_GETEVENTS;
  void *argp = NULL;
  size_t argsz = _NSIG / 8;
  if (timeout_ms >= 0 && min) {
    ts.tv_sec = timeout_ms / 1000;
    ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
    memset(&arg, 0, sizeof arg);
    arg.ts = (uint64_t)(uintptr_t)&ts;
    flags |= IORING_ENTER_EXT_ARG;
    argp = &arg;
    argsz = sizeof arg;
  }
  p->stats.syscalls++;
  return io_uring_enter2((unsigned)s->ring.ring_fd, submit, min, flags, argp,
                         argsz);
}

static int uring_wait(poller *p, poller_event *out, int max, int timeout_ms) {
  struct uring_state *s = p->bstate;
  struct io_uring_cqe *cqe = NULL;
  int r;
  renew(p);
  if (timeout_ms == 0 || io_uring_cq_ready(&s->ring)) {
    /* Nothing to wait for: enter the kernel only to submit, or to flush an
     * overflowed CQ (libuv#3991); otherwise this wait is free. */
    if (s->pending || cq_overflowed(s)) {
      r = enter(p, 0, -1);
      if (r < 0 && r != -EINTR)
        return r;
    }
  } else {
    long long t0 = timeout_ms > 0 ? now_ms() : 0;
    r = enter(p, 1, timeout_ms);
    if (r == -ETIME)
      return 0;
    if (r < 0)
      return r;
    if (!io_uring_cq_ready(&s->ring)) {
      /* The kernel returns the number submitted even when the wait was
       * cut short, so an empty CQ is either the deadline or a signal:
       * the clock tells which (the core retries EINTR against its own
       * deadline).  liburing's submit_and_wait_timeout would instead
       * enter again with the whole timeout and hide the signal. */
      if (timeout_ms > 0 && now_ms() - t0 >= timeout_ms)
        return 0;
      return -EINTR;
    }
  }
  int n = 0, raw = 0;
again:;
  unsigned seen = 0;
  unsigned head;
  io_uring_for_each_cqe(&s->ring, head, cqe) {
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    if (ud == REMOVE_UD) {
      seen++;
      continue;
    }
    int fd = (int)(ud & 0xffffffu);
    unsigned tag = (unsigned)(ud >> 24) & SLOT_TAG;
    unsigned gen = (unsigned)(ud >> 32);
    struct poller__fd *e = poller__entry(p, fd);
    if (!e || e->gen != gen || !((unsigned)e->bidx & SLOT_ARMED) ||
        ((unsigned)e->bidx & SLOT_TAG) != tag) {
      /* A replaced or cancelled request, or an earlier registration.
       * Cancellations are expected and not counted. */
      if (cqe->res != -ECANCELED)
        p->stats.stale++;
      seen++;
      continue;
    }
    if ((unsigned)e->bidx & SLOT_INBATCH) {
      /* A second multishot completion in this wait: merge. */
      for (int j = n - 1; j >= 0; j--)
        if (out[j].fd == fd) {
          out[j].events |= cqe->res >= 0 ? from_pollmask((unsigned)cqe->res)
                                         : POLLER_ERR;
          break;
        }
      if (!(cqe->flags & IORING_CQE_F_MORE))
        e->bidx &= ~(int32_t)SLOT_ARMED;
      seen++;
      continue;
    }
    if (n == max)
      break; /* the rest stay in the ring for the next wait */
    seen++;
    unsigned bits;
    if (cqe->res >= 0)
      bits = from_pollmask((unsigned)cqe->res);
    else
      bits = POLLER_ERR | POLLER_NVAL; /* the kernel refused the fd */
    if (!(cqe->flags & IORING_CQE_F_MORE))
      e->bidx &= ~(int32_t)SLOT_ARMED; /* the request is finished */
    e->bidx |= (int32_t)SLOT_INBATCH;
    /* Plain registrations get their final report here (the core's
     * verdict, inlined); the rest are marked for the core's filter. */
    /* The kernel may add bits that were not asked for (RDHUP): the
     * interest masks them first, as poller__report_plain requires. */
    unsigned asked = bits & ((e->events & 0x3fu) | POLLER_ERR | POLLER_HUP);
    if (!asked || (bits & POLLER_NVAL) ||
        !poller__report_plain(p->fds, (unsigned)p->nfds, &out[n], fd, asked,
                              gen)) {
      out[n] = (poller_event){fd, bits | POLLER__RAW, NULL, gen};
      raw++;
    }
    n++;
  }
  io_uring_cq_advance(&s->ring, seen);
  if (n < max && cq_overflowed(s)) {
    /* Completions beyond the CQ ring wait in the kernel's overflow list
     * (NODROP): entering with GETEVENTS moves them into the ring. */
    if (enter(p, 0, -1) >= 0 && io_uring_cq_ready(&s->ring))
      goto again;
  }

  p->nfinal = raw ? -1 : n;
  /* Level requests after each completion, and multishot requests the
   * kernel ended, are renewed at the next wait.  ONESHOT waits for
   * ctl(rearm). */
  for (int i = 0; i < n; i++) {
    struct poller__fd *e = &p->fds[out[i].fd];
    e->bidx &= ~(int32_t)SLOT_INBATCH;
    if (((unsigned)e->bidx & (SLOT_ARMED | SLOT_REARM)) || !e->kmask ||
        (e->kmask & POLLER_ONESHOT) || (out[i].events & POLLER_NVAL) ||
        s->nrearm == s->caprearm)
      continue;
    e->bidx |= (int32_t)SLOT_REARM;
    s->rearm[s->nrearm++] = out[i].fd;
  }
  return n;
}

static int uring_commit(poller *p) {
  struct uring_state *s = p->bstate;
  renew(p);
  return s->pending ? submit(p) : 0;
}

static int uring_fd(const poller *p) {
  return ((const struct uring_state *)p->bstate)->ring.ring_fd;
}

static int uring_reinit(poller *p) {
  /* The child shares the parent's ring mappings: unmap and close the
   * child's copies only (queue_exit submits nothing) and make a new ring. */
  struct uring_state *s = p->bstate;
  io_uring_queue_exit(&s->ring);
  memset(&s->ring, 0, sizeof s->ring);
  s->pending = 0;
  int r = ring_setup(&s->ring, RING_ENTRIES);
  if (r < 0) {
    s->ring.ring_fd = -1;
    return r;
  }
  for (int fd = 0; fd < p->nfds; fd++)
    p->fds[fd].bidx &= (int32_t)SLOT_TAG;
  s->nrearm = 0;
  return 0;
}

const struct poller__backend poller__backend_uring = {
    .id = POLLER_URING,
    .name = "uring",
    .caps = POLLER_ET | POLLER_ONESHOT | POLLER__CAP_SYNC_ADD,
    .probe = uring_probe,
    .init = uring_init,
    .fini = uring_fini,
    .ctl = uring_ctl,
    .wait = uring_wait,
    .commit = uring_commit,
    .fd = uring_fd,
    .reinit = uring_reinit,
};
