/*
 * backend_uring.c - io_uring poll requests (IORING_OP_POLL_ADD), Linux 5.13+
 * through liburing.
 *
 * Every watched fd has at most one poll request in flight.  Its user_data
 * is the fd (32 bits) and a request id (24 bits, renewed at every arm) in
 * the upper half; the id and this file's flags live in the table entry's
 * backend slot, e->bidx.  A completion counts only when its id is the
 * entry's current one: completions of replaced or cancelled requests, and
 * of earlier registrations of the same number, are dropped here.  The whole
 * fd range (up to INT_MAX) fits.
 *
 * Modes:
 *  - level and ONESHOT: a single-shot request.  A level request is renewed
 *    after each report, at the start of the next wait.
 *  - ET: a multishot request (IORING_POLL_ADD_MULTI), which the kernel
 *    reports edge-triggered; renewed only when the kernel ends it.
 *
 * Reports describe readiness at the wait, as epoll's do.  A completion
 * says what was ready when it was posted, and with COOP_TASKRUN it is
 * posted when this thread next enters the kernel, which may be before the
 * caller read the data (a report that was already drained would make a
 * blocking read hang).  So the completions found in the ring when a wait
 * begins (posted between two waits, or left over for want of room) are
 * not reported: their requests are renewed instead, in the same
 * io_uring_enter as the wait, and a renewed request completes during that
 * submission with the file's mask of that moment (vfs_poll), or stays
 * armed.  Only completions posted during the wait's own io_uring_enter are
 * reported.
 *
 * Order (docs/design.md): the renewals of one wait are queued as epoll
 * orders its ready list: the completions left over by the last wait for
 * want of room first, then the level fds reported by the last wait (epoll
 * puts them back at the tail of its ready list when it reports them), then
 * the completions posted since, in the kernel's order; completions posted
 * during the wait's sleep follow in the order the kernel posted them.
 *
 * Kernel quirks handled here:
 *  - The kernel adds POLLRDHUP (with ERR and HUP) to every request's mask:
 *    a level request without IN or RDHUP in its interest completes at once
 *    on a half-closed socket, again and again.  Such a registration is
 *    watched by a multishot request instead ("hint" mode), which completes
 *    only when a wake-up brings something new; a hint that carries an
 *    asked-for bit is reported and renewed as a single-shot request.
 *  - A completion posted by a wake-up carries the wake-up key, not the
 *    file's mask: ordinary data on a socket wakes with IN|PRI.  PRI in a
 *    report is checked with poll(2) before it is reported (rare: only for
 *    registrations that ask for PRI).
 *  - Devices without a poll method (/dev/null) complete every request at
 *    once: they are always ready, as regular files are (epoll refuses both
 *    with EPERM, which is how they are told apart).
 *
 * Removals are synchronous: IORING_OP_ASYNC_CANCEL (not POLL_REMOVE, which
 * fails with -EALREADY on a multishot request that has fired and leaves it
 * armed) is submitted at once; the kernel completes the cancelled request
 * and drops its file reference before io_uring_enter returns to this
 * thread, so closing the fd right after releases the file (libuv#4323,
 * where a deferred removal ran after close).  Adds and changes only queue
 * SQEs; they reach the kernel with the next wait, in the same
 * io_uring_enter (one system call per iteration).
 *
 * poller_close cancels every request and lets them complete before the
 * ring is closed, so every file is released when it returns (the kernel
 * tears a closed ring down later, in the background).  A forked child
 * drops its copy of every ring at fork (pthread_atfork): the child must
 * not keep the parent's files alive, and must never submit to the
 * parent's ring; poller_reinit gives it a ring of its own.
 *
 * The probe refuses kernels without multishot poll (5.13) and honours the
 * test hook poller__fault[POLLER__FAULT_URING_SETUP]; POLLER_AUTO then falls
 * back (Docker's seccomp EPERM, moby#46762; the kernel.io_uring_disabled
 * sysctl; old kernels).
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define RING_ENTRIES 256
/* The fd half of the user_data of control requests (cancellations): never
 * a valid fd. */
#define CTL_FD 0xffffffffu
#define CTL_UD ((uint64_t)CTL_FD)

/* e->bidx layout: the request id, then flags. */
#define SLOT_ID 0x00ffffffu
#define SLOT_ARMED 0x01000000u   /* the current request is in flight */
#define SLOT_MULTI 0x02000000u   /* ... and it is multishot */
#define SLOT_RENEW 0x04000000u   /* in s->renew: renew at the next wait */
#define SLOT_INBATCH 0x08000000u /* reported in this poller_wait */
#define SLOT_HINT 0x10000000u    /* level or ONESHOT watched by multishot */

struct uring_state {
  struct io_uring ring;
  unsigned pending;  /* SQEs queued since the last submit */
  unsigned leftover; /* CQEs the last wait left at the head of the ring */
  int taskrun_flag;  /* the kernel sets IORING_SQ_TASKRUN */
  int dropped;       /* the ring was dropped (forked child, failed reinit) */
  pid_t owner;       /* the process that created the ring */
  /* Level fds reported by the last wait, renewed at the next one, after
   * the caller has read. */
  int *renew;
  int nrenew;
  /* The fds reported by the current poller_wait (SLOT_INBATCH): the core
   * may call wait again in the same poller_wait to top up a batch, and an
   * fd must not be reported twice in one. */
  int *batch;
  int nbatch;
  unsigned long long batch_wait; /* p->stats.waits of that poller_wait */
  int cap; /* of renew, batch and probe: every fd that may be watched */
  struct pollfd *probe;
  struct uring_state *prev, *next; /* live rings, for the fork handler */
};

/* ---- live rings, dropped in a forked child ---- */

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct uring_state *live;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_prepare(void) { pthread_mutex_lock(&live_lock); }
static void atfork_parent(void) { pthread_mutex_unlock(&live_lock); }

/* In the child: unmap and close the child's copy of every ring.  The ring
 * stays the parent's alone: the child cannot keep the parent's files alive
 * through it, and cannot submit to it by mistake. */
static void atfork_child(void) {
  for (struct uring_state *s = live; s; s = s->next) {
    if (!s->dropped) {
      io_uring_queue_exit(&s->ring);
      s->ring.ring_fd = -1;
      s->dropped = 1;
    }
  }
  pthread_mutex_unlock(&live_lock);
}

static void atfork_register(void) {
  (void)pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static void live_link(struct uring_state *s) {
  pthread_mutex_lock(&live_lock);
  s->prev = NULL;
  s->next = live;
  if (live)
    live->prev = s;
  live = s;
  pthread_mutex_unlock(&live_lock);
}

static void live_unlink(struct uring_state *s) {
  pthread_mutex_lock(&live_lock);
  if (s->prev)
    s->prev->next = s->next;
  else
    live = s->next;
  if (s->next)
    s->next->prev = s->prev;
  pthread_mutex_unlock(&live_lock);
}

/* ---- conversions ---- */

static uint64_t make_ud(int fd, unsigned id) {
  return (uint64_t)(uint32_t)fd | ((uint64_t)(id & SLOT_ID) << 32);
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

/* ---- setup ---- */

/* Multishot poll came with Linux 5.13; the opcode probe cannot tell it. */
static int kernel_has_multishot(void) {
  struct utsname u;
  int major = 0, minor = 0;
  if (uname(&u) < 0 || sscanf(u.release, "%d.%d", &major, &minor) != 2)
    return 0;
  return major > 5 || (major == 5 && minor >= 13);
}

static int ring_setup(struct io_uring *ring, unsigned entries,
                      int *taskrun_flag) {
  if (poller__fault[POLLER__FAULT_URING_SETUP])
    return poller__fault[POLLER__FAULT_URING_SETUP];
  struct io_uring_params params;
  memset(&params, 0, sizeof params);
  /* COOP_TASKRUN (5.19) avoids an IPI per completion; TASKRUN_FLAG (5.19)
   * then tells when completions wait for this thread to enter the kernel
   * (a zero-timeout wait must enter then, or it misses them); SUBMIT_ALL
   * (5.18) keeps submitting after a failed SQE.  Older kernels refuse
   * unknown flags with EINVAL: retry without them.  DEFER_TASKRUN is not
   * used: it would keep the ring fd from turning readable for a nesting
   * loop. */
  params.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
                 IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE;
  params.cq_entries = entries * 8;
  int r = io_uring_queue_init_params(entries, ring, &params);
  *taskrun_flag = r == 0;
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
  int flag;
  int r = ring_setup(&ring, 4, &flag);
  if (r < 0)
    return r;
  struct io_uring_probe *probe = io_uring_get_probe_ring(&ring);
  int ok = probe && io_uring_opcode_supported(probe, IORING_OP_POLL_ADD) &&
           io_uring_opcode_supported(probe, IORING_OP_ASYNC_CANCEL);
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
  if ((r = ring_setup(&s->ring, RING_ENTRIES, &s->taskrun_flag)) < 0) {
    free(s);
    return r;
  }
  s->owner = getpid();
  pthread_once(&atfork_once, atfork_register);
  live_link(s);
  p->bstate = s;
  return 0;
}

/* ---- submission ---- */

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

/* Queues a new poll request for fd with mask `want`: multishot for ET, the
 * wakeup channel (drained at each report) and hint mode. */
static int arm(poller *p, int fd, struct poller__fd *e, unsigned want) {
  struct io_uring_sqe *sqe = get_sqe(p);
  if (!sqe)
    return -EBUSY;
  unsigned slot = (unsigned)e->bidx;
  unsigned id = (slot + 1) & SLOT_ID;
  int multi =
      (want & POLLER_ET) || (e->flags & FD_INTERNAL) || (slot & SLOT_HINT);
  if (multi)
    io_uring_prep_poll_multishot(sqe, fd, to_pollmask(want));
  else
    io_uring_prep_poll_add(sqe, fd, to_pollmask(want));
  io_uring_sqe_set_data64(sqe, make_ud(fd, id));
  slot &= ~(SLOT_ID | SLOT_MULTI);
  slot |= id | SLOT_ARMED | (multi ? SLOT_MULTI : 0);
  e->bidx = (int32_t)slot;
  return 0;
}

/* Queues the cancellation of fd's current request. */
static int disarm(poller *p, int fd, struct poller__fd *e) {
  unsigned slot = (unsigned)e->bidx;
  if (!(slot & SLOT_ARMED))
    return 0;
  struct io_uring_sqe *sqe = get_sqe(p);
  if (!sqe)
    return -EBUSY;
  io_uring_prep_cancel64(sqe, make_ud(fd, slot & SLOT_ID), 0);
  io_uring_sqe_set_data64(sqe, CTL_UD);
  e->bidx = (int32_t)(slot & ~(SLOT_ARMED | SLOT_MULTI));
  return 0;
}

/* Replaces fd's request by a fresh one (a single-shot one for level and
 * ONESHOT), which checks the file's readiness now. */
static void renew_fd(poller *p, int fd, struct poller__fd *e) {
  if (!e->kmask)
    return; /* deleted, or disarmed by the core */
  if (disarm(p, fd, e) < 0)
    return;
  e->bidx &= ~(int32_t)SLOT_HINT;
  (void)arm(p, fd, e, e->kmask);
}

/* Queues the renewal of fd's level request for the next wait. */
static void queue_renew(poller *p, int fd, struct poller__fd *e) {
  struct uring_state *s = p->bstate;
  unsigned slot = (unsigned)e->bidx;
  if (!e->kmask || (e->kmask & POLLER_ONESHOT) || (e->flags & FD_INTERNAL) ||
      (slot & SLOT_RENEW))
    return;
  if ((e->kmask & POLLER_ET) && (slot & SLOT_ARMED))
    return; /* the multishot request goes on */
  if (s->nrenew == s->cap) {
    renew_fd(p, fd, e); /* no room to wait: queued now, submitted later */
    return;
  }
  e->bidx |= (int32_t)SLOT_RENEW;
  s->renew[s->nrenew++] = fd;
}

/* Cancels every request of the ring and lets the cancellations complete,
 * so that no file is held when this returns.  Only in the process that
 * owns the ring. */
static void cancel_all(poller *p) {
  struct uring_state *s = p->bstate;
  if (s->dropped || s->owner != getpid())
    return;
  /* The queued SQEs go first: they may cancel requests that are no longer
   * marked armed. */
  if (s->pending)
    (void)submit(p);
  int any_ok = 0;
  struct io_uring_sqe *sqe = get_sqe(p);
  if (sqe) {
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
    io_uring_sqe_set_data64(sqe, CTL_UD - 1);
    if (submit(p) == 0) {
      /* The cancellation completes during the submission. */
      unsigned head;
      struct io_uring_cqe *cqe;
      io_uring_for_each_cqe(&s->ring, head, cqe) {
        if (io_uring_cqe_get_data64(cqe) == CTL_UD - 1) {
          any_ok = cqe->res >= 0;
          break;
        }
      }
    }
  }
  if (!any_ok) {
    /* Before 5.19 (no CANCEL_ANY): one cancellation per armed request. */
    for (int fd = 0; fd < p->nfds; fd++)
      (void)disarm(p, fd, &p->fds[fd]);
  }
  /* Enter once more: the cancelled requests complete in task work, which
   * runs before the kernel returns here, and drop their files. */
  p->stats.syscalls++;
  s->pending = 0;
  (void)io_uring_submit_and_get_events(&s->ring);
}

static void uring_fini(poller *p) {
  struct uring_state *s = p->bstate;
  if (!s)
    return;
  cancel_all(p);
  live_unlink(s);
  if (!s->dropped)
    io_uring_queue_exit(&s->ring);
  free(s->renew);
  free(s->batch);
  free(s->probe);
  free(s);
  p->bstate = NULL;
}

/* Sizes the renewal list and the PRI probe for every fd that may hold a
 * request, so the wait path never allocates. */
static int lists_reserve(poller *p) {
  struct uring_state *s = p->bstate;
  size_t need = p->count + 8;
  if (need <= (size_t)s->cap)
    return 0;
  size_t cap = s->cap ? (size_t)s->cap : 64;
  while (cap < need)
    cap *= 2;
  int *r = realloc(s->renew, cap * sizeof *r);
  if (!r)
    return -ENOMEM;
  s->renew = r;
  int *b = realloc(s->batch, cap * sizeof *b);
  if (!b)
    return -ENOMEM;
  s->batch = b;
  struct pollfd *pf = realloc(s->probe, cap * sizeof *pf);
  if (!pf)
    return -ENOMEM;
  s->probe = pf;
  s->cap = (int)cap;
  return 0;
}

/* Files without a poll wait queue complete every poll request at once; a
 * multishot request on them would be renewed forever.  Regular files,
 * directories and block devices have none; a character device may lack
 * one (/dev/null), which epoll tells by refusing it with EPERM.  Such
 * files are always ready, as select and poll report them.  The fstat also
 * validates the fd.  Returns 1 for such a file, 0, or -errno. */
static int unpollable(poller *p, int fd) {
  struct stat st;
  p->stats.syscalls++;
  if (fstat(fd, &st) < 0)
    return -errno;
  if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode))
    return 1;
  if (!S_ISCHR(st.st_mode))
    return 0;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0)
    return 0;
  struct epoll_event ev = {.events = EPOLLIN};
  int r = epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0 && errno == EPERM;
  close(ep);
  p->stats.syscalls += 3;
  return r;
}

static int uring_ctl(poller *p, int fd, struct poller__fd *e, unsigned have,
                     unsigned want, int rearm) {
  struct uring_state *s = p->bstate;
  int r;
  (void)rearm;
  if (!have && want) {
    /* A new registration has no request (the id lives on, so completions
     * of an earlier registration of this number never match). */
    e->bidx &= (int32_t)SLOT_ID;
    if ((r = unpollable(p, fd)) != 0)
      return r < 0 ? r : POLLER__ALWAYS_READY;
    if ((r = lists_reserve(p)) < 0)
      return r;
  }
  if (s->dropped) {
    /* A forked child before poller_reinit: the ring was the parent's,
     * nothing of this process is in the kernel. */
    e->bidx &= (int32_t)SLOT_ID;
    return 0;
  }
  if (!want) {
    if (!((unsigned)e->bidx & SLOT_ARMED))
      return 0;
    if ((r = disarm(p, fd, e)) < 0)
      return r;
    /* Synchronous: the request is cancelled and its file reference
     * dropped when the submission returns. */
    return submit(p);
  }
  /* A change, or a re-arm: the old request (if still armed) is cancelled
   * and a new one queued, both reaching the kernel with the next wait.
   * The old request's completions carry the old id and are dropped. */
  e->bidx &= ~(int32_t)SLOT_HINT;
  if ((r = disarm(p, fd, e)) < 0 || (r = arm(p, fd, e, want)) < 0)
    return r;
  return 0;
}

/* ---- waiting ---- */

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int cq_overflowed(struct uring_state *s) {
  return (IO_URING_READ_ONCE(*s->ring.sq.kflags) & IORING_SQ_CQ_OVERFLOW) != 0;
}

/* Completions wait in task work for this thread to enter the kernel. */
static int taskrun_pending(struct uring_state *s) {
  if (!s->taskrun_flag)
    return 1; /* cannot tell: enter */
  return (io_uring_smp_load_acquire(s->ring.sq.kflags) & IORING_SQ_TASKRUN) !=
         0;
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

/* Looks up the registration whose current request posted cqe; NULL for
 * control requests and for completions of replaced, cancelled or earlier
 * requests (counted as stale unless they are expected cancellations). */
static struct poller__fd *cqe_owner(poller *p, const struct io_uring_cqe *cqe,
                                    int *fdp) {
  uint64_t ud = io_uring_cqe_get_data64(cqe);
  if ((uint32_t)ud >= CTL_FD - 1)
    return NULL;
  int fd = (int)(uint32_t)ud;
  unsigned id = (unsigned)(ud >> 32);
  struct poller__fd *e = poller__entry(p, fd);
  if (!e || ((unsigned)e->bidx & (SLOT_ARMED | SLOT_ID)) != (SLOT_ARMED | id)) {
    if (cqe->res != -ECANCELED)
      p->stats.stale++;
    return NULL;
  }
  if (!(cqe->flags & IORING_CQE_F_MORE))
    e->bidx &= ~(int32_t)(SLOT_ARMED | SLOT_MULTI); /* the request ended */
  *fdp = fd;
  return e;
}

/* Stores the raw report of an fd the core must see (the wakeup channel, a
 * request the kernel refused), merging with one already in out[]. */
static int put_raw(poller_event *out, int n, int fd, struct poller__fd *e,
                   unsigned bits) {
  if ((unsigned)e->bidx & SLOT_INBATCH) {
    for (int j = n - 1; j >= 0; j--)
      if (out[j].fd == fd) {
        out[j].events |= bits;
        break;
      }
    return n;
  }
  e->bidx |= (int32_t)SLOT_INBATCH;
  out[n] = (poller_event){fd, bits | POLLER__RAW, NULL, e->gen};
  return n + 1;
}

/* One completion found when the wait began: describes an earlier moment.
 * The request is renewed (it re-checks readiness during this wait's
 * submission), except for the wakeup channel and refused requests, which
 * are reported as they are.  Returns the new n. */
static int stale_cqe(poller *p, const struct io_uring_cqe *cqe,
                     poller_event *out, int n) {
  int fd;
  struct poller__fd *e = cqe_owner(p, cqe, &fd);
  if (!e)
    return n;
  if (cqe->res == -ECANCELED) {
    /* Cancelled by the kernel (the submitting thread exited): the
     * registration still stands. */
    if (!((unsigned)e->bidx & SLOT_ARMED))
      renew_fd(p, fd, e);
    return n;
  }
  if ((unsigned)e->bidx & SLOT_INBATCH) {
    /* Reported already by this poller_wait: the next one checks it. */
    if (!((unsigned)e->bidx & SLOT_ARMED))
      queue_renew(p, fd, e);
    return n;
  }
  if (e->flags & FD_INTERNAL)
    return put_raw(out, n, fd, e, POLLER_IN);
  if (cqe->res < 0)
    return put_raw(out, n, fd, e, POLLER_ERR | POLLER_NVAL);
  if (((unsigned)e->bidx & (SLOT_ARMED | SLOT_MULTI)) == SLOT_ARMED)
    return n; /* renewed already by an earlier completion */
  renew_fd(p, fd, e);
  return n;
}

/* Step 1 of a wait: the completions already in the ring, and the level
 * fds reported by the last wait, become renewals, in epoll's order (see
 * the top of this file).  Stops when out[] is full.  Returns the number of
 * raw reports stored. */
static int renew_stale(poller *p, poller_event *out, int max, int again) {
  struct uring_state *s = p->bstate;
  struct io_uring_cq *cq = &s->ring.cq;
  int n = 0;
  unsigned head = *cq->khead;
  /* The ring as the wait found it: renewals submitted below when the SQ
   * fills post fresh completions after this tail. */
  unsigned tail = io_uring_smp_load_acquire(cq->ktail);
  unsigned left = s->leftover < tail - head ? s->leftover : tail - head;
  s->leftover = 0;
  for (; left && n < max; left--, head++)
    n = stale_cqe(p, &cq->cqes[head & cq->ring_mask], out, n);
  io_uring_smp_store_release(cq->khead, head);
  /* Not when the core tops up a batch: these fds were reported by this
   * very poller_wait, and the caller has not read yet. */
  for (int i = 0; i < s->nrenew && !again; i++) {
    int fd = s->renew[i];
    struct poller__fd *e = &p->fds[fd];
    unsigned slot = (unsigned)e->bidx;
    e->bidx &= ~(int32_t)SLOT_RENEW;
    /* A single-shot request armed since (by a change, or above) already
     * checks the fd now. */
    if ((slot & SLOT_RENEW) && (slot & (SLOT_ARMED | SLOT_MULTI)) != SLOT_ARMED)
      renew_fd(p, fd, e);
  }
  if (!again)
    s->nrenew = 0;
  for (int pass = 0; pass < 2 && n < max; pass++) {
    if (pass)
      tail = io_uring_smp_load_acquire(cq->ktail);
    for (; head != tail && n < max; head++)
      n = stale_cqe(p, &cq->cqes[head & cq->ring_mask], out, n);
    io_uring_smp_store_release(cq->khead, head);
    /* Completions beyond the CQ ring wait in the kernel's overflow list
     * (NODROP): entering with GETEVENTS moves them into the ring, where
     * they are as old as the others (libuv#3991). */
    if (!cq_overflowed(s) || enter(p, 0, -1) < 0)
      break;
  }
  if (head != io_uring_smp_load_acquire(cq->ktail))
    s->leftover = io_uring_smp_load_acquire(cq->ktail) - head;
  return n;
}

/* Checks PRI in out[from, n) with poll(2): a completion posted by a
 * wake-up carries the wake-up key, and ordinary data on a socket wakes
 * with IN|PRI.  Reports left with no bit are removed and their requests
 * renewed.  Returns the new n. */
static int check_pri(poller *p, poller_event *out, int from, int n) {
  struct uring_state *s = p->bstate;
  int k = 0;
  for (int i = from; i < n && k < s->cap; i++)
    if (out[i].events & POLLER_PRI)
      s->probe[k++] = (struct pollfd){out[i].fd, POLLPRI, 0};
  if (k == 0)
    return n;
  p->stats.syscalls++;
  if (poll(s->probe, (nfds_t)k, 0) < 0)
    return n;
  int j = 0, w = from;
  for (int i = from; i < n; i++) {
    poller_event ev = out[i];
    if ((ev.events & POLLER_PRI) && j < k) {
      if (!(s->probe[j++].revents & POLLPRI))
        ev.events &= ~POLLER_PRI;
      if (!(ev.events & ~POLLER__RAW)) {
        struct poller__fd *e = &p->fds[ev.fd];
        e->bidx &= ~(int32_t)SLOT_INBATCH;
        if (!((unsigned)e->bidx & SLOT_ARMED) && e->kmask)
          (void)arm(p, ev.fd, e, e->kmask);
        continue;
      }
    }
    out[w++] = ev;
  }
  return w;
}

static int uring_wait(poller *p, poller_event *out, int max, int timeout_ms) {
  struct uring_state *s = p->bstate;
  int r;
  if (s->dropped)
    return -ECHILD; /* a forked child must call poller_reinit first */
  int again = s->nbatch && s->batch_wait == p->stats.waits;
  if (!again) {
    for (int i = 0; i < s->nbatch; i++)
      p->fds[s->batch[i]].bidx &= ~(int32_t)SLOT_INBATCH;
    s->nbatch = 0;
  }
  s->batch_wait = p->stats.waits;
  int n = renew_stale(p, out, max, again);
  int raw = n;
  int first = n;
  if (n == max)
    goto done; /* the renewals wait in the SQ for the next wait */
  int tmo = n > 0 || io_uring_cq_ready(&s->ring) ? 0 : timeout_ms;
  if (tmo == 0) {
    /* Enter only to submit, to collect completions waiting in task work
     * (posted by other threads' wake-ups), or to flush an overflowed CQ;
     * otherwise this wait is free. */
    if (s->pending || cq_overflowed(s) || taskrun_pending(s)) {
      r = enter(p, 0, -1);
      if (r < 0 && r != -EINTR && r != -EBUSY)
        return n ? n : r;
    }
  } else {
    long long t0 = tmo > 0 ? now_ms() : 0;
    r = enter(p, 1, tmo);
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
      if (tmo > 0 && now_ms() - t0 >= tmo)
        return 0;
      return -EINTR;
    }
  }
  /* Step 2: the completions posted during this wait describe its moment. */
  struct poller__fd *fds = p->fds;
  unsigned nfds = (unsigned)p->nfds;
  struct io_uring_cq *cq = &s->ring.cq;
  unsigned head = *cq->khead;
  for (int pass = 0; pass < 2; pass++) {
    unsigned tail = io_uring_smp_load_acquire(cq->ktail);
    for (; head != tail; head++) {
      if (n == max)
        break; /* the rest are renewed first at the next wait */
      struct io_uring_cqe *cqe = &cq->cqes[head & cq->ring_mask];
      int fd;
      struct poller__fd *e = cqe_owner(p, cqe, &fd);
      if (!e)
        continue;
      unsigned slot = (unsigned)e->bidx;
      if (cqe->res < 0 && cqe->res != -ECANCELED) {
        int m = put_raw(out, n, fd, e, POLLER_ERR | POLLER_NVAL);
        raw += m - n;
        n = m;
        continue;
      }
      if (cqe->res < 0) {
        /* Cancelled by the kernel (the submitting thread exited): the
         * registration still stands. */
        if (!(slot & SLOT_ARMED) && e->kmask)
          (void)arm(p, fd, e, e->kmask);
        continue;
      }
      unsigned bits = from_pollmask((unsigned)cqe->res);
      if (e->flags & FD_INTERNAL) {
        int m = put_raw(out, n, fd, e, POLLER_IN);
        raw += m - n;
        n = m;
        continue;
      }
      /* The kernel adds RDHUP (and ERR, HUP) to every request: the
       * interest masks it first, as poller__report_plain requires. */
      unsigned asked = bits & ((e->events & 0x3fu) | POLLER_ERR | POLLER_HUP);
      if (!asked) {
        /* Nothing asked for: the kernel's own RDHUP on a half-closed
         * socket.  A single-shot request would complete again at once:
         * watch the fd with a multishot request, which completes only at
         * a wake-up (hint mode). */
        if (!(slot & SLOT_ARMED) && e->kmask) {
          if (!(e->kmask & POLLER_ET))
            e->bidx |= (int32_t)SLOT_HINT;
          (void)arm(p, fd, e, e->kmask);
        }
        continue;
      }
      if (slot & SLOT_INBATCH) {
        /* A second multishot completion in this poller_wait: merged when
         * the first is in this call's share of out[]. */
        for (int j = n - 1; j >= first; j--)
          if (out[j].fd == fd) {
            out[j].events |= asked;
            break;
          }
        if (!(slot & SLOT_ARMED))
          queue_renew(p, fd, e);
        continue;
      }
      e->bidx |= (int32_t)SLOT_INBATCH;
      if (!poller__report_plain(fds, nfds, &out[n], fd, asked, e->gen)) {
        out[n] = (poller_event){fd, asked | POLLER__RAW, NULL, e->gen};
        raw++;
      }
      n++;
    }
    io_uring_smp_store_release(cq->khead, head);
    if (n == max || !cq_overflowed(s) || enter(p, 0, -1) < 0)
      break;
  }
  if (head != io_uring_smp_load_acquire(cq->ktail))
    s->leftover = io_uring_smp_load_acquire(cq->ktail) - head;

  /* PRI from a wake-up key is checked against the file. */
  int before = n;
  n = check_pri(p, out, first, n);
  if (n != before) {
    raw = 0;
    for (int i = 0; i < n; i++)
      raw += (out[i].events & POLLER__RAW) != 0;
  }
done:
  p->nfinal = raw ? -1 : n;
  /* Level fds reported are renewed at the next wait, after the caller has
   * read; so are multishot requests the kernel ended.  ONESHOT waits for
   * ctl(rearm). */
  for (int i = 0; i < n; i++) {
    int fd = out[i].fd;
    struct poller__fd *e = &p->fds[fd];
    /* The wakeup channel is no report: each call may pass it on. */
    if (s->nbatch < s->cap && !(e->flags & FD_INTERNAL))
      s->batch[s->nbatch++] = fd;
    else
      e->bidx &= ~(int32_t)SLOT_INBATCH;
    if (out[i].events & POLLER_NVAL)
      continue;
    if (e->kmask & POLLER_ONESHOT) {
      /* Reported once: a hint-mode multishot request must not go on. */
      (void)disarm(p, fd, e);
      continue;
    }
    queue_renew(p, fd, e);
  }
  return n;
}

static int uring_commit(poller *p) {
  struct uring_state *s = p->bstate;
  if (s->dropped)
    return 0;
  /* A nesting loop sleeps on the ring fd next: level fds that are still
   * ready must make it readable again. */
  for (int i = 0; i < s->nrenew; i++) {
    int fd = s->renew[i];
    struct poller__fd *e = &p->fds[fd];
    unsigned slot = (unsigned)e->bidx;
    e->bidx &= ~(int32_t)SLOT_RENEW;
    if ((slot & SLOT_RENEW) && (slot & (SLOT_ARMED | SLOT_MULTI)) != SLOT_ARMED)
      renew_fd(p, fd, e);
  }
  s->nrenew = 0;
  return s->pending ? submit(p) : 0;
}

static int uring_fd(const poller *p) {
  return ((const struct uring_state *)p->bstate)->ring.ring_fd;
}

static int uring_reinit(poller *p) {
  /* In a forked child the ring was dropped at fork; in the owning process
   * the old ring's requests are cancelled first, so no file outlives it. */
  struct uring_state *s = p->bstate;
  cancel_all(p);
  if (!s->dropped)
    io_uring_queue_exit(&s->ring);
  memset(&s->ring, 0, sizeof s->ring);
  s->pending = 0;
  s->leftover = 0;
  s->nrenew = 0;
  s->nbatch = 0;
  for (int fd = 0; fd < p->nfds; fd++)
    p->fds[fd].bidx &= (int32_t)SLOT_ID;
  int r = ring_setup(&s->ring, RING_ENTRIES, &s->taskrun_flag);
  if (r < 0) {
    s->ring.ring_fd = -1;
    s->dropped = 1;
    return r;
  }
  s->dropped = 0;
  s->owner = getpid();
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
