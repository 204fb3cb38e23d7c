/* SPDX-License-Identifier: MIT */
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
 * Every registration (level, ET, ONESHOT) holds one multishot request
 * (IORING_POLL_ADD_MULTI), armed once: it posts a completion when the file
 * is ready at arm time and at each wake-up after.  A completion is only a
 * hint that the fd may be ready: it says what was ready when it was
 * posted, and with COOP_TASKRUN it is posted when this thread next enters
 * the kernel, which may be before the caller read the data; its mask is
 * the wake-up key, not the file's (ordinary data on a socket wakes with
 * IN|PRI); the kernel adds POLLRDHUP to every request, so a half-closed
 * socket completes requests that did not ask for it; and a request for PRI
 * also asks for IN (see request_mask).  So completions only
 * make their fds candidates, and each wait checks its candidates with one
 * poll(2) of timeout 0: a report carries the file's mask at the wait, as
 * epoll's do (epoll too polls each ready file again when it reports it).
 * Candidates that are not ready leave the list; their requests stay armed
 * and tell when they change, so a wait with nothing to report sleeps.
 *
 * Modes:
 *  - level: an fd reported stays a candidate for the next wait (it is
 *    still ready unless the caller reads), as epoll keeps level items on
 *    its ready list.
 *  - ET: reported when a completion came and the check finds it ready.
 *  - ONESHOT: the request is cancelled when it is reported; ctl(rearm)
 *    arms a new one.
 *
 * Order (docs/design.md), as epoll's ready list: the candidates left over
 * by the last wait for want of room, then the level fds the last wait
 * reported, then the fds whose completions came since, in the kernel's
 * order.
 *
 * Devices without a poll method (/dev/null) complete every request at
 * once: they are always ready, as regular files are (epoll refuses both
 * with EPERM, which is how they are told apart).
 *
 * Removals are synchronous: IORING_OP_ASYNC_CANCEL (not POLL_REMOVE, which
 * fails with -EALREADY on a multishot request that has fired and leaves it
 * armed) is submitted at once; the kernel completes the cancelled request
 * and drops its file reference before io_uring_enter returns to this
 * thread, so closing the fd right after releases the file (libuv#4323,
 * where a deferred removal ran after close).  Adds and changes only queue
 * SQEs; they reach the kernel with the next wait.  A busy wait costs one
 * poll(2) (and an io_uring_enter only when SQEs are queued or completions
 * wait in task work); a wait that sleeps costs an io_uring_enter and the
 * poll(2) of what woke it.
 *
 * poller_close cancels every request and lets them complete before the
 * ring is closed, so every file is released when it returns (the kernel
 * tears a closed ring down later, in the background).  A forked child
 * drops its copy of every ring at fork (pthread_atfork): the child must
 * not keep the parent's files alive, and must never submit to the
 * parent's ring; poller_reinit gives it a ring of its own.  poller_fd is
 * the ring fd, and its number outlives the drop: an empty epoll instance,
 * never readable, holds it until poller_reinit moves the new ring onto it.
 *
 * The probe refuses kernels without multishot poll (5.13) and honours the
 * test hook poller__fault[POLLER__FAULT_URING_SETUP]; POLLER_AUTO then falls
 * back (Docker's seccomp EPERM, moby#46762; the kernel.io_uring_disabled
 * sysctl; old kernels).
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
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
#define SLOT_ARMED 0x01000000u /* the current request is in flight */
#define SLOT_MULTI 0x02000000u /* ... and it is multishot */
#define SLOT_CAND 0x04000000u  /* in s->cand: checked at this wait */
/* In s->held: checked at the next wait; then moved to s->cand as it is,
 * where it means what SLOT_CAND means (check clears both). */
#define SLOT_HELD 0x08000000u
#define SLOT_INBATCH 0x10000000u /* reported by this call of wait */

struct uring_state {
  struct io_uring ring;
  unsigned pending; /* SQEs queued since the last submit */
  int taskrun_flag; /* the kernel sets IORING_SQ_TASKRUN */
  int wake_due;     /* a wakeup completion waits for room in out[] */
  int dropped;      /* the ring was dropped (forked child, failed reinit) */
  int hold;         /* while dropped: what holds poller_fd's number, or -1 */
  pid_t owner;      /* the process that created the ring */
  /* Candidates: fds that may be ready, checked with poll(2) at the wait,
   * in epoll's order (see the top of this file).  Kept as the pollfd
   * array itself, built as candidates come: the check polls it as it is,
   * with no second pass. */
  struct pollfd *cand;
  int ncand;
  /* Level fds reported by the current poller_wait: candidates at the next
   * one (the core may call wait again in the same poller_wait to top up a
   * batch, and an fd must not be reported twice in one). */
  struct pollfd *held; /* as cand: moved there whole at the next one */
  int nheld;
  unsigned long long held_wait; /* p->stats.waits of that poller_wait */
  /* ctl changed an fd of cand or held since the last wait: their pollfds
   * may ask for a mask the kernel no longer holds. */
  int remask;
  int cap; /* of cand and held: every fd that may be watched */
  struct uring_state *prev, *next; /* live rings, for the fork handler */
};

/* ---- live rings, dropped in a forked child ---- */

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct uring_state *live;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_prepare(void) { pthread_mutex_lock(&live_lock); }
static void atfork_parent(void) { pthread_mutex_unlock(&live_lock); }

/* Unmaps and closes this process's copy of the ring, but keeps the ring
 * fd's number: a caller nesting poller_fd still holds it, and
 * poller_reinit puts the next ring on it.  An empty epoll instance (never
 * readable, close-on-exec like the ring fd) takes the number, by dup3,
 * which drops the ring's reference in the same step.  Only system calls:
 * it runs in a forked child's atfork handler. */
static void ring_drop(struct uring_state *s) {
  int num = s->ring.ring_fd;
  int ph = epoll_create1(EPOLL_CLOEXEC);
  if (ph >= 0 && dup3(ph, num, O_CLOEXEC) >= 0) {
    s->ring.ring_fd = ph; /* io_uring_queue_exit closes this one */
    io_uring_queue_exit(&s->ring);
  } else {
    /* Out of descriptors: the ring's own frees one for the placeholder. */
    if (ph >= 0)
      close(ph);
    io_uring_queue_exit(&s->ring);
    ph = epoll_create1(EPOLL_CLOEXEC);
    if (ph >= 0 && ph != num) {
      if (dup3(ph, num, O_CLOEXEC) < 0)
        num = -1;
      close(ph);
    } else if (ph < 0) {
      num = -1;
    }
  }
  s->ring.ring_fd = -1;
  s->hold = num;
  s->dropped = 1;
}

/* In the child: drop the child's copy of every ring.  The ring stays the
 * parent's alone: the child cannot keep the parent's files alive through
 * it, and cannot submit to it by mistake. */
static void atfork_child(void) {
  for (struct uring_state *s = live; s; s = s->next)
    if (!s->dropped)
      ring_drop(s);
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

/* The public bits are poll(2)'s own (poller.h): masks pass through both
 * ways with no translation, only a mask. */
_Static_assert(POLLER_IN == POLLIN && POLLER_PRI == POLLPRI &&
                   POLLER_OUT == POLLOUT && POLLER_ERR == POLLERR &&
                   POLLER_HUP == POLLHUP && POLLER_NVAL == POLLNVAL &&
                   POLLER_RDHUP == POLLRDHUP,
               "the POLLER_* bits must equal the POLL* bits");

/* The bits a poll request or a pollfd asks for. */
#define ASK_BITS (POLLER_IN | POLLER_OUT | POLLER_PRI | POLLER_RDHUP)

static unsigned to_pollmask(unsigned want) { return want & ASK_BITS; }

/* The mask of the kernel's poll request for interest `want`.  A request
 * for POLLPRI without POLLIN is never completed by urgent data (measured on
 * Linux 6.18, TCP and unix sockets after MSG_OOB), though poll(2) and epoll
 * report PRI then: the wake-up reaches only requests that also ask for IN.
 * So PRI asks for IN too.  This never reports IN unasked, nor PRI on
 * ordinary data: completions only make candidates, and check() polls them
 * with the interest's own mask and keeps only the interest's bits.  Nor
 * does it spin: ordinary data wakes the request once per arrival, the
 * check finds no PRI, and the request stays armed for the next wake-up
 * (files that are always readable: see rearm_not_ready). */
static unsigned request_mask(unsigned want) {
  unsigned m = to_pollmask(want);
  if (want & POLLER_PRI)
    m |= POLLIN;
  return m;
}

/* A poll(2) revents as report bits: the same values. */
static unsigned from_pollmask(unsigned m) {
  return m & (ASK_BITS | POLLER_ERR | POLLER_HUP | POLLER_NVAL);
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
  s->hold = -1;
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

/* Queues a new multishot poll request for fd with the kernel poll mask
 * `mask`. */
static int arm_mask(poller *p, int fd, struct poller__fd *e, unsigned mask) {
  struct io_uring_sqe *sqe = get_sqe(p);
  if (!sqe)
    return -EBUSY;
  unsigned slot = (unsigned)e->bidx;
  unsigned id = (slot + 1) & SLOT_ID;
  io_uring_prep_poll_multishot(sqe, fd, mask);
  io_uring_sqe_set_data64(sqe, make_ud(fd, id));
  slot &= ~SLOT_ID;
  slot |= id | SLOT_ARMED | SLOT_MULTI;
  e->bidx = (int32_t)slot;
  return 0;
}

/* Queues a new multishot poll request for fd and interest `want`. */
static int arm(poller *p, int fd, struct poller__fd *e, unsigned want) {
  return arm_mask(p, fd, e, request_mask(want));
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
  else if (s->hold >= 0)
    close(s->hold);
  free(s->cand);
  free(s->held);
  free(s);
  p->bstate = NULL;
}

/* Sizes the candidate lists for every fd that may be watched, so the
 * wait path never allocates. */
static int lists_reserve(poller *p) {
  struct uring_state *s = p->bstate;
  size_t need = p->count + 8;
  if (need <= (size_t)s->cap)
    return 0;
  size_t cap = s->cap ? (size_t)s->cap : 64;
  while (cap < need)
    cap *= 2;
  struct pollfd *c = realloc(s->cand, cap * sizeof *c);
  if (!c)
    return -ENOMEM;
  s->cand = c;
  struct pollfd *h = realloc(s->held, cap * sizeof *h);
  if (!h)
    return -ENOMEM;
  s->held = h;
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
  if ((unsigned)e->bidx & (SLOT_CAND | SLOT_HELD))
    s->remask = 1; /* its pollfd is re-masked at the wait (uring_wait) */
  if (!have && want) {
    /* A new registration has no request (the id lives on, so completions
     * of an earlier registration of this number never match). */
    e->bidx &= (int32_t)(SLOT_ID | SLOT_CAND | SLOT_HELD);
    if ((r = unpollable(p, fd)) != 0)
      return r < 0 ? r : POLLER__ALWAYS_READY;
    if ((r = lists_reserve(p)) < 0)
      return r;
  }
  if (s->dropped) {
    /* A forked child before poller_reinit: the ring was the parent's,
     * nothing of this process is in the kernel. */
    e->bidx &= (int32_t)(SLOT_ID | SLOT_CAND | SLOT_HELD);
    return 0;
  }
  if (!want) {
    /* A cancellation may be queued already (a ONESHOT request ended at
     * its report): submitted now too. */
    if (!((unsigned)e->bidx & SLOT_ARMED) && !s->pending)
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
static inline struct poller__fd *cqe_owner(poller *p, struct poller__fd *fds,
                                           unsigned nfds,
                                           const struct io_uring_cqe *cqe,
                                           int *fdp) {
  uint64_t ud = io_uring_cqe_get_data64(cqe);
  /* One compare for both: the control requests' fd half (CTL_FD - 1 and
   * CTL_FD) is beyond any table (nfds <= INT_MAX). */
  unsigned ufd = (uint32_t)ud;
  if (ufd >= nfds) {
    if (ufd < CTL_FD - 1 && cqe->res != -ECANCELED)
      p->stats.stale++;
    return NULL;
  }
  int fd = (int)ufd;
  unsigned id = (unsigned)(ud >> 32);
  struct poller__fd *e = &fds[fd];
  if (((unsigned)e->bidx & (SLOT_ARMED | SLOT_ID)) != (SLOT_ARMED | id)) {
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
  out[n] = (poller_event){
      .fd = fd, .events = bits | POLLER__RAW, .data = NULL, .gen = e->gen};
  return n + 1;
}

/* The candidate list is full: only entries of fds deleted since the last
 * check can fill it (it has room for every registration), so they are
 * dropped.  Returns 0 when there is room now. */
static __attribute__((noinline, cold)) int cand_compact(poller *p) {
  struct uring_state *s = p->bstate;
  int w = 0;
  for (int i = 0; i < s->ncand; i++) {
    struct poller__fd *c = &p->fds[s->cand[i].fd];
    if (poller__kmask(c))
      s->cand[w++] = s->cand[i];
    else
      c->bidx &= ~(int32_t)(SLOT_CAND | SLOT_HELD);
  }
  s->ncand = w;
  return w == s->cap ? -1 : 0;
}

/* The pollfd of a candidate: fd, the readiness bits the kernel holds
 * (kpacked keeps them as they are), revents 0.  One 8-byte store where
 * the layout allows. */
static inline void cand_set(struct pollfd *c, int fd,
                            const struct poller__fd *e) {
  short ev = (short)to_pollmask(e->kpacked);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  _Static_assert(sizeof(struct pollfd) == 8 &&
                     offsetof(struct pollfd, events) == 4 &&
                     offsetof(struct pollfd, revents) == 6,
                 "struct pollfd is {int fd; short events; short revents}");
  uint64_t v = (uint32_t)fd | ((uint64_t)(uint16_t)ev << 32);
  memcpy(c, &v, sizeof v);
#else
  *c = (struct pollfd){fd, ev, 0};
#endif
}

/* Makes fd a candidate of this wait (once), unless the current
 * poller_wait reported it already (it is held for the next).  *nc is the
 * caller's copy of s->ncand (a local it keeps in a register: stores to the
 * list could otherwise alias s->ncand and force a reload per call); it is
 * written back around the rare compaction. */
static inline void cand_push(poller *p, int *nc, int fd, struct poller__fd *e) {
  struct uring_state *s = p->bstate;
  unsigned slot = (unsigned)e->bidx;
  if (slot & (SLOT_CAND | SLOT_HELD))
    return;
  if (__builtin_expect(*nc == s->cap, 0)) {
    s->ncand = *nc;
    int full = cand_compact(p) < 0;
    *nc = s->ncand;
    if (full)
      return;
  }
  e->bidx = (int32_t)(slot | SLOT_CAND);
  cand_set(&s->cand[(*nc)++], fd, e);
}

/* cand_push on s->ncand itself, where candidates come one at a time. */
static inline void make_cand(poller *p, int fd, struct poller__fd *e) {
  struct uring_state *s = p->bstate;
  int nc = s->ncand;
  cand_push(p, &nc, fd, e);
  s->ncand = nc;
}

/* harvest's rare cases: the completion of fd's current request that is
 * not a wake-up of a registration (the wakeup channel, a cancellation, a
 * refused request).  Returns the new n. */
static int harvest_other(poller *p, const struct io_uring_cqe *cqe, int fd,
                         struct poller__fd *e, poller_event *out, int max,
                         int n, int *raw) {
  struct uring_state *s = p->bstate;
  unsigned slot = (unsigned)e->bidx;
  if (cqe->res == -ECANCELED && !(e->flags & FD_INTERNAL)) {
    /* Cancelled by the kernel (the submitting thread exited): the
     * registration still stands, and may be ready; check renews the
     * request. */
    make_cand(p, fd, e);
    return n;
  }
  if ((e->flags & FD_INTERNAL) && !(slot & SLOT_ARMED))
    (void)arm(p, fd, e, poller__kmask(e)); /* never without a request */
  if (cqe->res == -ECANCELED)
    return n;
  if ((e->flags & FD_INTERNAL) && n == max && !(slot & SLOT_INBATCH)) {
    /* No room: the wakeup is passed on at the next call, and the
     * completions behind it still become candidates. */
    s->wake_due = 1;
    return n;
  }
  if (cqe->res < 0 || (e->flags & FD_INTERNAL)) {
    int m = put_raw(out, n, fd, e,
                    cqe->res < 0 ? POLLER_ERR | POLLER_NVAL : POLLER_IN);
    *raw += m - n;
    return m;
  }
  /* A request that ended (the kernel ends a multishot request whose
   * completion overflows the ring) is renewed by check, only when its fd
   * is not ready: renewing it here would post a new completion into the
   * full ring, and end it again. */
  make_cand(p, fd, e);
  return n;
}

/* Moves the completions in the ring into the candidates, in the kernel's
 * order.  The wakeup channel and requests the kernel refused are reported
 * as they are (raw, at out[n]).  Stops when out[] is full.  Returns the
 * new n. */
static int harvest(poller *p, poller_event *out, int max, int n, int *raw) {
  struct uring_state *s = p->bstate;
  struct io_uring_cq *cq = &s->ring.cq;
  unsigned head = *cq->khead;
  if (s->wake_due && n < max) {
    struct poller__fd *w = poller__entry(p, p->wakefd_r);
    s->wake_due = 0;
    if (w && (w->flags & FD_INTERNAL)) {
      int m = put_raw(out, n, p->wakefd_r, w, POLLER_IN);
      *raw += m - n;
      n = m;
    }
  }
  /* Locals the compiler keeps in registers (stores to the table could
   * otherwise alias them): the table (it does not move during a wait),
   * the candidate list and its count (see cand_push; written back before
   * any call). */
  struct poller__fd *fds = p->fds;
  unsigned nfds = (unsigned)p->nfds;
  struct pollfd *cand = s->cand;
  const int cap = s->cap;
  int nc = s->ncand;
  for (;;) {
    unsigned tail = io_uring_smp_load_acquire(cq->ktail);
    for (; head != tail; head++) {
      struct io_uring_cqe *cqe = &cq->cqes[head & cq->ring_mask];
      int res = cqe->res;
      /* A refused request needs room for its report: the rest wait. */
      if (n == max && res < 0 && res != -ECANCELED)
        break;
      int fd;
      struct poller__fd *e = cqe_owner(p, fds, nfds, cqe, &fd);
      if (!e)
        continue;
      if (__builtin_expect(res > 0 && !(e->flags & FD_INTERNAL), 1)) {
        /* The common case: a wake-up of a registration (the branches
         * below, for res > 0 and no wakeup channel, come to this), made a
         * candidate as cand_push does, which also compacts a full list. */
        unsigned slot = (unsigned)e->bidx;
        if (slot & (SLOT_CAND | SLOT_HELD))
          continue;
        if (__builtin_expect(nc == cap, 0)) {
          cand_push(p, &nc, fd, e);
          continue;
        }
        e->bidx = (int32_t)(slot | SLOT_CAND);
        cand_set(&cand[nc++], fd, e);
        continue;
      }
      s->ncand = nc; /* harvest_other may read or grow the list */
      n = harvest_other(p, cqe, fd, e, out, max, n, raw);
      nc = s->ncand;
    }
    s->ncand = nc;
    io_uring_smp_store_release(cq->khead, head);
    /* Completions beyond the CQ ring wait in the kernel's overflow list
     * (NODROP): entering with GETEVENTS moves them into the ring
     * (libuv#3991).  Each round consumes them: it ends. */
    if (head != tail || !cq_overflowed(s) || enter(p, 0, -1) < 0)
      break;
  }
  return n;
}

/* Renews the ended request of a registration the check found not ready.
 * A request ends when the kernel cannot post its completion (an
 * overflowing CQ), or at once on a file without a poll wait queue (a
 * regular file or /dev/null put on the registered number by dup2 after
 * the add): such a file is always readable, so a request that asks for IN
 * on behalf of a PRI-only interest would end and be renewed at every wait,
 * a spin.  For those files the request asks for the interest's bits alone:
 * they never have urgent data, and it never completes. */
static void rearm_not_ready(poller *p, int fd, struct poller__fd *e) {
  unsigned want = poller__kmask(e);
  if ((want & (POLLER_PRI | POLLER_IN)) == POLLER_PRI &&
      unpollable(p, fd) == 1) {
    (void)arm_mask(p, fd, e, to_pollmask(want));
    return;
  }
  (void)arm(p, fd, e, want);
}

/* A candidate deleted or disarmed by the core since it became one. */
static inline int cand_gone(const struct poller__fd *e) {
  return !e->kpacked || (e->flags & (FD_DISARMED | FD_INTERNAL));
}

/* Checks the candidates with one poll(2): reports those ready now with
 * the file's mask, in the candidates' order; keeps those left out for
 * want of room at the head of the list; holds the level fds reported for
 * the next wait.  The others leave: their multishot requests watch them.
 * Returns the new n. */
static int check(poller *p, poller_event *out, int max, int n, int *raw) {
  struct uring_state *s = p->bstate;
  struct pollfd *cand = s->cand;
  struct poller__fd *fds = p->fds;
  int k = s->ncand;
  if (k == 0)
    return n;
  p->stats.syscalls++;
  if (poll(cand, (nfds_t)k, 0) < 0)
    return n; /* nothing is lost: they stay candidates for the next wait */
  /* The list is refilled from its start by make_cand below (those left
   * out for want of room): entry j is read before any entry at or before
   * it is written, as each turn adds at most one. */
  s->ncand = 0;
  for (int j = 0; j < k; j++) {
    int fd = cand[j].fd;
    unsigned rev = (unsigned short)cand[j].revents;
    struct poller__fd *e = &fds[fd];
    unsigned slot = (unsigned)e->bidx & ~(SLOT_CAND | SLOT_HELD);
    e->bidx = (int32_t)slot;
    /* A candidate deleted or disarmed by the core since it became one was
     * polled for nothing (a closed number says NVAL): it leaves, and is
     * never re-armed.  For a not-ready one (the common case: a level fd
     * the caller drained) that only matters when its request ended. */
    if (!rev) {
      /* Not ready: its request will tell, a new one if it ended. */
      if (__builtin_expect(!(slot & SLOT_ARMED), 0) && !cand_gone(e))
        rearm_not_ready(p, fd, e);
      continue;
    }
    if (cand_gone(e))
      continue;
    /* poll(2) reports ERR and HUP unasked, and NVAL for a number closed
     * before poller_del; RDHUP and PRI only when asked. */
    unsigned bits = from_pollmask(rev) & ((e->events & ASK_BITS) | POLLER_ERR |
                                          POLLER_HUP | POLLER_NVAL);
    if (!bits) {
      if (!(slot & SLOT_ARMED))
        rearm_not_ready(p, fd, e);
      continue;
    }
    if (n == max) {
      make_cand(p, fd, e); /* first at the next wait */
      continue;
    }
    /* Reported raw already (a refused request, put_raw).  Each fd is
     * polled once per call, and a second check in the same call only runs
     * when the first reported nothing: no other mark is needed. */
    if (slot & SLOT_INBATCH)
      continue;
    poller_event *o = &out[n++];
    o->fd = fd;
    o->gen = e->gen;
    if (bits & POLLER_NVAL) {
      o->events = POLLER_ERR | POLLER_NVAL | POLLER__RAW;
      o->data = NULL;
      (*raw)++;
      continue;
    }
    if (e->flags == FD_REGISTERED && !(bits & (POLLER_HUP | POLLER_RDHUP))) {
      /* A plain registration, checked now at its current generation: the
       * final report (the core's verdict, as poller__report_plain). */
      o->events = bits;
      o->data = e->data;
    } else {
      o->events = bits | POLLER__RAW; /* the core's filter decides */
      o->data = NULL;
      (*raw)++;
    }
    unsigned kp = e->kpacked;
    if (kp & (POLLER_ONESHOT >> POLLER__KPACK_SHIFT)) {
      (void)disarm(p, fd, e); /* reported once: the request must end */
    } else if (!(kp & (POLLER_ET >> POLLER__KPACK_SHIFT)) &&
               s->nheld < s->cap) {
      /* Level: still ready at the next wait unless the caller reads (the
       * check then renews an ended request). */
      e->bidx = (int32_t)(slot | SLOT_HELD);
      cand_set(&s->held[s->nheld++], fd, e);
    } else if (!(slot & SLOT_ARMED)) {
      (void)arm(p, fd, e, poller__kmask(e)); /* ET: for the next edge */
    }
  }
  return n;
}

static int uring_wait(poller *p, poller_event *out, int max, int timeout_ms) {
  struct uring_state *s = p->bstate;
  int r, n = 0, raw = 0;
  if (s->dropped)
    return -ECHILD; /* a forked child must call poller_reinit first */
  if (s->held_wait != p->stats.waits) {
    /* A new poller_wait: the level fds reported by the last one come
     * after the candidates it left for want of room, as epoll puts them
     * back at the tail of its ready list.  Their pollfds move as they
     * are, and their SLOT_HELD now means "in the list" (see check).  The
     * two lists hold distinct registrations, live at the last check, so
     * they fit: cap only grows. */
    if (__builtin_expect(s->nheld > s->cap - s->ncand, 0)) {
      /* Cannot happen (above); should it, one at a time, compacting. */
      int nc = s->ncand;
      for (int i = 0; i < s->nheld; i++) {
        int fd = s->held[i].fd;
        struct poller__fd *e = &p->fds[fd];
        e->bidx &= ~(int32_t)SLOT_HELD;
        cand_push(p, &nc, fd, e);
      }
      s->ncand = nc;
    } else if (s->nheld) {
      memcpy(s->cand + s->ncand, s->held, (size_t)s->nheld * sizeof *s->held);
      s->ncand += s->nheld;
    }
    s->nheld = 0;
    s->held_wait = p->stats.waits;
  }
  if (s->remask) {
    /* Candidates were built with the mask the kernel held then; a change
     * since (poller_mod, a new registration of the number) is polled with
     * the mask held now (test leftover_then_mod_reports_new_interest). */
    for (int i = 0; i < s->ncand; i++)
      s->cand[i].events = (short)to_pollmask(p->fds[s->cand[i].fd].kpacked);
    s->remask = 0;
  }
  /* Submit the queued changes, and collect completions waiting in task
   * work (posted by other threads' wake-ups) or in the overflow list;
   * otherwise the ring is as the kernel left it and no call is needed. */
  if (s->pending || cq_overflowed(s) || taskrun_pending(s)) {
    r = enter(p, 0, -1);
    if (r < 0 && r != -EINTR && r != -EBUSY)
      return r;
  }
  n = harvest(p, out, max, n, &raw);
  n = check(p, out, max, n, &raw);
  if (n == 0 && timeout_ms != 0) {
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
    n = harvest(p, out, max, n, &raw);
    n = check(p, out, max, n, &raw);
    /* With nothing ready (a wake-up for a file read since), the core
     * calls again with the time left. */
  }
  /* Only put_raw marks SLOT_INBATCH, and each of its reports is raw. */
  if (raw)
    for (int i = 0; i < n; i++)
      p->fds[out[i].fd].bidx &= ~(int32_t)SLOT_INBATCH;
  p->nfinal = raw ? -1 : n;
  return n;
}

static int uring_commit(poller *p) {
  struct uring_state *s = p->bstate;
  if (s->dropped)
    return 0;
  if ((s->ncand || s->nheld) && !io_uring_cq_ready(&s->ring)) {
    /* A nesting loop sleeps on the ring fd next: while fds may still be
     * ready (level fds reported, candidates left for want of room), a
     * no-op completion keeps it readable, as epoll's fd stays readable
     * while its ready list is not empty. */
    struct io_uring_sqe *sqe = get_sqe(p);
    if (sqe) {
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data64(sqe, CTL_UD);
    }
  }
  return s->pending ? submit(p) : 0;
}

/* The ring fd; while the ring is dropped, the never-readable descriptor
 * that keeps its number (see ring_drop). */
static int uring_fd(const poller *p) {
  const struct uring_state *s = p->bstate;
  return s->dropped ? s->hold : s->ring.ring_fd;
}

static int uring_reinit(poller *p) {
  /* In a forked child the ring was dropped at fork; in the owning process
   * the old ring's requests are cancelled first, so no file outlives it,
   * and it is dropped the same way.  Either way poller_fd's number is
   * held, and the new ring is moved onto it. */
  struct uring_state *s = p->bstate;
  cancel_all(p);
  if (!s->dropped)
    ring_drop(s);
  memset(&s->ring, 0, sizeof s->ring);
  s->pending = 0;
  s->ncand = 0;
  s->nheld = 0;
  s->remask = 0;
  s->wake_due = 0;
  for (int fd = 0; fd < p->nfds; fd++)
    p->fds[fd].bidx &= (int32_t)SLOT_ID;
  int r = ring_setup(&s->ring, RING_ENTRIES, &s->taskrun_flag);
  if (r < 0) {
    s->ring.ring_fd = -1;
    return r; /* still dropped: the number stays held */
  }
  if (s->hold >= 0) {
    /* dup3 closes the placeholder in the same step. */
    if (dup3(s->ring.ring_fd, s->hold, O_CLOEXEC) >= 0) {
      close(s->ring.ring_fd);
      s->ring.ring_fd = s->hold;
      s->ring.enter_ring_fd = s->hold;
    } else {
      close(s->hold);
    }
    s->hold = -1;
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
