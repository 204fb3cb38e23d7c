/* SPDX-License-Identifier: MIT */
/*
 * internal.h - what the core and the backends share.  Not installed.
 *
 * The core (poller.c) owns the fd table, the registration stacks, the queue
 * of interest changes and every decision about what reaches the caller.
 * A backend (backend_*.c) translates interest masks into its kernel's
 * terms, batches them as it likes, and turns kernel reports back into raw
 * poller_event entries.  A backend never calls user code and never decides
 * whether a report is stale: the core does, from the generation.
 */
#ifndef POLLER_INTERNAL_H
#define POLLER_INTERNAL_H

#include "platform.h"
#include "poller.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Flags of a fd table entry.  Setting one must void the plain tag (ptag,
 * below): every flag is set through poller__set_flags. */
#define FD_REGISTERED 0x01u /* the fd has a registration stack */
#define FD_QUEUED 0x02u     /* the fd is in the change queue */
#define FD_DISARMED 0x04u   /* ONESHOT fired, or NVAL: nothing armed */
#define FD_ALWAYS 0x08u     /* the kernel refused it: always ready */
#define FD_INTERNAL 0x10u   /* the poller's own wakeup fd */
#define FD_EDGE_WAIT 0x20u  /* emulated ET: reported, awaiting not-ready */
#define FD_FAILED 0x40u     /* refused and disarmed: NVAL report pending */
#define FD_MODES 0x400u     /* the interest has POLLER_ET or POLLER_ONESHOT */
/* Re-added by a rebuild of the kernel set with no change of the caller's
 * pending: an edge the re-add produces is not news (see settle below).
 * Set only during rebuild_kernel_set in poller.c. */
#define FD_REBUILT 0x800u
/* epoll: a removal through this number failed with EBADF or ENOENT (the
 * file was closed, or another put on the number, before poller_del), so
 * the set may still hold an older file's entry for the number, which a
 * later EPOLL_CTL_MOD would reach and re-tag with a live generation.  Kept
 * across del and add; cleared by a rebuild. */
#define FD_GHOST_NUMBER 0x1000u

/* The saved entries of a registration stack below its top. */
struct poller__stack {
  unsigned depth; /* saved entries in use */
  unsigned cap;
  struct {
    unsigned events;
    void *data;
  } entry[];
};

/* One entry of the fd table, indexed by fd.  32 bytes on LP64: the whole
 * per-fd state of the core (see poller_fd_state_size). */
struct poller__fd {
  void *data;                  /* top of the stack: the caller's data */
  struct poller__stack *saved; /* entries below the top, or NULL */
  unsigned events;             /* top of the stack: interest and modes */
  uint16_t kpacked;            /* mask the kernel holds, packed, 0: none */
  uint16_t flags;              /* FD_* */
  union {
    int32_t bidx;  /* the backend's own slot (poll: index) */
    uint32_t ptag; /* POLLER__CAP_PLAIN_TAG: see poller__plain_tag */
  };
  unsigned gen; /* generation of the registration */
};

/* The plain tag (backends with POLLER__CAP_PLAIN_TAG, which leave bidx to
 * the core): ptag holds the entry's own fd number only while the entry is
 * known to be a plain registration (flags == FD_REGISTERED), and
 * POLLER__NO_TAG, which is no fd number, otherwise.  With gen right after
 * it, the 8 bytes {ptag, gen} then equal the kernel's tag {fd, gen} of a
 * current report (the epoll backend's data.u64) exactly when the report
 * is of this very fd, of its current generation, and the entry is plain:
 * one compare instead of a bound check, a flags compare and a generation
 * compare.  The core keeps it so:
 *   - every time a flag of such an entry is set (poller__set_flags),
 *     and when it drops or replaces a registration, it stores NO_TAG: a
 *     stale "plain" can never survive a change;
 *   - its filter stores the fd back when it finds the entry plain and the
 *     report current (the first report after a change takes the slow
 *     path once); clearing a flag never stores it.
 * A new table entry is all zero: tag {0, 0}, and 0 is never a generation
 * given to the kernel (do_add and wake_register skip it), so it matches
 * nothing. */
#define POLLER__NO_TAG 0xffffffffu
_Static_assert(offsetof(struct poller__fd, gen) ==
                   offsetof(struct poller__fd, ptag) + 4,
               "gen follows the plain tag: {ptag, gen} is one 8-byte word");
_Static_assert(offsetof(struct poller__fd, ptag) % 8 == 0,
               "the {ptag, gen} word is aligned");

/* The mask the kernel holds is kept in 16 bits so that the entry stays at
 * 32 bytes: the readiness bits keep their values (all below 0x4000) and
 * the modes, at the top of the public mask (poll(2)'s and epoll's layout),
 * move to the two free bits 0x4000 (ONESHOT) and 0x8000 (ET). */
#define POLLER__KPACK_SHIFT 16
_Static_assert(((POLLER_IN | POLLER_PRI | POLLER_OUT | POLLER_ERR | POLLER_HUP |
                 POLLER_RDHUP) &
                ~0x3fffu) == 0,
               "the readiness bits fit below the packed modes");
_Static_assert((POLLER_ONESHOT >> POLLER__KPACK_SHIFT) == 0x4000u &&
                   (POLLER_ET >> POLLER__KPACK_SHIFT) == 0x8000u,
               "the modes pack into the top two bits of 16");

/* Returns the mask the kernel holds for e (0: none), unpacked. */
static inline unsigned poller__kmask(const struct poller__fd *e) {
  unsigned k = e->kpacked;
  return (k & 0x3fffu) | ((k & 0xc000u) << POLLER__KPACK_SHIFT);
}

/* Records m (readiness bits and modes) as the mask the kernel holds. */
static inline void poller__set_kmask(struct poller__fd *e, unsigned m) {
  e->kpacked =
      (uint16_t)((m & 0x3fffu) | ((m >> POLLER__KPACK_SHIFT) & 0xc000u));
}

/* Marks a report a backend left raw among final ones (p->nfinal == -1). */
#define POLLER__RAW 0x80000000u

/* What a backend's ctl may return besides 0 and -errno: the kernel cannot
 * watch this kind of file (epoll's EPERM for regular files, asio#111). */
#define POLLER__ALWAYS_READY 1

/* Capability bits of a backend beyond POLLER_ET and POLLER_ONESHOT. */
#define POLLER__CAP_SYNC_ADD 0x10000u /* ctl on add reports bad fds itself */
/* Stale reports mean the kernel keeps a registration the core cannot
 * remove (epoll: a closed fd with a live dup), so the core rebuilds the
 * kernel set through reinit (see rebuild_kernel_set in poller.c). */
#define POLLER__CAP_STALE_REBUILD 0x20000u
/* The backend's reports see readiness differently from the emulated-ET
 * probe (select cannot tell a hang-up; Windows' AFD calls a peer's FIN a
 * disconnect where the probe sees a hang-up): the core records each
 * emulated-ET report's edge in the probe's view too, so the probe that
 * follows does not take the same event for a new one. */
#define POLLER__CAP_EDGE_PROBE 0x40000u
/* The backend reports readiness as select(2) does: a hang-up or an error
 * as IN, an error also as OUT, never HUP, RDHUP or ERR themselves.  The
 * core's emulated ET shows a transition its probe found in that view
 * (backend_view in poller.c), or one hang-up would be reported twice. */
#define POLLER__CAP_SELECT_VIEW 0x80000u
/* The backend does not use bidx: the core keeps the plain tag there
 * (struct poller__fd's ptag), for the backend's report loop. */
#define POLLER__CAP_PLAIN_TAG 0x100000u

/*
 * The backend interface.  Each backend file exports one const instance.
 *
 * probe:  returns 0 when the backend works on this machine, else -errno.
 *         Cheap; called by poller_available and by POLLER_AUTO.
 * init:   creates the kernel object and p->bstate.  Returns 0 or -errno.
 * fini:   releases them.  Must not close a descriptor it does not own
 *         (after fork, see reinit).
 * ctl:    makes the kernel watch fd for `want` (readiness bits plus
 *         POLLER_ET / POLLER_ONESHOT) where it holds `have` (0: nothing).
 *         want == 0 removes the fd and must take effect before ctl returns
 *         (removals are synchronous, libuv#4323).  Other changes may be
 *         batched until wait.  `rearm` is set when a native ONESHOT
 *         registration must be re-armed although have == want.  e->gen is
 *         the generation to tag the kernel registration with.  Returns 0,
 *         POLLER__ALWAYS_READY, or -errno.
 * wait:   waits at most timeout_ms (-1: forever) and stores at most max
 *         raw reports in out[]: fd, ready bits (POLLER_*), and in gen the
 *         generation the kernel registration carried (0 if the backend
 *         keeps none; the core then takes the current one).  At most one
 *         report per fd.  A backend may finish the reports of plain
 *         registrations itself with poller__report_plain: it puts them
 *         first and sets p->nfinal to their number.  Returns the count,
 *         0 on timeout, -errno (-EINTR included; the core retries).
 * commit: optional: sends changes that ctl batched to the kernel now
 *         (poller_flush calls it, so a nesting loop sleeping on poller_fd
 *         sees them).  NULL when ctl applies changes itself.
 * fd:     the pollable descriptor of the kernel object, or -1.
 * reinit: called in a forked child: drops the inherited kernel object
 *         without disturbing the parent and creates a new one.  The core
 *         then calls ctl for every registration with have == 0.
 * rebuild: optional (POLLER__CAP_STALE_REBUILD): in the owning process,
 *         replaces the kernel object by an empty one, keeping poller_fd's
 *         number and its registration in a loop that nests it; the core
 *         then calls ctl for the wakeup fd and every registration with
 *         have == 0.  A backend's ctl sets p->rebuild_due when it learns
 *         that the kernel may hold a registration the core cannot remove.
 * settle: optional, with rebuild: called once the core has added every
 *         registration to the new kernel object.  Adding a ready
 *         edge-triggered registration gives it an edge although nothing
 *         happened to its file; settle takes such edges back for the
 *         entries marked FD_REBUILT, keeping those the old object still
 *         held undelivered, and releases the old object.
 */
struct poller__backend {
  enum poller_backend id;
  const char *name;
  unsigned caps; /* POLLER_ET, POLLER_ONESHOT, POLLER__CAP_* */
  int (*probe)(void);
  int (*init)(poller *p);
  void (*fini)(poller *p);
  int (*ctl)(poller *p, int fd, struct poller__fd *e, unsigned have,
             unsigned want, int rearm);
  int (*wait)(poller *p, poller_event *out, int max, int timeout_ms);
  int (*commit)(poller *p);
  int (*fd)(const poller *p);
  int (*reinit)(poller *p);
  int (*rebuild)(poller *p);
  void (*settle)(poller *p);
};

struct poller {
  const struct poller__backend *be;
  void *bstate; /* the backend's own state */

  struct poller__fd *fds; /* the fd table, indexed by fd */
  int nfds;               /* entries allocated in fds */
  /* The largest 2^k - 1 below nfds: fd & fdmask is always an index of
   * the table, with no compare.  The table is never empty once the poller
   * is open (the wakeup channel has an entry), only grows, and never
   * during a backend's wait. */
  unsigned fdmask;
  int maxfd;     /* highest registered fd, -1 when none */
  size_t count;  /* registered fds, the wakeup fd excluded */
  size_t kcount; /* fds the backend may hold (capacity hint) */

  int *queue; /* fds whose interest changed since the last flush */
  int nqueue;
  int capqueue;

  int *special; /* ALWAYS, EDGE_WAIT and FAILED fds: checked each wait */
  int nspecial;
  int capspecial;
  void *probe_buf; /* poller__pollfd[capspecial] for the emulated ET probe */

  int wakefd_r, wakefd_w;  /* the wakeup channel (eventfd: both equal) */
  atomic_int wake_pending; /* poller_wakeup signalled the channel */
  int keep_signalled;      /* keep_fd_readable signalled it (poller.c) */
  int rebuild_due;         /* set by a backend's ctl: see rebuild above */
  int nfinal; /* set by a backend's wait: the number of leading reports
                 already final, or -1 when final and raw reports are mixed
                 and the raw ones carry POLLER__RAW */
  unsigned next_gen;
  int report_eintr;
  /* The process's fork generation when the poller was opened or last
   * reinitialised (poller__platform_fork_gen): while it differs, the
   * poller is a forked child's copy and leaves the kernel object, which is
   * the parent's, alone (see forked_copy in poller.c). */
  unsigned fork_gen;
  poller_stats stats;
};

/* Looks up fd's table entry, or NULL when the table does not reach it. */
/* Sets flags f of e: the one way to set a flag, in the core and in the
 * backends.  Any flag makes the entry not plain: on a backend that reads
 * the plain tag, the tag is voided at once (see POLLER__NO_TAG). */
static inline void poller__set_flags(const poller *p, struct poller__fd *e,
                                     unsigned f) {
  e->flags |= (uint16_t)f;
  if (p->be->caps & POLLER__CAP_PLAIN_TAG)
    e->ptag = POLLER__NO_TAG;
}

static inline struct poller__fd *poller__entry(const poller *p, int fd) {
  return (fd >= 0 && fd < p->nfds) ? &p->fds[fd] : NULL;
}

/* A hang-up is readable: when the interest has POLLER_IN, a report with
 * HUP or RDHUP gets IN too, on every backend (poller.h: IN means
 * "readable, or the peer closed"; poll and epoll report a pipe whose
 * writer closed as HUP alone).  On the hot path a hang-up is rare: one
 * well-predicted test, and the interest is read only then. */
static inline unsigned poller__hup_in(unsigned bits, unsigned interest) {
  if (__builtin_expect((bits & (POLLER_HUP | POLLER_RDHUP)) != 0, 0))
    bits |= interest & POLLER_IN;
  return bits;
}

/* The core's verdict on one report of a plain level registration, for a
 * backend's conversion loop (the hot path of every wait): when fd's
 * registration is plain (no mode, nothing pending in the core) and gen is
 * its generation, stores the final report in *o and returns 1.  bits must
 * be non-zero and hold only the interest and ERR/HUP, as epoll and
 * io_uring report them for a plain registration (the kernel masks).
 * Otherwise (a hang-up included, see poller__hup_in) returns 0 and the
 * backend leaves the raw report for the core's filter
 * (poller.c), after the final ones, and sets p->nfinal to the number of
 * final reports.  fds and nfds are p->fds and p->nfds, read once by the
 * caller: stores through o could otherwise alias them and force a reload
 * per report. */
/* Returns fd's table entry when a report (bits, gen) for it can be final
 * at once: the fd is in the table, the report is not a hang-up, and the
 * entry is a plain registration of that generation.  NULL: leave it to
 * the core's filter. */
static inline const struct poller__fd *
poller__plain_entry(const struct poller__fd *fds, unsigned nfds, unsigned fd,
                    unsigned bits, unsigned gen) {
  /* A hang-up (rare) is left to the filter, which adds IN to it
   * (poller__hup_in): a test and a branch here, not a merge per report. */
  if (fd >= nfds || (bits & (POLLER_HUP | POLLER_RDHUP)))
    return NULL;
  const struct poller__fd *e = &fds[fd];
  /* One compare says "registered, no mode, nothing pending". */
  if (e->flags != FD_REGISTERED || e->gen != gen)
    return NULL;
  return e;
}

static inline int poller__report_plain(const struct poller__fd *fds,
                                       unsigned nfds, poller_event *o, int fd,
                                       unsigned bits, unsigned gen) {
  const struct poller__fd *e =
      poller__plain_entry(fds, nfds, (unsigned)fd, bits, gen);
  if (!e)
    return 0;
  o->fd = fd;
  o->gen = gen;
  o->events = bits;
  o->data = e->data;
  return 1;
}

/* The plain tag word of e: {ptag, gen} as one 64-bit value, ptag in the
 * low half, as a kernel tag (fd | gen << 32) is built.  On a little-endian
 * machine that is the two fields' memory, read with one load. */
static inline uint64_t poller__tag_word(const struct poller__fd *e) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  uint64_t w;
  __builtin_memcpy(&w, &e->ptag, sizeof w);
  return w;
#else
  return (uint64_t)e->ptag | ((uint64_t)e->gen << 32);
#endif
}

/* The backends, each defined in its own file; NULL where not built. */
extern const struct poller__backend poller__backend_select;
extern const struct poller__backend poller__backend_poll;
extern const struct poller__backend poller__backend_epoll;
extern const struct poller__backend poller__backend_kqueue;
extern const struct poller__backend poller__backend_uring;
extern const struct poller__backend poller__backend_afd;

/* The preference-ordered table of built backends (backends.c). */
extern const struct poller__backend *const poller__backends[];
const struct poller__backend *poller__backend_find(enum poller_backend b);
/* Returns 1 when POLLER_AUTO may pick `be` without being told to (the
 * environment variable POLLER_BACKEND can still name any backend). */
int poller__auto_eligible(const struct poller__backend *be);

/* The wakeup channel (wakeup.c): an eventfd on Linux, a pipe elsewhere. */
int poller__wakefd_open(int *rfd, int *wfd);
void poller__wakefd_drain(int rfd);
void poller__wakefd_signal(int wfd);

/* Fault injection for the tests: when set, the named point fails with the
 * given -errno once per call until cleared (0), or for a given number of
 * calls (poller__fault_set_times). */
enum poller__fault_point {
  POLLER__FAULT_URING_SETUP, /* io_uring probe and init */
  POLLER__FAULT_CTL,         /* every backend ctl that is not a removal */
  POLLER__FAULT_INIT_NATIVE, /* poller_open of epoll and kqueue */
  POLLER__FAULT_REBUILD,     /* the core's rebuild of the kernel set */
  /* Every backend wait poller_wait makes: it returns the -errno instead
   * of waiting (transient kernel errors, for the loop's back-off). */
  POLLER__FAULT_WAIT,
  POLLER__FAULT_COUNT
};
extern int poller__fault[POLLER__FAULT_COUNT];
void poller__fault_set(enum poller__fault_point point, int err);
/* Makes point fail with err for its next `times` calls (times > 0), then
 * clears it; times == 0 is poller__fault_set. */
void poller__fault_set_times(enum poller__fault_point point, int err,
                             int times);
/* The calls left before a point set with poller__fault_set_times clears
 * itself (0: unbounded, or not set). */
int poller__fault_left(enum poller__fault_point point);
/* Takes one call of point's fault: returns its -errno, counting the call
 * down when the fault was set for a number of calls. */
int poller__fault_take(enum poller__fault_point point);

#endif /* POLLER_INTERNAL_H */
