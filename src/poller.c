/* SPDX-License-Identifier: MIT */
/*
 * poller.c - the backend-neutral core.
 *
 * The core owns the fd table (one 32-byte entry per fd number), the
 * registration stacks, the queue of interest changes and the "special"
 * list of fds that need attention at every wait (always-ready files,
 * emulated edge-triggered fds waiting to become not-ready, and refused
 * registrations whose NVAL report is pending).
 *
 * One wait, in order:
 *   1. scan the special list (may produce reports without a system call);
 *   2. flush the change queue: each changed fd reaches the backend once,
 *      with the union of its changes, and only if it differs from what the
 *      kernel holds (libev's fd_reify, libuv's watcher queue);
 *   3. call the backend's wait (timeout 0 when step 1 found something);
 *   4. filter its raw reports in place: drop the wakeup fd, stale
 *      generations and disarmed registrations; apply ONESHOT and the
 *      emulated ET of backends that lack them; fill in the caller's data.
 * EINTR is retried against an absolute deadline (PEP 475, bpo-35310).
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Bits that say the fd is ready for something (everything but modes). */
#define READY_BITS                                                             \
  (POLLER_IN | POLLER_OUT | POLLER_PRI | POLLER_ERR | POLLER_HUP |             \
   POLLER_RDHUP)
#define MODE_BITS (POLLER_ET | POLLER_ONESHOT)

/* How long poller_wait naps between kernel waits while ghosts it cannot
 * remove make every kernel wait return at once (see poller_wait). */
#define GHOST_NAP_MS 10

/* How many times one poller_wait asks the kernel again, without blocking,
 * for the reports that dropped ones left out of a full batch.  Every
 * backend hands out its ready entries in turn (epoll requeues a level
 * entry at the end of its ready list, poll and select start each scan
 * where the last one stopped), so each call gets further. */
#define MAX_TOPUPS 4

/* Extra flags beyond internal.h's, private to the core. */
#define FD_INBATCH 0x80u    /* reported by the special scan in this wait */
#define FD_KDISARMED 0x100u /* native ONESHOT fired: the kernel disarmed it */
#define FD_INSPECIAL 0x200u /* present in p->special */

/* Every bit of an interest mask as the caller gave it. */
#define INTEREST_BITS (READY_BITS | MODE_BITS)

/* Emulated ET keeps the bits it reported and found still ready in bits
 * 16-29 of `events`, which the interest never uses (its readiness bits are
 * below 0x4000 and its modes are bits 30 and 31): no field of its own, so
 * the fd table entry stays at 32 bytes. */
#define EDGE_SHIFT 16
_Static_assert(((READY_BITS << EDGE_SHIFT) & INTEREST_BITS) == 0 &&
                   (READY_BITS << EDGE_SHIFT) >> EDGE_SHIFT == READY_BITS,
               "the emulated-ET bits fit between the interest's bits");
#define EDGE_BITS(e) (((e)->events >> EDGE_SHIFT) & READY_BITS)
#define SET_EDGE_BITS(e, b)                                                    \
  ((e)->events = ((e)->events & INTEREST_BITS) | ((unsigned)(b) << EDGE_SHIFT))

int poller__fault[POLLER__FAULT_COUNT];
static int fault_times[POLLER__FAULT_COUNT]; /* calls left, 0: unbounded */

void poller__fault_set_times(enum poller__fault_point point, int err,
                             int times) {
  if ((unsigned)point < POLLER__FAULT_COUNT) {
    poller__fault[point] = err;
    fault_times[point] = err && times > 0 ? times : 0;
  }
}

void poller__fault_set(enum poller__fault_point point, int err) {
  poller__fault_set_times(point, err, 0);
}

int poller__fault_left(enum poller__fault_point point) {
  return (unsigned)point < POLLER__FAULT_COUNT ? fault_times[point] : 0;
}

int poller__fault_take(enum poller__fault_point point) {
  int err = poller__fault[point];
  if (err && fault_times[point] > 0 && --fault_times[point] == 0)
    poller__fault[point] = 0;
  return err;
}

static int check_mask(unsigned events) {
  if (events & ~POLLER_INTEREST_MASK)
    return -EINVAL;
  if (!(events & READY_BITS))
    return -EINVAL;
  return 0;
}

static int fd_is_open(poller *p, int fd) {
  p->stats.syscalls++;
  return poller__platform_fd_open(fd);
}

/* Grows the fd table so that it reaches fd.  Never called on the wait
 * path. */
static int table_reach(poller *p, int fd) {
  if (fd < p->nfds)
    return 0;
  size_t n = p->nfds ? (size_t)p->nfds : 64;
  while (n <= (size_t)fd)
    n *= 2;
  if (n > INT_MAX)
    n = (size_t)fd + 1;
  /* n * sizeof *t wraps on 32-bit targets for fds near INT_MAX. */
  if (n > SIZE_MAX / sizeof *p->fds)
    return -ENOMEM;
  struct poller__fd *t = realloc(p->fds, n * sizeof *t);
  if (!t)
    return -ENOMEM;
  memset(t + p->nfds, 0, (n - (size_t)p->nfds) * sizeof *t);
  p->fds = t;
  p->nfds = (int)n;
  unsigned m = 1;
  while (m <= n / 2)
    m *= 2;
  p->fdmask = m - 1; /* m is the largest power of two <= n */
  return 0;
}

/* Makes sure the change queue and the special list can hold `need`
 * entries, so the wait path never allocates.  Each fd is at most once in
 * each list, and an entry can only appear for a registered fd; so
 * reserving count + nqueue + nspecial + 2 at every add bounds both lists
 * until the next add (entries of deleted fds leave at the next wait). */
static int lists_reserve(poller *p, size_t need) {
  if (need <= (size_t)p->capqueue && need <= (size_t)p->capspecial)
    return 0;
  size_t n = p->capqueue ? (size_t)p->capqueue * 2 : 16;
  while (n < need)
    n *= 2;
  if (n > INT_MAX || n > SIZE_MAX / sizeof(poller__pollfd))
    return -ENOMEM;
  int *q = realloc(p->queue, n * sizeof *q);
  if (!q)
    return -ENOMEM;
  p->queue = q;
  int *s = realloc(p->special, n * sizeof *s);
  if (!s)
    return -ENOMEM;
  p->special = s;
  void *b = realloc(p->probe_buf, n * sizeof(poller__pollfd));
  if (!b)
    return -ENOMEM;
  p->probe_buf = b;
  p->capqueue = p->capspecial = (int)n;
  return 0;
}

/* Voids the plain tag of e, which is about to be dropped or replaced. */
static inline void void_tag(const poller *p, struct poller__fd *e) {
  if (p->be->caps & POLLER__CAP_PLAIN_TAG)
    e->ptag = POLLER__NO_TAG;
}

static void queue_change(poller *p, int fd, struct poller__fd *e) {
  if (e->flags & FD_QUEUED)
    return;
  poller__set_flags(p, e, FD_QUEUED);
  p->queue[p->nqueue++] = fd;
}

static void special_add(poller *p, int fd, struct poller__fd *e) {
  if (e->flags & FD_INSPECIAL)
    return;
  poller__set_flags(p, e, FD_INSPECIAL);
  p->special[p->nspecial++] = fd;
}

/* The hang-up emulated ET follows for a reader even when the caller did
 * not ask for it: on TCP a peer's FIN after the reader drained, with no
 * wait between, leaves the socket readable, as when the data was
 * reported; poll(2) shows the change only as RDHUP.  Without it the
 * emulation would miss the close (test
 * edge_tcp_peer_close_right_after_drain_reported).  Reports show RDHUP
 * only when asked. */
static unsigned edge_track(const struct poller__fd *e) {
  return (e->events & (POLLER_IN | POLLER_ET | POLLER_ONESHOT)) ==
                 (POLLER_IN | POLLER_ET)
             ? POLLER_RDHUP
             : 0;
}

/* The mask the kernel should hold for e now. */
static unsigned want_of(const poller *p, const struct poller__fd *e) {
  if (e->flags & FD_INTERNAL)
    return POLLER_IN;
  if (!(e->flags & FD_REGISTERED) ||
      (e->flags & (FD_DISARMED | FD_ALWAYS | FD_FAILED)))
    return 0;
  unsigned want = e->events & (READY_BITS | MODE_BITS);
  want &= ~(MODE_BITS & ~p->be->caps);
  if (!(p->be->caps & POLLER_ET))
    want |= edge_track(e);
  if (e->flags & FD_EDGE_WAIT) {
    /* Emulated ET: watch only the bits that are not ready now, so a level
     * kernel does not report the same readiness again.  After a hang-up or
     * an error nothing new can come, and poll(2) would report them even
     * with no interest, so the fd leaves the kernel set. */
    unsigned edge = EDGE_BITS(e);
    if (edge & (POLLER_HUP | POLLER_ERR))
      return 0;
    want &= ~edge;
    if (!(want & READY_BITS))
      return 0;
  }
  return want;
}

static int backend_ctl(poller *p, int fd, struct poller__fd *e, unsigned have,
                       unsigned want, int rearm) {
  if (want && poller__fault[POLLER__FAULT_CTL])
    return poller__fault[POLLER__FAULT_CTL];
  return p->be->ctl(p, fd, e, have, want, rearm);
}

/* Returns 1 when p was inherited by a forked child that has not called
 * poller_reinit.  The kernel object is then the parent's (epoll's set is
 * shared across fork, and so is the wakeup channel): a wait would take
 * the parent's reports (an edge or a oneshot the parent then never gets)
 * and a removal or change would remove or change the parent's
 * registrations (eventlet#68).  So, on every backend alike, poller_wait
 * and poller_flush refuse with -ECHILD, poller_del and poller_pop forget
 * the registration in the table only, and poller_add, poller_mod and
 * poller_push only queue their change, which poller_reinit applies to the
 * child's own new object.  One load and a compare, no system call. */
static inline int forked_copy(const poller *p) {
  return p->fork_gen != poller__platform_fork_gen();
}

static void stack_free(struct poller__fd *e) {
  free(e->saved);
  e->saved = NULL;
}

/* Removes the registration of fd (the caller's poller_del or last
 * poller_pop) from the kernel and the table.  No report of it may pass
 * poller_current any more, a pending NVAL report included: 0 is never a
 * live generation, and kernel reports tagged with the old one stay
 * stale. */
static void drop_registration(poller *p, int fd, struct poller__fd *e) {
  if (poller__kmask(e) && !forked_copy(p))
    (void)p->be->ctl(p, fd, e, poller__kmask(e), 0, 0);
  poller__set_kmask(e, 0);
  stack_free(e);
  if (e->flags & FD_REGISTERED)
    p->count--;
  e->flags &= (FD_QUEUED | FD_INSPECIAL | FD_GHOST_NUMBER);
  void_tag(p, e);
  e->events = 0;
  e->data = NULL;
  e->gen = 0;
}

/* The kernel refused a change of e (or a backend found the fd closed):
 * poller never removes a registration by itself, so the table keeps it
 * (count, get, next and depth stay a function of the caller's calls),
 * disarmed: nothing stays armed in the kernel, or a refused fd could be
 * reported at every wait.  The special scan reports it once as ERR|NVAL
 * with its data; poller_mod, poller_push or poller_pop re-arm it. */
static void disarm_refused(poller *p, int fd, struct poller__fd *e) {
  if (poller__kmask(e) && !forked_copy(p))
    (void)p->be->ctl(p, fd, e, poller__kmask(e), 0, 0);
  poller__set_kmask(e, 0);
  e->flags &= ~(FD_KDISARMED | FD_EDGE_WAIT);
  poller__set_flags(p, e, FD_DISARMED | FD_FAILED);
  special_add(p, fd, e);
}

static int rebuild_kernel_set(poller *p);

/* Sends the queued changes to the backend.  A change the kernel refuses
 * disarms the registration, whose ERR|NVAL report is then pending (at
 * this wait, or the next one after poller_flush); the first such error is
 * returned. */
static int flush(poller *p) {
  int first_err = 0;
  for (int i = 0; i < p->nqueue; i++) {
    int fd = p->queue[i];
    struct poller__fd *e = &p->fds[fd];
    e->flags &= ~FD_QUEUED;
    unsigned want = want_of(p, e);
    int rearm = (e->flags & FD_KDISARMED) && want;
    if (want == poller__kmask(e) && !rearm)
      continue;
    int r = backend_ctl(p, fd, e, poller__kmask(e), want, rearm);
    p->stats.changes++;
    if (r == 0) {
      poller__set_kmask(e, want);
      e->flags &= ~FD_KDISARMED;
    } else if (r == POLLER__ALWAYS_READY) {
      poller__set_kmask(e, 0);
      poller__set_flags(p, e, FD_ALWAYS);
      special_add(p, fd, e);
    } else if (want == 0) {
      /* A removal the kernel refused (EBADF: the fd was closed, and the
       * kernel forgot it with the last reference).  Nothing is held. */
      poller__set_kmask(e, 0);
    } else {
      if (!first_err)
        first_err = r;
      disarm_refused(p, fd, e);
    }
  }
  p->nqueue = 0;
  if (p->rebuild_due)
    rebuild_kernel_set(p); /* a ghost may hide behind a live tag */
  return first_err;
}

static long long now_ns(void) { return poller__platform_now_ns(); }

/* Milliseconds left until deadline, rounded up so a wait never ends
 * before its deadline and never turns into a zero-timeout spin. */
static int ms_left(long long deadline) {
  long long left = deadline - now_ns();
  if (left <= 0)
    return 0;
  long long ms = (left + 999999) / 1000000;
  return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* Applies ONESHOT after a report of e. */
static void after_report(poller *p, int fd, struct poller__fd *e) {
  if (!(e->events & POLLER_ONESHOT))
    return;
  poller__set_flags(p, e, FD_DISARMED);
  if (p->be->caps & POLLER_ONESHOT) {
    if (!(e->flags & FD_ALWAYS))
      poller__set_flags(p, e, FD_KDISARMED);
  } else {
    queue_change(p, fd, e);
  }
}

/* Emulated ET compares readiness in poll(2)'s view (what the backend
 * poll reports: HUP, RDHUP and ERR told apart, IN with a hang-up as
 * everywhere), from a probe's revents. */
static unsigned probe_view(const struct poller__fd *e, short revents) {
  unsigned interest = e->events & READY_BITS;
  unsigned bits = poller__from_pollbits(revents) &
                  (interest | POLLER_ERR | POLLER_HUP | edge_track(e));
  return poller__hup_in(bits, interest);
}

/* The bits of an emulated-ET edge that a report shows: RDHUP only when
 * asked (see edge_track). */
static unsigned shown_of(const struct poller__fd *e, unsigned bits) {
  return bits &
         ((e->events & READY_BITS) | POLLER_ERR | POLLER_HUP | POLLER_NVAL);
}

/* What the backend reports for readiness `bits` in poll(2)'s view.  select
 * (POLLER__CAP_SELECT_VIEW) cannot tell HUP, RDHUP or ERR: the kernel's
 * select shows a hang-up or an error as readable, an error also as
 * writable.  Reporting the probe's view there would report one hang-up
 * twice: once as IN by select, once as HUP by the probe. */
static unsigned backend_view(const poller *p, const struct poller__fd *e,
                             unsigned bits) {
  if (!(p->be->caps & POLLER__CAP_SELECT_VIEW))
    return bits;
  unsigned v = bits & (POLLER_IN | POLLER_OUT | POLLER_PRI);
  if (bits & (POLLER_HUP | POLLER_ERR))
    v |= POLLER_IN;
  if (bits & POLLER_ERR)
    v |= POLLER_OUT;
  return v & e->events;
}

/* select reported e with `bits` (its view): the edge is recorded in
 * poll(2)'s view, so the probes that follow compare like with like (a
 * hang-up that select showed as IN is not new to them). */
static unsigned select_edge(poller *p, int fd, const struct poller__fd *e,
                            unsigned bits) {
  poller__pollfd pf = {
      fd, poller__to_pollbits((e->events & READY_BITS) | edge_track(e)), 0};
  p->stats.syscalls++;
  if (poller__platform_probe(&pf, 1) == 1)
    bits |= probe_view(e, pf.revents);
  return bits;
}

/* Reverses special[from, to). */
static void special_reverse(poller *p, int from, int to) {
  for (to--; from < to; from++, to--) {
    int t = p->special[from];
    p->special[from] = p->special[to];
    p->special[to] = t;
  }
}

/* Step 1: the special list.  Returns the number of reports stored.
 * At most always_max of them are always-ready files; when one is held back
 * for that reason, *held is set.  Entries already reported in this wait
 * (FD_INBATCH) are skipped, so a second scan can top up the batch. */
static int scan_special(poller *p, poller_event *out, int max,
                        int always_max, int *held) {
  poller__pollfd *probe = p->probe_buf;
  int nprobe = 0, n = 0;
  int first_left = -1; /* the first entry left out for want of room */
  for (int i = 0; i < p->nspecial;) {
    int fd = p->special[i];
    struct poller__fd *e = &p->fds[fd];
    if (!(e->flags & (FD_ALWAYS | FD_EDGE_WAIT | FD_FAILED))) {
      e->flags &= ~FD_INSPECIAL;
      p->special[i] = p->special[--p->nspecial];
      continue;
    }
    i++;
    if (n >= max) {
      if (first_left < 0)
        first_left = i - 1;
      continue;
    }
    if (e->flags & FD_FAILED) {
      /* The registration stays (disarmed), and so does its data: the
       * report is current until poller_del (poller_current). */
      out[n++] = (poller_event){
          .fd = fd,
          .events = POLLER_ERR | POLLER_NVAL,
          .data = e->data,
          .gen = e->gen};
      e->flags &= ~FD_FAILED;
      continue;
    }
    if (!(e->flags & FD_REGISTERED) ||
        (e->flags & (FD_DISARMED | FD_INBATCH)))
      continue;
    if (e->flags & FD_ALWAYS) {
      /* A regular file: select and poll call it readable and writable. */
      unsigned bits = e->events & (POLLER_IN | POLLER_OUT);
      if (!bits)
        continue;
      if ((e->events & POLLER_ET) && EDGE_BITS(e) == bits)
        continue; /* an edge is reported once; a file never changes */
      if (always_max <= 0) {
        /* Held back so the kernel's reports get room (see poller_wait). */
        *held = 1;
        if (first_left < 0)
          first_left = i - 1;
        continue;
      }
      always_max--;
      if (e->events & POLLER_ET)
        SET_EDGE_BITS(e, bits);
      out[n++] = (poller_event){
          .fd = fd, .events = bits, .data = e->data, .gen = e->gen};
      poller__set_flags(p, e, FD_INBATCH);
      after_report(p, fd, e);
      continue;
    }
    probe[nprobe].fd = fd;
    probe[nprobe].events =
        poller__to_pollbits((e->events & READY_BITS) | edge_track(e));
    probe[nprobe].revents = 0;
    nprobe++;
  }
  if (first_left > 0) {
    /* Fairness (test wait_partial_harvest): the entries left out come
     * first at the next scan, or always-ready files beyond max would
     * starve. */
    special_reverse(p, 0, first_left);
    special_reverse(p, first_left, p->nspecial);
    special_reverse(p, 0, p->nspecial);
  }
  if (nprobe == 0)
    return n;
  /* Emulated ET: one zero-timeout probe (poll(2)) over the fds reported
   * earlier, to learn which have become not-ready (re-arm them) and which
   * gained a new readiness bit (report it: a transition). */
  p->stats.syscalls++;
  if (poller__platform_probe(probe, nprobe) < 0)
    return n;
  for (int i = 0; i < nprobe; i++) {
    int fd = probe[i].fd;
    struct poller__fd *e = &p->fds[fd];
    unsigned now = probe_view(e, probe[i].revents);
    unsigned fresh = now & ~EDGE_BITS(e);
    unsigned shown = fresh ? shown_of(e, backend_view(p, e, now)) : 0;
    if (shown && n >= max)
      continue; /* no room: keep the old edge so the next scan reports it
                   (test wait_partial_harvest_edge_new_bits) */
    SET_EDGE_BITS(e, now);
    if (!now)
      e->flags &= ~FD_EDGE_WAIT;
    queue_change(p, fd, e);
    if (shown) {
      out[n++] = (poller_event){
          .fd = fd, .events = shown, .data = e->data, .gen = e->gen};
      poller__set_flags(p, e, FD_INBATCH);
      after_report(p, fd, e);
    }
  }
  return n;
}

/* poller_fd must be readable while poller has reports to give (poller.h),
 * but the kernel object knows nothing of always-ready files (epoll refuses
 * them, asio#111) nor of pending NVAL reports.  While scan_special would
 * report one of them, the wakeup channel, which is in the kernel set, is
 * kept signalled (test poller_fd_readable_with_always_ready).  The test
 * below mirrors scan_special's exactly, or a wait would wake for nothing.
 * Emulated ET entries only exist where there is no poller_fd. */
static void keep_fd_readable(poller *p) {
  if (!p->be->fd || p->keep_signalled)
    return;
  for (int i = 0; i < p->nspecial; i++) {
    const struct poller__fd *e = &p->fds[p->special[i]];
    int due = (e->flags & FD_FAILED) != 0;
    if ((e->flags & FD_ALWAYS) && (e->flags & FD_REGISTERED) &&
        !(e->flags & FD_DISARMED)) {
      unsigned bits = e->events & (POLLER_IN | POLLER_OUT);
      due = bits && !((e->events & POLLER_ET) && EDGE_BITS(e) == bits);
    }
    if (due) {
      /* Not a wakeup: poller_wait tells the two apart by wake_pending. */
      p->keep_signalled = 1;
      p->stats.syscalls++;
      poller__wakefd_signal(p->wakefd_w);
      return;
    }
  }
}

/* Step 4: filters out[from, from + k) in place, appending the kept reports
 * at out[*n].  Sets *internal when the wakeup fd was among them. */
static void filter(poller *p, poller_event *out, int from, int k, int *n,
                   int *internal, int mark, int marked) {
  int emulate_et = !(p->be->caps & POLLER_ET);
  int plain_tag = (p->be->caps & POLLER__CAP_PLAIN_TAG) != 0;
  struct poller__fd *fds = p->fds;
  unsigned nfds = (unsigned)p->nfds;
  int w = *n;
  for (int i = from; i < from + k; i++) {
    int fd = out[i].fd;
    unsigned bits = out[i].events;
    if (marked) {
      /* Mixed reports: the unmarked ones are final already. */
      if (!(bits & POLLER__RAW)) {
        out[w++] = out[i];
        continue;
      }
      bits &= ~POLLER__RAW;
    }
    if ((unsigned)fd >= nfds) {
      p->stats.stale++;
      continue;
    }
    struct poller__fd *e = &fds[fd];
    /* The common case, first and cheapest: a plain level registration
     * with nothing special about it (the pipes benchmark's whole load). */
    if (e->flags == FD_REGISTERED &&
        (out[i].gen == e->gen || !out[i].gen) && !(bits & POLLER_NVAL)) {
      bits &= (e->events & READY_BITS) | POLLER_ERR | POLLER_HUP;
      if (plain_tag && out[i].gen == e->gen)
        e->ptag = (uint32_t)fd; /* plain and current: the backend's reports
                                   of it may skip this filter (internal.h) */
      if (bits) {
        poller_event *o = &out[w++];
        o->fd = fd;
        o->events = poller__hup_in(bits, e->events);
        o->data = e->data;
        o->gen = e->gen;
      } else {
        /* Nothing wanted: the kernel holds something the table does not
         * (a level report dropped here would come back at every wait). */
        p->stats.stale++;
      }
      continue;
    }
    if (e->flags & FD_INTERNAL) {
      *internal = 1; /* never a report: see poller_wait */
      continue;
    }
    if (!(e->flags & FD_REGISTERED) || (e->flags & FD_DISARMED) ||
        (out[i].gen && out[i].gen != e->gen)) {
      p->stats.stale++;
      continue;
    }
    /* An emulated-ET reader follows RDHUP even unasked (edge_track). */
    unsigned track = emulate_et ? bits & edge_track(e) : 0;
    bits &= (e->events & READY_BITS) | POLLER_ERR | POLLER_HUP | POLLER_NVAL;
    if (!(bits | track)) {
      p->stats.stale++; /* as above: the kernel's state is not ours */
      continue;
    }
    bits = poller__hup_in(bits | track, e->events);
    if (bits & POLLER_NVAL) {
      /* poll's POLLNVAL, or select's EBADF: the fd was closed behind our
       * back.  Report it once and disarm, so it cannot spin;
       * the key stays until poller_del, which then succeeds. */
      bits = shown_of(e, bits | POLLER_ERR);
      poller__set_flags(p, e, FD_DISARMED);
      queue_change(p, fd, e);
    } else if (emulate_et && (e->events & POLLER_ET) &&
               !(e->events & POLLER_ONESHOT)) {
      /* Emulated ET: report, then stop watching what is ready until the
       * special scan sees it go away (scan_special). */
      unsigned edge = EDGE_BITS(e);
      if (!(bits & ~edge))
        continue;
      edge |= bits;
      if (p->be->caps & POLLER__CAP_EDGE_PROBE)
        edge = select_edge(p, fd, e, edge);
      SET_EDGE_BITS(e, edge);
      poller__set_flags(p, e, FD_EDGE_WAIT);
      special_add(p, fd, e);
      queue_change(p, fd, e);
      bits = shown_of(e, bits);
    }
    if (e->flags & FD_INBATCH) {
      /* Already reported by the special scan: merge, one entry per fd. */
      for (int j = 0; j < w; j++)
        if (out[j].fd == fd) {
          out[j].events |= bits;
          break;
        }
      continue;
    }
    out[w++] = (poller_event){
        .fd = fd, .events = bits, .data = e->data, .gen = e->gen};
    if (mark)
      poller__set_flags(p, e, FD_INBATCH); /* a second special scan must not
                                      repeat it */
    after_report(p, fd, e);
  }
  *n = w;
}

/* epoll keeps the registration of an fd closed before poller_del while a
 * dup of it lives on, and the closed number can no longer remove it
 * (libuv#1468): the kernel then reports that file at every wait
 * as a stale generation or an unregistered fd, and a wait with nothing
 * else to report would spin on these ghosts until its deadline (forever
 * for -1; test dup_close_before_del_no_spin).  As libev
 * does on a generation mismatch, rebuild the kernel object from the table:
 * a new epoll instance (backend reinit keeps poller_fd's number) holding
 * the wakeup fd and every live registration.  O(registered) system calls,
 * no allocation, and only after a close-before-del. */
static int rebuild_kernel_set(poller *p) {
  p->rebuild_due = 0;
  int r = poller__fault[POLLER__FAULT_REBUILD];
  if (r == 0)
    r = p->be->rebuild ? p->be->rebuild(p) : -ENOSYS;
  if (r < 0) {
    /* The old set stays: stale reports stay filtered, the next flush
     * tries again, and poller_wait degrades rather than spin. */
    p->rebuild_due = 1;
    return r;
  }
  struct poller__fd *w = &p->fds[p->wakefd_r];
  if (p->be->ctl(p, p->wakefd_r, w, 0, POLLER_IN, 0) != 0)
    poller__set_kmask(w, 0);
  for (int fd = 0; fd < p->nfds; fd++) {
    struct poller__fd *e = &p->fds[fd];
    if (!(e->flags & FD_REGISTERED) || (e->flags & FD_INTERNAL))
      continue;
    poller__set_kmask(e, 0);
    e->flags &= ~FD_KDISARMED;
    /* A change the caller made and the kernel has not seen yet may
     * report current readiness again, as it would without a rebuild;
     * any other re-add only repeats what the kernel already had. */
    if (!(e->flags & FD_QUEUED))
      poller__set_flags(p, e, FD_REBUILT);
    queue_change(p, fd, e);
  }
  (void)flush(p);
  if (p->be->settle)
    p->be->settle(p);
  /* The new set holds no older file's entry under any number. */
  for (int fd = 0; fd < p->nfds; fd++)
    p->fds[fd].flags &= (uint16_t)~(FD_REBUILT | FD_GHOST_NUMBER);
  return 0;
}

/* Drops the reports of out[from, n) whose fd already has one in
 * out[0, from), merging their bits into it, and returns the new n.  A
 * batch topped up by a second backend wait (see poller_wait) would
 * otherwise report a level fd twice: the kernel reports it again. */
static int drop_repeats(poller_event *out, int from, int n) {
  int w = from;
  for (int i = from; i < n; i++) {
    int j = 0;
    while (j < from && out[j].fd != out[i].fd)
      j++;
    if (j < from)
      out[j].events |= out[i].events;
    else
      out[w++] = out[i];
  }
  return w;
}

/* Reports, once, the registrations the last flush disarmed (a refused
 * change), after the n reports out[] has.  One the special scan already
 * reported in this wait keeps its NVAL for the next wait (one report per
 * fd and wait; keep_fd_readable keeps poller_fd readable meanwhile). */
static int report_refused(poller *p, poller_event *out, int n, int max) {
  for (int i = 0; i < p->nspecial && n < max; i++) {
    int fd = p->special[i];
    struct poller__fd *e = &p->fds[fd];
    if ((e->flags & (FD_FAILED | FD_INBATCH)) == FD_FAILED) {
      out[n++] = (poller_event){.fd = fd,
                                .events = POLLER_ERR | POLLER_NVAL,
                                .data = e->data,
                                .gen = e->gen};
      e->flags &= ~FD_FAILED;
    }
  }
  return n;
}

/* Turns the k reports the backend wrote at out[before] into the caller's:
 * the backend's final ones are kept as they are, the others go through
 * the core's filter (stale, internal, merged or held back reports leave
 * no report), and after a top-up, repeats of reports the batch already
 * has are merged into them.  Returns the new count; *internal says the
 * wakeup channel reported. */
static int take_batch(poller *p, poller_event *out, int before, int k,
                      int mark, int topped, int *internal) {
  int fin = p->nfinal;
  int n = before;
  p->nfinal = 0;
  if (fin >= 0) {
    n += fin;
    if (k > fin)
      filter(p, out, n, k - fin, &n, internal, mark, 0);
  } else {
    filter(p, out, n, k, &n, internal, mark, 1);
  }
  if (topped)
    n = drop_repeats(out, before, n);
  return n;
}

/* The wakeup channel reported: it is signalled by poller_wakeup, and by
 * keep_fd_readable for poller_fd's sake.  Only the first ends the wait;
 * neither is a report.  Drained either way, so it cannot spin;
 * keep_fd_readable signals it again if still needed.  The flag is read
 * after the drain, so a wakeup racing with it is either seen here or
 * signals anew.  Returns 1 when a poller_wakeup was pending. */
static int drain_wakeups(poller *p) {
  poller__wakefd_drain(p->wakefd_r);
  p->stats.syscalls++;
  p->keep_signalled = 0;
  return atomic_exchange(&p->wake_pending, 0) != 0;
}

/* The kernel set could not be replaced (no memory): its ghosts would end
 * every kernel wait at once.  Rather than spin, waits on the wakeup
 * channel alone for a short while between kernel waits: reports may come
 * up to that much late, wakeups do not.  Returns the timeout left (0 for
 * one last kernel wait without blocking). */
static int ghost_nap(poller *p, int tmo, long long deadline) {
  int nap = tmo < 0 || tmo > GHOST_NAP_MS ? GHOST_NAP_MS : tmo;
  p->stats.syscalls++;
  (void)poller__platform_wait_readable(p->wakefd_r, nap);
  if (tmo > 0)
    tmo = ms_left(deadline);
  return tmo;
}

/* Asks the backend for reports after the n that out[] has, until one is
 * the caller's, a poller_wakeup came, or tmo (ms, -1 for ever) is over.
 * Returns the new count (the reports so far when a later call fails) or
 * the backend's error when there is none. */
static int wait_kernel(poller *p, poller_event *out, int n, int max, int tmo,
                       int mark) {
  long long deadline = tmo > 0 ? now_ns() + (long long)tmo * 1000000LL : 0;
  int woken = 0, topped = 0;
  while (n < max) {
    int room = max - n;
    int k = poller__fault[POLLER__FAULT_WAIT]
                ? poller__fault_take(POLLER__FAULT_WAIT)
                : p->be->wait(p, out + n, room, tmo);
    if (k == -EINTR) {
      p->stats.eintr++;
      if (p->report_eintr)
        return n > 0 ? n : -EINTR;
      if (tmo > 0)
        tmo = ms_left(deadline); /* 0 makes one last, fresh poll */
      continue;
    }
    if (k < 0)
      return n > 0 ? n : k;
    unsigned long long stale = p->stats.stale;
    int internal = 0;
    int before = n;
    n = take_batch(p, out, before, k, mark, topped, &internal);
    /* Slots of this call's room that produced no report. */
    int dropped = k - (n - before);
    int ghosts = 0;
    if (p->stats.stale != stale &&
        (p->be->caps & POLLER__CAP_STALE_REBUILD))
      ghosts = rebuild_kernel_set(p) < 0; /* ghosts of closed fds, above */
    if (internal && drain_wakeups(p))
      woken = 1;
    if (!woken && dropped > 0 && k == room && n < max && (n > 0 || tmo == 0) &&
        topped < MAX_TOPUPS) {
      /* Reports that are not the caller's (the wakeup channel, a ghost's
       * stale report) took slots of a full batch: they must neither take
       * the caller's room nor end the wait early, so fetch what they left
       * out, without blocking (with nothing kept and time left, the
       * blocking wait below does it).  Bounded, so it cannot spin. */
      topped++;
      tmo = 0;
      continue;
    }
    if (n > 0 || woken || tmo == 0)
      break;
    /* Only stale reports: wait again for the time that is left. */
    if (tmo > 0 && (tmo = ms_left(deadline)) == 0)
      break;
    if (ghosts)
      tmo = ghost_nap(p, tmo, deadline);
  }
  return n;
}

int poller_wait(poller *p, poller_event *out, int max, int timeout_ms) {
  if (!p || !out)
    return -EFAULT;
  if (max <= 0 || timeout_ms < -1)
    return -EINVAL;
  if (forked_copy(p))
    return -ECHILD; /* the kernel object is the parent's: reinit first */
  int n = 0, held = 0;
  /* Always-ready files never stop being ready: on every other wait they
   * leave a slot of out[] (all of it when max is 1) to the kernel's
   * reports, or a socket would starve behind a regular file (test
   * always_ready_does_not_starve_others).  The kernel is then asked with
   * timeout 0, and the files held back top up the batch after it. */
  int always_max = (p->stats.waits & 1) ? max - 1 : max;
  /* Reports are marked FD_INBATCH (so the special scan and the kernel's
   * reports merge into one per fd) only when there is a special list. */
  int mark = p->nspecial != 0;
  if (mark)
    n = scan_special(p, out, max, always_max, &held);
  if (p->nqueue)
    (void)flush(p);
  if (p->nspecial && n < max)
    n = report_refused(p, out, n, max); /* the flush may have disarmed some */
  int tmo = n > 0 || held ? 0 : timeout_ms;
  p->stats.waits++;
  int r = wait_kernel(p, out, n, max, tmo, mark);
  if (r < 0)
    return r;
  n = r;
  if (held && n < max)
    n += scan_special(p, out + n, max - n, max - n, &held);
  if (mark)
    for (int i = 0; i < n; i++)
      p->fds[out[i].fd].flags &= ~FD_INBATCH;
  if (p->nspecial)
    keep_fd_readable(p);
  p->stats.events += (unsigned long long)n;
  return n;
}

int poller_current(const poller *p, const poller_event *ev) {
  if (!p || !ev)
    return 0;
  const struct poller__fd *e = poller__entry(p, ev->fd);
  if (!e || e->gen != ev->gen || !(e->flags & FD_REGISTERED))
    return 0;
  /* A refused registration stays, disarmed, until the caller deletes it:
   * its NVAL report is current until then. */
  if (ev->events & POLLER_NVAL)
    return 1;
  return (ev->events & (POLLER_ERR | POLLER_HUP)) ||
         (ev->events & e->events & READY_BITS);
}

/* ---- registration ---- */

static int do_add(poller *p, int fd, unsigned events, void *data) {
  /* An fd beyond the table is checked before the table grows for it: a
   * bad number up to INT_MAX must give -EBADF, not a table of gigabytes or
   * -ENOMEM (test bad_fd_rejected). */
  int checked = 0;
  if (fd >= p->nfds) {
    if (!fd_is_open(p, fd))
      return -EBADF;
    checked = 1;
  }
  int r = table_reach(p, fd);
  if (r < 0)
    return r;
  struct poller__fd *e = &p->fds[fd];
  if (e->flags & (FD_REGISTERED | FD_INTERNAL))
    return -EEXIST;
  if ((r = lists_reserve(p, p->count + (size_t)p->nqueue +
                                    (size_t)p->nspecial + 2)) < 0)
    return r;
  /* In a forked child the add is queued, as on every backend, for
   * poller_reinit to apply: the kernel object is the parent's. */
  int sync = (p->be->caps & POLLER__CAP_SYNC_ADD) != 0 && !forked_copy(p);
  if (!sync && !checked && !fd_is_open(p, fd))
    return -EBADF;
  unsigned gen = ++p->next_gen;
  if (gen == 0)
    gen = ++p->next_gen;
  e->flags &= (FD_QUEUED | FD_INSPECIAL | FD_GHOST_NUMBER);
  poller__set_flags(p, e, FD_REGISTERED | ((events & MODE_BITS) ? FD_MODES : 0));
  e->events = events;
  e->data = data;
  e->gen = gen;
  poller__set_kmask(e, 0);
  p->count++;
  if (!sync) {
    queue_change(p, fd, e);
    return 0;
  }
  unsigned want = want_of(p, e);
  r = backend_ctl(p, fd, e, 0, want, 0);
  p->stats.changes++;
  if (r == POLLER__ALWAYS_READY) {
    poller__set_flags(p, e, FD_ALWAYS);
    special_add(p, fd, e);
    keep_fd_readable(p);
  } else if (r < 0) {
    e->flags &= ~(FD_REGISTERED | FD_MODES);
    e->data = NULL;
    e->events = 0;
    p->count--;
    return r;
  } else {
    poller__set_kmask(e, want);
  }
  return 0;
}

int poller_add(poller *p, int fd, unsigned events, void *data) {
  if (!p)
    return -EFAULT;
  if (fd < 0)
    return -EBADF;
  int r = check_mask(events);
  if (r < 0)
    return r;
  return do_add(p, fd, events, data);
}

static struct poller__fd *registered(const poller *p, int fd) {
  struct poller__fd *e = poller__entry(p, fd);
  return (e && (e->flags & FD_REGISTERED)) ? e : NULL;
}

/* Installs (events, data) as the top of e's stack. */
static void set_top(poller *p, int fd, struct poller__fd *e, unsigned events,
                    void *data) {
  e->data = data;
  if (events == (e->events & INTEREST_BITS) && !(e->flags & FD_DISARMED))
    return; /* data only, or nothing: no system call */
  e->events = events; /* also clears the emulated-ET bits */
  /* A re-arm of a refused registration tries the kernel again; an NVAL
   * report still pending is about the interest replaced here, and goes
   * (another refusal reports anew). */
  e->flags &= ~(FD_DISARMED | FD_FAILED | FD_EDGE_WAIT | FD_MODES);
  if (events & MODE_BITS)
    poller__set_flags(p, e, FD_MODES);
  queue_change(p, fd, e);
}

int poller_mod(poller *p, int fd, unsigned events, void *data) {
  if (!p)
    return -EFAULT;
  int r = check_mask(events);
  if (r < 0)
    return r;
  struct poller__fd *e = registered(p, fd);
  if (!e)
    return -ENOENT;
  set_top(p, fd, e, events, data);
  return 0;
}

int poller_del(poller *p, int fd) {
  if (!p)
    return -EFAULT;
  struct poller__fd *e = registered(p, fd);
  if (!e)
    return -ENOENT;
  drop_registration(p, fd, e);
  return 0;
}

int poller_push(poller *p, int fd, unsigned events, void *data) {
  if (!p)
    return -EFAULT;
  if (fd < 0)
    return -EBADF;
  int r = check_mask(events);
  if (r < 0)
    return r;
  struct poller__fd *e = registered(p, fd);
  if (!e)
    return do_add(p, fd, events, data);
  struct poller__stack *s = e->saved;
  if (!s || s->depth == s->cap) {
    unsigned cap = s ? s->cap * 2 : 2;
    size_t bytes;
    /* The depth must stay an int (poller_depth), and the size must not
     * wrap on 32-bit targets. */
    if (cap > INT_MAX / 2 ||
        __builtin_mul_overflow((size_t)cap, sizeof s->entry[0], &bytes) ||
        __builtin_add_overflow(bytes, sizeof *s, &bytes))
      return -ENOMEM;
    struct poller__stack *g = realloc(s, bytes);
    if (!g)
      return -ENOMEM;
    if (!s)
      g->depth = 0;
    g->cap = cap;
    e->saved = s = g;
  }
  s->entry[s->depth].events = e->events & INTEREST_BITS;
  s->entry[s->depth].data = e->data;
  s->depth++;
  set_top(p, fd, e, events, data);
  return 0;
}

int poller_pop(poller *p, int fd) {
  if (!p)
    return -EFAULT;
  struct poller__fd *e = registered(p, fd);
  if (!e)
    return -ENOENT;
  struct poller__stack *s = e->saved;
  if (!s || s->depth == 0) {
    drop_registration(p, fd, e);
    return 0;
  }
  s->depth--;
  set_top(p, fd, e, s->entry[s->depth].events, s->entry[s->depth].data);
  return 0;
}

int poller_depth(const poller *p, int fd) {
  if (!p)
    return 0;
  const struct poller__fd *e = registered(p, fd);
  if (!e)
    return 0;
  return 1 + (e->saved ? (int)e->saved->depth : 0);
}

int poller_get(const poller *p, int fd, poller_event *key) {
  if (!p || !key)
    return -EFAULT;
  const struct poller__fd *e = registered(p, fd);
  if (!e)
    return -ENOENT;
  *key = (poller_event){
      .fd = fd,
      .events = e->events & INTEREST_BITS,
      .data = e->data,
      .gen = e->gen};
  return 0;
}

int poller_next(const poller *p, int after_fd, poller_event *key) {
  if (!p || !key)
    return -EFAULT;
  /* after_fd + 1 would wrap for INT_MAX: compare before adding. */
  if (after_fd >= p->nfds - 1)
    return -ENOENT;
  int fd = after_fd < -1 ? 0 : after_fd + 1;
  for (; fd < p->nfds; fd++)
    if (p->fds[fd].flags & FD_REGISTERED)
      return poller_get(p, fd, key);
  return -ENOENT;
}

size_t poller_count(const poller *p) { return p ? p->count : 0; }

int poller_flush(poller *p) {
  if (!p)
    return -EFAULT;
  if (forked_copy(p))
    return -ECHILD; /* the changes wait for poller_reinit */
  int r = flush(p);
  if (p->be->commit) {
    int c = p->be->commit(p);
    if (!r)
      r = c;
  }
  if (p->nspecial)
    keep_fd_readable(p);
  return r;
}

/* ---- the poller object ---- */

int poller_wakeup(poller *p) {
  if (!p)
    return -EFAULT;
  /* In a forked child before poller_reinit the channel is the parent's:
   * a wakeup there would wake the parent's wait, and poller_reinit drops
   * pending wakeups anyway. */
  if (forked_copy(p))
    return 0;
  /* Only the first wakeup since the last drain writes, so the channel can
   * never fill and a wakeup is never lost (cpython#74224).  The
   * waiter drains first, then clears the flag. */
  if (atomic_exchange(&p->wake_pending, 1) == 0)
    poller__wakefd_signal(p->wakefd_w);
  return 0;
}

int poller_fd(const poller *p) {
  if (!p || !p->be->fd)
    return -1;
  return p->be->fd(p);
}

/* Moves *fd off numbers that have a registration: after close-before-del
 * such a number is free in the kernel but still a key of the table, and
 * the channel's entry would wipe it. */
static int off_registered(poller *p, int *fd) {
  int moved = -1;
  while (*fd < p->nfds && (p->fds[*fd].flags & (FD_REGISTERED | FD_FAILED))) {
    int to = poller__platform_dup_above(*fd);
    if (to < 0) {
      if (moved >= 0)
        poller__platform_close(moved);
      return to;
    }
    if (moved >= 0)
      poller__platform_close(moved);
    *fd = moved = to;
  }
  return 0;
}

/* Opens a wakeup channel on numbers that are not keys of the table. */
static int wake_open(poller *p, int *rfd, int *wfd) {
  int r = poller__wakefd_open(rfd, wfd);
  if (r < 0)
    return r;
  int r0 = *rfd, w0 = *wfd;
  int same = r0 == w0;
  if ((r = off_registered(p, rfd)) == 0 && !same)
    r = off_registered(p, wfd);
  if (same)
    *wfd = *rfd;
  /* off_registered left the originals open when it moved them. */
  if (*rfd != r0)
    poller__platform_close(r0);
  if (!same && *wfd != w0)
    poller__platform_close(w0);
  if (r < 0) {
    poller__platform_close(*rfd);
    if (!same)
      poller__platform_close(*wfd);
    *rfd = *wfd = -1;
  }
  return r;
}

/* Registers the wakeup channel with the backend: a new one, or the one in
 * (rfd, wfd) when rfd >= 0. */
static int wake_register(poller *p, int rfd, int wfd) {
  int r;
  if (rfd < 0 && (r = wake_open(p, &rfd, &wfd)) < 0)
    return r;
  p->wakefd_r = rfd;
  p->wakefd_w = wfd;
  if ((r = table_reach(p, p->wakefd_r)) < 0 ||
      (r = lists_reserve(p, p->count + 2)) < 0)
    return r;
  struct poller__fd *e = &p->fds[p->wakefd_r];
  memset(e, 0, sizeof *e);
  e->flags = FD_INTERNAL;
  void_tag(p, e);
  e->events = POLLER_IN;
  /* 0 is never a live generation (drop_registration, the plain tag). */
  e->gen = ++p->next_gen;
  if (e->gen == 0)
    e->gen = ++p->next_gen;
  r = p->be->ctl(p, p->wakefd_r, e, 0, POLLER_IN, 0);
  if (r != 0)
    return r < 0 ? r : -EINVAL;
  poller__set_kmask(e, POLLER_IN);
  return 0;
}

static void wake_close(poller *p) {
  if (p->wakefd_r >= 0) {
    if (p->wakefd_r < p->nfds)
      memset(&p->fds[p->wakefd_r], 0, sizeof p->fds[0]);
    poller__platform_close(p->wakefd_r);
  }
  if (p->wakefd_w >= 0 && p->wakefd_w != p->wakefd_r)
    poller__platform_close(p->wakefd_w);
  p->wakefd_r = p->wakefd_w = -1;
}

static int open_with(poller **pp, const struct poller__backend *be) {
  poller *p = calloc(1, sizeof *p);
  if (!p)
    return -ENOMEM;
  p->be = be;
  p->wakefd_r = p->wakefd_w = -1;
  atomic_init(&p->wake_pending, 0);
  poller__platform_fork_watch();
  p->fork_gen = poller__platform_fork_gen();
  int r = 0;
  if (be->id == POLLER_EPOLL || be->id == POLLER_KQUEUE)
    r = poller__fault[POLLER__FAULT_INIT_NATIVE];
  if (r == 0)
    r = be->init(p);
  if (r < 0) {
    free(p);
    return r;
  }
  if ((r = wake_register(p, -1, -1)) < 0) {
    poller_close(p);
    return r;
  }
  *pp = p;
  return 0;
}

static int env_backend(void) {
  /* Ignored in setuid and setgid programs: the environment is the
   * caller's, not the owner's. */
  if (!poller__platform_env_trusted())
    return -1;
  const char *name = getenv("POLLER_BACKEND");
  if (!name || !*name)
    return -1;
  int b = poller_backend_from_name(name);
  return b > 0 ? b : -1;
}

int poller_open(poller **pp, enum poller_backend backend) {
  if (!pp)
    return -EINVAL;
  *pp = NULL;
  if ((unsigned)backend > POLLER_AFD)
    return -EINVAL;
  if (backend != POLLER_AUTO) {
    const struct poller__backend *be = poller__backend_find(backend);
    if (!be)
      return -ENOSYS;
    return open_with(pp, be);
  }
  int r = -ENOSYS;
  int named = env_backend();
  if (named > 0) {
    const struct poller__backend *be = poller__backend_find(named);
    if (be && open_with(pp, be) == 0)
      return 0;
  }
  for (int i = 0; poller__backends[i]; i++)
    if (poller__auto_eligible(poller__backends[i]) &&
        (r = open_with(pp, poller__backends[i])) == 0)
      return 0;
  return r;
}

void poller_close(poller *p) {
  if (!p)
    return;
  for (int fd = 0; fd < p->nfds; fd++)
    free(p->fds[fd].saved);
  p->be->fini(p);
  wake_close(p);
  free(p->fds);
  free(p->queue);
  free(p->special);
  free(p->probe_buf);
  free(p);
}

int poller_reinit(poller *p) {
  if (!p)
    return -EFAULT;
  /* The wakeup channel is shared with the parent after fork: a new one,
   * so the child's wakeups never reach the parent's waits.  It is opened
   * before the old one is closed and never on a registered number (an fd
   * closed before del leaves its number free but registered). */
  int rfd, wfd;
  int r = wake_open(p, &rfd, &wfd);
  if (r < 0)
    return r;
  if ((r = p->be->reinit(p)) < 0) {
    poller__platform_close(rfd);
    if (wfd != rfd)
      poller__platform_close(wfd);
    return r;
  }
  wake_close(p);
  atomic_store(&p->wake_pending, 0);
  p->keep_signalled = 0;
  if ((r = wake_register(p, rfd, wfd)) < 0)
    return r;
  for (int fd = 0; fd < p->nfds; fd++) {
    struct poller__fd *e = &p->fds[fd];
    if (!(e->flags & FD_REGISTERED) || (e->flags & FD_INTERNAL))
      continue;
    poller__set_kmask(e, 0);
    e->flags &= ~FD_KDISARMED;
    queue_change(p, fd, e);
  }
  /* The poller is this process's own from now on. */
  p->fork_gen = poller__platform_fork_gen();
  return 0;
}

int poller_option(poller *p, int option, int value) {
  if (!p)
    return -EFAULT;
  switch (option) {
  case POLLER_OPT_REPORT_EINTR:
    p->report_eintr = value != 0;
    return 0;
  default:
    return -EINVAL;
  }
}

int poller_stats_get(const poller *p, poller_stats *st) {
  if (!p || !st)
    return -EFAULT;
  *st = p->stats;
  return 0;
}

size_t poller_fd_state_size(void) { return sizeof(struct poller__fd); }

enum poller_backend poller_backend(const poller *p) {
  return p ? p->be->id : POLLER_AUTO;
}

unsigned poller_caps(const poller *p) {
  return p ? p->be->caps & MODE_BITS : 0;
}

static const char *const backend_names[] = {
    "auto", "select", "poll", "epoll", "kqueue", "uring", "afd"};

const char *poller_backend_name(enum poller_backend b) {
  if ((unsigned)b > POLLER_AFD)
    return "unknown";
  return backend_names[b];
}

int poller_backend_from_name(const char *name) {
  if (!name)
    return -EINVAL;
  for (int b = 0; b <= POLLER_AFD; b++)
    if (strcmp(name, backend_names[b]) == 0)
      return b;
  if (strcmp(name, "io_uring") == 0)
    return POLLER_URING;
  return -EINVAL;
}

unsigned poller_available(void) {
  unsigned bits = 0;
  for (int i = 0; poller__backends[i]; i++)
    if (poller__backends[i]->probe() == 0)
      bits |= 1u << poller__backends[i]->id;
  return bits;
}

#ifdef _WIN32
/* The POSIX codes mingw-w64's errno.h adds to the C runtime's classic
 * ones (the network errors, which the library returns for Winsock's
 * WSAE* errors): msvcrt's strerror calls them all "Unknown error". */
static const char *win_posix_strerror(int e) {
  switch (e) {
  case EADDRINUSE:
    return "Address already in use";
  case EADDRNOTAVAIL:
    return "Cannot assign requested address";
  case EAFNOSUPPORT:
    return "Address family not supported by protocol";
  case EALREADY:
    return "Operation already in progress";
  case EBADMSG:
    return "Bad message";
  case ECANCELED:
    return "Operation canceled";
  case ECONNABORTED:
    return "Software caused connection abort";
  case ECONNREFUSED:
    return "Connection refused";
  case ECONNRESET:
    return "Connection reset by peer";
  case EDESTADDRREQ:
    return "Destination address required";
  case EHOSTUNREACH:
    return "No route to host";
  case EIDRM:
    return "Identifier removed";
  case EINPROGRESS:
    return "Operation now in progress";
  case EISCONN:
    return "Transport endpoint is already connected";
  case ELOOP:
    return "Too many levels of symbolic links";
  case EMSGSIZE:
    return "Message too long";
  case ENETDOWN:
    return "Network is down";
  case ENETRESET:
    return "Network dropped connection on reset";
  case ENETUNREACH:
    return "Network is unreachable";
  case ENOBUFS:
    return "No buffer space available";
  case ENODATA:
    return "No data available";
  case ENOLINK:
    return "Link has been severed";
  case ENOMSG:
    return "No message of desired type";
  case ENOPROTOOPT:
    return "Protocol not available";
  case ENOTCONN:
    return "Transport endpoint is not connected";
  case ENOTRECOVERABLE:
    return "State not recoverable";
  case ENOTSOCK:
    return "Socket operation on non-socket";
  case ENOTSUP:
    return "Operation not supported";
  case EOPNOTSUPP:
    return "Operation not supported on socket";
  case EOVERFLOW:
    return "Value too large for defined data type";
  case EOWNERDEAD:
    return "Owner died";
  case EPROTO:
    return "Protocol error";
  case EPROTONOSUPPORT:
    return "Protocol not supported";
  case EPROTOTYPE:
    return "Protocol wrong type for socket";
  case ETIME:
    return "Timer expired";
  case ETIMEDOUT:
    return "Connection timed out";
  case ETXTBSY:
    return "Text file busy";
  case EWOULDBLOCK:
    return "Operation would block";
  default:
    return NULL;
  }
}
#endif

const char *poller_strerror(int err) {
  if (err > 0)
    err = -err;
  if (err == 0)
    return "success";
#ifdef _WIN32
  const char *m = win_posix_strerror(-err);
  if (m)
    return m;
#endif
  return strerror(-err);
}
