/* SPDX-License-Identifier: MIT */
/*
 * loop.c - the event loop over a poller: fd watchers, timers, deferred
 * work, signals, child processes, file changes and async wake-ups.
 *
 * One iteration of poller_loop_run, in order:
 *   1. refresh the cached time and run the due timers (only timers
 *      started before this phase: a 0 ms timer re-armed from its own
 *      callback waits for the next iteration, libuv#4245);
 *   2. wait: until the next timer (rounded up to whole ms, so never a
 *      zero-timeout spin and never early), the run's timeout, or forever;
 *      0 when deferred work is pending;
 *   3. dispatch the fd reports, skipping any that poller_current says an
 *      earlier callback of the batch made stale;
 *   4. signals, async sends; 5. due timers again; 6. deferred work.
 *
 * Internal descriptors (pidfds, inotify) are fd watchers marked internal:
 * they do not keep the loop alive by themselves; their handles do.
 */
#define _GNU_SOURCE
#include "heap.h"
#include "poller_loop.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/inotify.h>
#endif

#define EVENTS_PER_WAIT 256
#define MAX_SIGNAL_LOOPS 64
#define NSIGNALS 65

struct io_watcher {
  poller_io_cb cb;
  void *arg;
  int active;
  int internal; /* does not count in poller_loop_alive */
};

struct deferred {
  void (*fn)(void *);
  void *arg;
};

struct poller_loop {
  poller *p;
  poller_event events[EVENTS_PER_WAIT];
  struct io_watcher *io;
  int nio;
  size_t alive; /* user fd watchers, timers, signals, children, ... */

  poller_timer **heap;
  size_t nheap, capheap;
  uint64_t timer_seq;
  uint64_t now_ns;

  struct deferred *defer;
  size_t ndefer, capdefer;

  atomic_int stop;
  atomic_int async_pending;
  poller_async *asyncs;

  poller_signal *signals;
  atomic_uint sigcount[NSIGNALS];
  atomic_int sigwatch[NSIGNALS]; /* watchers per signal in this loop */
  atomic_int sig_pending;

  poller_child *children;
  int sigchld_fallback; /* children without pidfd rely on SIGCHLD */
  poller_signal sigchld;

  int inotify_fd;
  unsigned inotify_gen; /* new for every inotify instance the loop opens */
  poller_fswatch *watches;

  /* poller_loop_run in progress (a nested run is refused), and a
   * poller_loop_close asked from inside it, done when the run returns. */
  int running;
  int close_requested;

  poller_loop_hook *hooks; /* close hooks, the newest first */

  /* Callbacks of signals, asyncs and file watches may start and stop any
   * handle: `version` changes when a list does, and a dispatch pass then
   * starts over, skipping the handles whose `pass` says they already ran
   * (never touching a handle that was stopped and maybe freed). */
  unsigned version;
  unsigned pass;
};

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the loop ---- */

int poller_loop_open(poller_loop **lp, enum poller_backend backend) {
  if (!lp)
    return -EINVAL;
  *lp = NULL;
  poller_loop *l = calloc(1, sizeof *l);
  if (!l)
    return -ENOMEM;
  int r = poller_open(&l->p, backend);
  if (r < 0) {
    free(l);
    return r;
  }
  l->inotify_fd = -1;
  l->now_ns = mono_ns();
  *lp = l;
  return 0;
}

static void signals_forget(poller_loop *l);
static void run_deferred(poller_loop *l);

void poller_loop_close(poller_loop *l) {
  if (!l)
    return;
  if (l->running) {
    /* Called from a callback: freeing the loop now would pull it from
     * under poller_loop_run.  The run stops dispatching and closes the
     * loop just before it returns (asyncio refuses to close a running
     * loop; a void call cannot refuse, so it is deferred instead). */
    l->close_requested = 1;
    atomic_store(&l->stop, 1);
    return;
  }
  /* Deferred work not run yet usually frees what a callback closed. */
  run_deferred(l);
  /* Each hook is unlinked before its callback, which may free it (and may
   * add or remove other hooks). */
  while (l->hooks) {
    poller_loop_hook *h = l->hooks;
    l->hooks = h->next;
    h->active = 0;
    h->next = NULL;
    h->cb(h, h->arg);
  }
  while (l->signals)
    poller_signal_stop(l->signals);
  while (l->children)
    poller_child_stop(l->children);
  while (l->watches)
    poller_fswatch_stop(l->watches);
  while (l->asyncs)
    poller_async_stop(l->asyncs);
  while (l->nheap)
    poller_timer_stop(l->heap[0]);
  signals_forget(l);
  if (l->inotify_fd >= 0)
    close(l->inotify_fd);
  poller_close(l->p);
  free(l->io);
  free(l->heap);
  free(l->defer);
  free(l);
}

poller *poller_loop_poller(poller_loop *l) { return l ? l->p : NULL; }

/* ---- close hooks ---- */

int poller_loop_hook_add(poller_loop *l, poller_loop_hook *h,
                         poller_loop_hook_cb cb, void *arg) {
  if (!l || !h || !cb)
    return -EFAULT;
  /* A loop has a few hooks (one per layer), so the membership check by
   * walking the list is cheap, and it never trusts the handle's memory. */
  for (poller_loop_hook *it = l->hooks; it; it = it->next)
    if (it == h)
      return -EBUSY;
  *h = (poller_loop_hook){l, cb, arg, 1, l->hooks};
  l->hooks = h;
  return 0;
}

int poller_loop_hook_remove(poller_loop_hook *h) {
  if (!h)
    return -EFAULT;
  if (!h->active)
    return 0;
  for (poller_loop_hook **pp = &h->loop->hooks; *pp; pp = &(*pp)->next)
    if (*pp == h) {
      *pp = h->next;
      break;
    }
  h->active = 0;
  h->next = NULL;
  return 0;
}

poller_loop_hook *poller_loop_hook_find(const poller_loop *l,
                                        poller_loop_hook_cb cb) {
  if (!l)
    return NULL;
  for (poller_loop_hook *h = l->hooks; h; h = h->next)
    if (h->cb == cb)
      return h;
  return NULL;
}

int poller_loop_stop(poller_loop *l) {
  if (!l)
    return -EFAULT;
  atomic_store(&l->stop, 1);
  return poller_wakeup(l->p);
}

uint64_t poller_loop_now(const poller_loop *l) {
  return l ? l->now_ns / 1000000u : 0;
}

void poller_loop_update_time(poller_loop *l) {
  if (l)
    l->now_ns = mono_ns();
}

size_t poller_loop_alive(const poller_loop *l) { return l ? l->alive : 0; }

int poller_loop_closing(const poller_loop *l) {
  return l && l->close_requested;
}

int poller_loop_defer(poller_loop *l, void (*fn)(void *), void *arg) {
  if (!l || !fn)
    return -EFAULT;
  if (l->ndefer == l->capdefer) {
    size_t cap = l->capdefer ? l->capdefer * 2 : 16;
    struct deferred *d = realloc(l->defer, cap * sizeof *d);
    if (!d)
      return -ENOMEM;
    l->defer = d;
    l->capdefer = cap;
  }
  l->defer[l->ndefer++] = (struct deferred){fn, arg};
  return 0;
}

static void run_deferred(poller_loop *l) {
  /* Work deferred by deferred work runs in this same pass. */
  for (size_t i = 0; i < l->ndefer; i++)
    l->defer[i].fn(l->defer[i].arg);
  l->ndefer = 0;
}

/* ---- fd watchers ---- */

static int io_reach(poller_loop *l, int fd) {
  if (fd < l->nio)
    return 0;
  int n = l->nio ? l->nio : 64;
  while (n <= fd) {
    if (n > INT_MAX / 2)
      return -ENOMEM;
    n *= 2;
  }
  struct io_watcher *w = realloc(l->io, (size_t)n * sizeof *w);
  if (!w)
    return -ENOMEM;
  memset(w + l->nio, 0, (size_t)(n - l->nio) * sizeof *w);
  l->io = w;
  l->nio = n;
  return 0;
}

static int io_start(poller_loop *l, int fd, unsigned events, poller_io_cb cb,
                    void *arg, int internal) {
  if (!l || !cb)
    return -EFAULT;
  if (fd < 0)
    return -EBADF;
  int r = io_reach(l, fd);
  if (r < 0)
    return r;
  if ((r = poller_add(l->p, fd, events, arg)) < 0)
    return r;
  l->io[fd] = (struct io_watcher){cb, arg, 1, internal};
  if (!internal)
    l->alive++;
  return 0;
}

int poller_io_start(poller_loop *l, int fd, unsigned events, poller_io_cb cb,
                    void *arg) {
  return io_start(l, fd, events, cb, arg, 0);
}

int poller_io_modify(poller_loop *l, int fd, unsigned events) {
  if (!l)
    return -EFAULT;
  if (fd < 0 || fd >= l->nio || !l->io[fd].active)
    return -ENOENT;
  return poller_mod(l->p, fd, events, l->io[fd].arg);
}

int poller_io_stop(poller_loop *l, int fd) {
  if (!l)
    return -EFAULT;
  if (fd < 0 || fd >= l->nio || !l->io[fd].active)
    return -ENOENT;
  (void)poller_del(l->p, fd);
  if (!l->io[fd].internal)
    l->alive--;
  memset(&l->io[fd], 0, sizeof l->io[fd]);
  return 0;
}

/* ---- timers ---- */

void poller_timer_init(poller_timer *t, poller_timer_cb cb, void *arg) {
  if (!t)
    return;
  memset(t, 0, sizeof *t);
  t->cb = cb;
  t->arg = arg;
}

/* ms -> ns, saturating: a huge value means "never", never a wrap. */
static uint64_t ms_to_ns(uint64_t ms) {
  return ms > UINT64_MAX / 1000000u ? UINT64_MAX : ms * 1000000u;
}

static uint64_t sat_add(uint64_t a, uint64_t b) {
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

int poller_timer_start(poller_loop *l, poller_timer *t, uint64_t timeout_ms,
                       uint64_t repeat_ms) {
  if (!l || !t || !t->cb)
    return -EFAULT;
  if (t->active)
    poller_timer_stop(t);
  if (l->nheap == l->capheap) {
    size_t cap = l->capheap ? l->capheap * 2 : 16;
    poller_timer **h = realloc(l->heap, cap * sizeof *h);
    if (!h)
      return -ENOMEM;
    l->heap = h;
    l->capheap = cap;
  }
  /* A fresh clock, not the cached one: the deadline is measured from the
   * moment of the call, so the timer can never fire early. */
  t->loop = l;
  t->deadline_ns = sat_add(mono_ns(), ms_to_ns(timeout_ms));
  t->repeat_ns = ms_to_ns(repeat_ms);
  t->seq = l->timer_seq++;
  t->active = 1;
  l->heap[l->nheap] = t;
  t->heap_index = l->nheap++;
  poller__heap_up(l->heap, t->heap_index);
  l->alive++;
  return 0;
}

int poller_timer_stop(poller_timer *t) {
  if (!t)
    return -EFAULT;
  if (!t->active)
    return 0;
  poller_loop *l = t->loop;
  poller__heap_remove(l->heap, &l->nheap, t->heap_index);
  t->active = 0;
  l->alive--;
  return 0;
}

int poller_timer_active(const poller_timer *t) { return t && t->active; }

/* Runs the due timers; returns how many ran. */
static int run_timers(poller_loop *l) {
  uint64_t seq_limit = l->timer_seq;
  int ran = 0;
  l->now_ns = mono_ns();
  while (l->nheap && !l->close_requested) {
    poller_timer *t = l->heap[0];
    if (t->deadline_ns > l->now_ns || t->deadline_ns == UINT64_MAX)
      break;
    if (t->seq >= seq_limit)
      break; /* started in this phase: next iteration (libuv#4245) */
    if (t->repeat_ns) {
      /* Next deadline from now, never in the past: a late loop does not
       * fire a burst of catch-up calls. */
      t->deadline_ns = sat_add(l->now_ns, t->repeat_ns);
      t->seq = l->timer_seq++;
      poller__heap_down(l->heap, l->nheap, 0);
    } else {
      poller__heap_remove(l->heap, &l->nheap, 0);
      t->active = 0;
      l->alive--;
    }
    ran++;
    t->cb(t, t->arg);
  }
  return ran;
}

/* The wait's timeout: until the next timer or the run's end, in whole ms
 * rounded up; -1 for none. */
static int wait_timeout(poller_loop *l, uint64_t end_ns) {
  uint64_t next = end_ns;
  if (l->nheap && l->heap[0]->deadline_ns < next)
    next = l->heap[0]->deadline_ns;
  if (next == UINT64_MAX)
    return -1;
  uint64_t now = mono_ns();
  if (next <= now)
    return 0;
  uint64_t ms = (next - now + 999999u) / 1000000u;
  return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* Starting a handle must not trust its memory, which may be fresh stack
 * garbage: a handle already started on this loop is found by looking for
 * it in the loop's list, never by reading its fields. */
#define IS_LISTED(found, type, head, h)                                        \
  do {                                                                         \
    (found) = 0;                                                               \
    for (type *it_ = (head); it_; it_ = it_->next)                             \
      if (it_ == (h)) {                                                        \
        (found) = 1;                                                           \
        break;                                                                 \
      }                                                                        \
  } while (0)

/* ---- signals ---- */

/* The process-wide table of loops that watch signals.  The handler reads
 * it without locks; a loop leaves it only after the handlers that might
 * be reading it have finished (sig_in_handler). */
static _Atomic(poller_loop *) sig_loops[MAX_SIGNAL_LOOPS];
static atomic_int sig_in_handler;
static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;
static int sig_users[NSIGNALS]; /* watchers per signal, all loops */
static struct sigaction sig_saved[NSIGNALS];

/* The table's lock is held across fork, so a child never inherits it
 * locked by a thread that does not exist in the child (it would deadlock
 * at its first signal watcher). */
static pthread_once_t sig_atfork_once = PTHREAD_ONCE_INIT;
static void sig_prefork(void) { pthread_mutex_lock(&sig_lock); }
static void sig_postfork(void) { pthread_mutex_unlock(&sig_lock); }
static void sig_atfork_install(void) {
  (void)pthread_atfork(sig_prefork, sig_postfork, sig_postfork);
}
static void sig_table_lock(void) {
  (void)pthread_once(&sig_atfork_once, sig_atfork_install);
  pthread_mutex_lock(&sig_lock);
}

static void on_signal(int signum) {
  atomic_fetch_add(&sig_in_handler, 1);
  for (int i = 0; i < MAX_SIGNAL_LOOPS; i++) {
    poller_loop *l = atomic_load(&sig_loops[i]);
    if (!l || signum >= NSIGNALS || atomic_load(&l->sigwatch[signum]) == 0)
      continue;
    atomic_fetch_add(&l->sigcount[signum], 1);
    atomic_store(&l->sig_pending, 1);
    poller_wakeup(l->p); /* async-signal-safe, keeps errno */
  }
  atomic_fetch_sub(&sig_in_handler, 1);
}

static int signals_join(poller_loop *l) {
  int free_slot = -1;
  for (int i = 0; i < MAX_SIGNAL_LOOPS; i++) {
    poller_loop *cur = atomic_load(&sig_loops[i]);
    if (cur == l)
      return 0;
    if (!cur && free_slot < 0)
      free_slot = i;
  }
  if (free_slot < 0)
    return -ENOSPC;
  atomic_store(&sig_loops[free_slot], l);
  return 0;
}

/* Leaves the table; waits out handlers that may still read l. */
static void signals_forget(poller_loop *l) {
  sig_table_lock();
  for (int i = 0; i < MAX_SIGNAL_LOOPS; i++)
    if (atomic_load(&sig_loops[i]) == l)
      atomic_store(&sig_loops[i], NULL);
  pthread_mutex_unlock(&sig_lock);
  while (atomic_load(&sig_in_handler))
    sched_yield();
}

int poller_signal_start(poller_loop *l, poller_signal *s, int signum,
                        poller_signal_cb cb, void *arg) {
  if (!l || !s || !cb)
    return -EFAULT;
  if (signum <= 0 || signum >= NSIGNALS || signum == SIGKILL ||
      signum == SIGSTOP)
    return -EINVAL;
  int listed;
  IS_LISTED(listed, poller_signal, l->signals, s);
  if (listed)
    return -EBUSY;
  sig_table_lock();
  int r = signals_join(l);
  if (r == 0 && sig_users[signum] == 0) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigfillset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(signum, &sa, &sig_saved[signum]) < 0)
      r = -errno;
  }
  if (r == 0)
    sig_users[signum]++;
  pthread_mutex_unlock(&sig_lock);
  if (r < 0)
    return r;
  *s = (poller_signal){l, cb, arg, signum, 1, 0, l->signals};
  l->signals = s;
  l->version++;
  atomic_fetch_add(&l->sigwatch[signum], 1);
  l->alive++;
  return 0;
}

int poller_signal_stop(poller_signal *s) {
  if (!s)
    return -EFAULT;
  if (!s->active)
    return 0;
  poller_loop *l = s->loop;
  for (poller_signal **pp = &l->signals; *pp; pp = &(*pp)->next)
    if (*pp == s) {
      *pp = s->next;
      break;
    }
  s->active = 0;
  l->version++;
  atomic_fetch_sub(&l->sigwatch[s->signum], 1);
  l->alive--;
  sig_table_lock();
  if (--sig_users[s->signum] == 0)
    sigaction(s->signum, &sig_saved[s->signum], NULL);
  pthread_mutex_unlock(&sig_lock);
  return 0;
}

static void dispatch_signals(poller_loop *l) {
  if (!atomic_exchange(&l->sig_pending, 0))
    return;
  for (int signum = 1; signum < NSIGNALS; signum++) {
    unsigned count = atomic_exchange(&l->sigcount[signum], 0);
    if (!count)
      continue;
    unsigned pass = ++l->pass;
  again:
    for (poller_signal *s = l->signals; s; s = s->next) {
      if (l->close_requested)
        return;
      if (s->signum != signum || s->pass == pass)
        continue;
      s->pass = pass;
      unsigned version = l->version;
      s->cb(s, signum, count, s->arg);
      if (l->version != version)
        goto again;
    }
  }
}

/* ---- child processes ---- */

static void child_done(poller_loop *l, poller_child *c, int status) {
  pid_t pid = c->pid;
  poller_child_cb cb = c->cb;
  void *arg = c->arg;
  poller_child_stop(c);
  cb(c, pid, status, arg);
  (void)l;
}

static void on_pidfd(poller_loop *l, int fd, unsigned events, void *arg) {
  poller_child *c = arg;
  int status = 0;
  pid_t r = waitpid(c->pid, &status, WNOHANG);
  if (r == c->pid) {
    child_done(l, c, status);
  } else if (r < 0 && errno == ECHILD) {
    child_done(l, c, -ECHILD); /* reaped elsewhere: status lost */
  } else if (events & POLLER_NVAL) {
    /* The loop dropped the pidfd's registration: watch it again, or end
     * the watch with the error rather than never reporting the exit. */
    int rc = io_start(l, fd, POLLER_IN, on_pidfd, c, 1);
    if (rc < 0)
      child_done(l, c, rc);
  }
}

static void on_sigchld(poller_signal *s, int signum, unsigned count,
                       void *arg) {
  poller_loop *l = arg;
  (void)s;
  (void)signum;
  (void)count;
  for (poller_child *c = l->children; c && !l->close_requested;) {
    poller_child *next = c->next;
    if (c->pidfd < 0) {
      int status = 0;
      pid_t r = waitpid(c->pid, &status, WNOHANG);
      if (r == c->pid || (r < 0 && errno == ECHILD)) {
        /* ECHILD: reaped elsewhere, the status is lost. */
        child_done(l, c, r == c->pid ? status : -ECHILD);
        next = l->children; /* the list changed: start again */
      }
    }
    c = next;
  }
}

static int open_pidfd(pid_t pid) {
#if defined(__linux__) && defined(SYS_pidfd_open)
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);
  return fd < 0 ? -errno : fd;
#else
  (void)pid;
  return -ENOSYS;
#endif
}

int poller_child_start(poller_loop *l, poller_child *c, pid_t pid,
                       poller_child_cb cb, void *arg) {
  if (!l || !c || !cb)
    return -EFAULT;
  if (pid <= 0)
    return -EINVAL;
  int listed;
  IS_LISTED(listed, poller_child, l->children, c);
  if (listed)
    return -EBUSY;
  /* Only a child of this process has a status to report: for any other
   * pid, SIGCHLD never comes and waitpid fails, so the watch could never
   * complete (without pidfd) or only with nothing to say (with it).
   * WNOWAIT leaves a zombie for the watch to reap. */
  siginfo_t si;
  memset(&si, 0, sizeof si);
  if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
    return errno == ECHILD ? -ECHILD : -errno;
  *c = (poller_child){l, cb, arg, pid, -1, 0, NULL};
  int fd = open_pidfd(pid);
  if (fd >= 0) {
    int r = io_start(l, fd, POLLER_IN, on_pidfd, c, 1);
    if (r < 0) {
      close(fd);
      return r;
    }
    c->pidfd = fd;
  } else if (fd == -ESRCH) {
    return -ESRCH;
  } else {
    /* No pidfd: SIGCHLD wakes the loop, waitpid(WNOHANG) per child. */
    if (!l->sigchld_fallback) {
      int r = poller_signal_start(l, &l->sigchld, SIGCHLD, on_sigchld, l);
      if (r < 0)
        return r;
      l->alive--; /* the children keep the loop alive, not this */
    }
    l->sigchld_fallback++;
  }
  c->active = 1;
  c->next = l->children;
  l->children = c;
  l->alive++;
  if (c->pidfd < 0) {
    /* It may have exited before SIGCHLD was watched. */
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid)
      child_done(l, c, status);
  }
  return 0;
}

int poller_child_stop(poller_child *c) {
  if (!c)
    return -EFAULT;
  if (!c->active)
    return 0;
  poller_loop *l = c->loop;
  for (poller_child **pp = &l->children; *pp; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  c->active = 0;
  l->alive--;
  if (c->pidfd >= 0) {
    poller_io_stop(l, c->pidfd);
    close(c->pidfd);
    c->pidfd = -1;
  } else if (--l->sigchld_fallback == 0) {
    l->alive++; /* balance the decrement made at start */
    poller_signal_stop(&l->sigchld);
  }
  return 0;
}

/* ---- file changes ---- */

#ifdef __linux__
#define FS_MASK                                                                \
  (IN_MODIFY | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_MASK_ADD)

/* The file's size and link count, from the watch's own descriptor of it:
 * the path may name another file by now (renamed, replaced), or nothing
 * (unlinked while open). */
static void fs_stat(poller_fswatch *w) {
  struct stat st;
  if (w->pathfd >= 0 ? fstat(w->pathfd, &st) == 0 : stat(w->path, &st) == 0) {
    w->size = (long long)st.st_size;
    w->nlink = (unsigned long)st.st_nlink;
  }
}

/* True while fd is still the loop's inotify instance of generation gen:
 * a callback that stopped the last watch closed it, and the number may
 * already belong to the application (or to a new instance whose watch
 * descriptors mean other files). */
static int inotify_same(const poller_loop *l, int fd, unsigned gen) {
  return !l->close_requested && l->inotify_fd == fd && l->inotify_gen == gen;
}

static void on_inotify(poller_loop *l, int fd, unsigned events, void *arg) {
  (void)arg;
  _Alignas(struct inotify_event) char buf[4096];
  unsigned gen = l->inotify_gen;
  /* The registration was refused (the loop deleted it): watch the
   * instance again (the events already queued in it are read below
   * either way). */
  if (events & POLLER_NVAL)
    (void)io_start(l, fd, POLLER_IN, on_inotify, NULL, 1);
  while (inotify_same(l, fd, gen)) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0)
      return;
    for (char *p = buf; p < buf + n;) {
      struct inotify_event *ev = (struct inotify_event *)(void *)p;
      p += sizeof *ev + ev->len;
      unsigned pass = ++l->pass;
    again:
      for (poller_fswatch *w = l->watches; w; w = w->next) {
        if (!inotify_same(l, fd, gen))
          return;
        if (w->wd != ev->wd || w->pass == pass)
          continue;
        w->pass = pass;
        unsigned bits = 0;
        long long old_size = w->size;
        unsigned long old_nlink = w->nlink;
        if (ev->mask & (IN_MODIFY | IN_ATTRIB))
          fs_stat(w);
        if (ev->mask & IN_MODIFY) {
          bits |= POLLER_FS_WRITE;
          if (w->size > old_size)
            bits |= POLLER_FS_EXTEND;
        }
        if (ev->mask & IN_ATTRIB)
          bits |= w->nlink != old_nlink ? POLLER_FS_LINK : POLLER_FS_ATTRIB;
        if (ev->mask & IN_MOVE_SELF)
          bits |= POLLER_FS_RENAME;
        /* The last link removed: inotify says only IN_ATTRIB while the
         * file is open somewhere (IN_DELETE_SELF waits for the last
         * close), so the link count decides.  DELETE is reported once:
         * the descriptor goes, and the kernel's IN_DELETE_SELF that may
         * follow is not reported again. */
        if (w->pathfd >= 0 && (ev->mask & IN_ATTRIB) && w->nlink == 0) {
          bits |= POLLER_FS_DELETE;
          close(w->pathfd);
          w->pathfd = -1;
        } else if ((ev->mask & IN_DELETE_SELF) && old_nlink != 0) {
          bits |= POLLER_FS_DELETE;
        }
        if (bits & POLLER_FS_DELETE)
          w->nlink = 0;
        if (ev->mask & IN_IGNORED)
          w->wd = -1; /* the kernel dropped the watch (deleted file) */
        bits &= w->events;
        if (!bits)
          continue;
        unsigned version = l->version;
        w->cb(w, bits, w->arg);
        if (l->version != version)
          goto again;
      }
    }
  }
}
#endif

#ifdef __linux__
/* Without watches, the inotify instance goes. */
static void inotify_release(poller_loop *l) {
  if (l->watches || l->inotify_fd < 0)
    return;
  poller_io_stop(l, l->inotify_fd);
  close(l->inotify_fd);
  l->inotify_fd = -1;
}
#endif

int poller_fswatch_start(poller_loop *l, poller_fswatch *w, const char *path,
                         unsigned events, poller_fswatch_cb cb, void *arg) {
  if (!l || !w || !path || !cb)
    return -EFAULT;
  if (!(events & 0x7fu) || (events & ~0x7fu))
    return -EINVAL;
#ifdef __linux__
  int listed;
  IS_LISTED(listed, poller_fswatch, l->watches, w);
  if (listed)
    return -EBUSY;
  if (l->inotify_fd < 0) {
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0)
      return -errno;
    int r = io_start(l, fd, POLLER_IN, on_inotify, NULL, 1);
    if (r < 0) {
      close(fd);
      return r;
    }
    l->inotify_fd = fd;
    l->inotify_gen++;
  }
  char *copy = strdup(path);
  int wd = copy ? inotify_add_watch(l->inotify_fd, path, FS_MASK) : -1;
  int pathfd = wd >= 0 ? open(path, O_PATH | O_CLOEXEC) : -1;
  if (wd < 0 || pathfd < 0) {
    int r = copy ? -errno : -ENOMEM;
    /* The watch descriptor may be shared with another watch of the same
     * file: only an unshared one is removed. */
    int shared = 0;
    for (poller_fswatch *o = l->watches; o; o = o->next)
      shared |= o->wd == wd;
    if (wd >= 0 && !shared)
      inotify_rm_watch(l->inotify_fd, wd);
    free(copy);
    inotify_release(l);
    return r;
  }
  *w = (poller_fswatch){l, cb, arg,  events, wd, pathfd,
                        0, 0,  copy, 1,      0,  l->watches};
  fs_stat(w);
  l->watches = w;
  l->version++;
  l->alive++;
  return 0;
#else
  (void)events;
  (void)cb;
  (void)arg;
  return -ENOSYS;
#endif
}

int poller_fswatch_stop(poller_fswatch *w) {
  if (!w)
    return -EFAULT;
  if (!w->active)
    return 0;
  poller_loop *l = w->loop;
  int shared = 0;
  for (poller_fswatch **pp = &l->watches; *pp;) {
    if (*pp == w) {
      *pp = w->next;
      continue;
    }
    if ((*pp)->wd == w->wd)
      shared = 1;
    pp = &(*pp)->next;
  }
#ifdef __linux__
  if (!shared && w->wd >= 0)
    inotify_rm_watch(l->inotify_fd, w->wd);
  inotify_release(l);
  if (w->pathfd >= 0)
    close(w->pathfd);
  w->pathfd = -1;
#endif
  free(w->path);
  w->path = NULL;
  w->active = 0;
  l->version++;
  l->alive--;
  return 0;
}

/* ---- async ---- */

int poller_async_start(poller_loop *l, poller_async *a, poller_async_cb cb,
                       void *arg) {
  if (!l || !a || !cb)
    return -EFAULT;
  int listed;
  IS_LISTED(listed, poller_async, l->asyncs, a);
  if (listed)
    return -EBUSY;
  a->loop = l;
  a->cb = cb;
  a->arg = arg;
  __atomic_store_n(&a->pending, 0, __ATOMIC_SEQ_CST);
  a->active = 1;
  a->next = l->asyncs;
  l->asyncs = a;
  l->version++;
  l->alive++;
  return 0;
}

int poller_async_send(poller_async *a) {
  if (!a || !a->loop)
    return -EFAULT;
  /* Only the first send since the callback ran wakes the loop; the order
   * (own flag, then the loop's flag, then the wakeup) means a send is
   * either seen by the pass in progress or wakes the next one. */
  if (__atomic_exchange_n(&a->pending, 1, __ATOMIC_SEQ_CST) == 0) {
    atomic_store(&a->loop->async_pending, 1);
    return poller_wakeup(a->loop->p);
  }
  return 0;
}

int poller_async_stop(poller_async *a) {
  if (!a)
    return -EFAULT;
  if (!a->active)
    return 0;
  poller_loop *l = a->loop;
  for (poller_async **pp = &l->asyncs; *pp; pp = &(*pp)->next)
    if (*pp == a) {
      *pp = a->next;
      break;
    }
  a->active = 0;
  l->version++;
  l->alive--;
  return 0;
}

static void dispatch_async(poller_loop *l) {
  if (!atomic_exchange(&l->async_pending, 0))
    return;
  unsigned pass = ++l->pass;
again:
  for (poller_async *a = l->asyncs; a; a = a->next) {
    if (l->close_requested)
      return;
    if (a->pass == pass)
      continue;
    a->pass = pass;
    if (!__atomic_exchange_n(&a->pending, 0, __ATOMIC_SEQ_CST))
      continue;
    unsigned version = l->version;
    a->cb(a, a->arg);
    if (l->version != version)
      goto again;
  }
}

/* ---- running ---- */

static void dispatch_io(poller_loop *l, int n) {
  for (int i = 0; i < n && !l->close_requested; i++) {
    poller_event *ev = &l->events[i];
    int fd = ev->fd;
    if (fd >= l->nio || !l->io[fd].active)
      continue;
    /* A callback earlier in this batch may have stopped this watcher or
     * reused its fd number (swift-nio#341): skip stale reports. */
    if (!poller_current(l->p, ev))
      continue;
    if (ev->events & POLLER_NVAL) {
      /* The kernel refused a change, or the fd was found closed: the
       * core disarmed the registration and keeps it until poller_del.
       * The watcher stops now (its registration deleted, so the owner
       * may start it again), and its callback learns why from
       * POLLER_NVAL, once.  Silence here would leave the owner waiting
       * forever for an fd nobody watches. */
      (void)poller_del(l->p, fd);
      struct io_watcher w = l->io[fd];
      memset(&l->io[fd], 0, sizeof l->io[fd]);
      if (!w.internal)
        l->alive--;
      w.cb(l, fd, ev->events, w.arg);
      continue;
    }
    l->io[fd].cb(l, fd, ev->events, l->io[fd].arg);
  }
}

/* Errors of poller_wait after which the next wait may well succeed: a
 * signal (with POLLER_OPT_REPORT_EINTR), io_uring_enter's EAGAIN and
 * EBUSY (the completion queue is full until it is reaped, or the kernel
 * lacks memory for the request), ENOMEM.  Ending the run on them would
 * tear an application down for a moment's shortage; asyncio retries a
 * select() interrupted by a signal (PEP 475). */
static int wait_error_transient(int err) {
  return err == -EINTR || err == -EAGAIN || err == -EBUSY || err == -ENOMEM;
}

/* After the `fails`-th transient error in a row (other than EINTR, which
 * says nothing about resources): sleep 1, 2, 4 ... 64 ms, never past the
 * next timer or the run's end, so a lasting shortage is not a busy loop. */
static void wait_backoff(poller_loop *l, unsigned fails, uint64_t end_ns) {
  int ms = 1 << (fails < 7 ? fails - 1 : 6);
  int limit = wait_timeout(l, end_ns);
  if (limit >= 0 && limit < ms)
    ms = limit;
  if (ms <= 0)
    return;
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !atomic_load(&l->stop))
    ;
}

/* The body of poller_loop_run, between its guard and its close. */
static int loop_run(poller_loop *l, uint64_t end_ns, int count) {
  int iterations = 0;
  int r = 0;
  unsigned fails = 0; /* transient wait errors in a row */
  while (!atomic_load(&l->stop)) {
    if (count >= 0 && iterations >= count)
      break;
    if (run_timers(l) > 0 &&
        (atomic_load(&l->stop) || (l->alive == 0 && l->ndefer == 0))) {
      /* Timers ran and the loop ends here: that was an iteration too
       * (pike's count and the header's promise), deferred work included. */
      run_deferred(l);
      iterations++;
      break;
    }
    if (atomic_load(&l->stop) || (l->alive == 0 && l->ndefer == 0))
      break;
    int tmo = l->ndefer ? 0 : wait_timeout(l, end_ns);
    int n = poller_wait(l->p, l->events, EVENTS_PER_WAIT, tmo);
    if (n < 0) {
      if (!wait_error_transient(n)) {
        r = n;
        break;
      }
      /* The iteration goes on without reports: signals, async sends,
       * deferred work and timers still run, and the next wait retries. */
      if (n != -EINTR)
        wait_backoff(l, ++fails, end_ns);
      n = 0;
    } else {
      fails = 0;
    }
    l->now_ns = mono_ns();
    dispatch_io(l, n);
    dispatch_signals(l);
    dispatch_async(l);
    if (!l->close_requested)
      run_deferred(l);
    iterations++;
    if (end_ns != UINT64_MAX && mono_ns() >= end_ns) {
      run_timers(l);
      if (!l->close_requested)
        run_deferred(l);
      break;
    }
  }
  atomic_store(&l->stop, 0);
  return r < 0 ? r : iterations;
}

int poller_loop_run(poller_loop *l, int timeout_ms, int count) {
  if (!l)
    return -EFAULT;
  if (timeout_ms < -1)
    return -EINVAL;
  if (l->running)
    return -EBUSY; /* a nested run would reuse the report buffer */
  uint64_t end_ns = timeout_ms < 0
                        ? UINT64_MAX
                        : sat_add(mono_ns(), ms_to_ns((uint64_t)timeout_ms));
  l->running = 1;
  int r = loop_run(l, end_ns, count);
  l->running = 0;
  if (l->close_requested)
    poller_loop_close(l);
  return r;
}

int poller_loop_reinit(poller_loop *l) {
  if (!l)
    return -EFAULT;
  int r = poller_reinit(l->p);
  if (r < 0)
    return r;
  /* The children of the parent are not the child's: their watchers stop
   * without a callback.  Pending signal counts and async sends belong to
   * the parent's past (libuv#3483) and are dropped. */
  while (l->children)
    poller_child_stop(l->children);
  for (int s = 0; s < NSIGNALS; s++)
    atomic_store(&l->sigcount[s], 0);
  atomic_store(&l->sig_pending, 0);
  atomic_store(&l->async_pending, 0);
  for (poller_async *a = l->asyncs; a; a = a->next)
    __atomic_store_n(&a->pending, 0, __ATOMIC_SEQ_CST);
#ifdef __linux__
  /* inotify instances are shared with the parent across fork: a new one,
   * with every watch added again. */
  if (l->inotify_fd >= 0) {
    poller_io_stop(l, l->inotify_fd);
    close(l->inotify_fd);
    l->inotify_fd = -1;
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0)
      return -errno;
    if ((r = io_start(l, fd, POLLER_IN, on_inotify, NULL, 1)) < 0) {
      close(fd);
      return r;
    }
    l->inotify_fd = fd;
    l->inotify_gen++;
    for (poller_fswatch *w = l->watches; w; w = w->next)
      w->wd = inotify_add_watch(fd, w->path, FS_MASK);
  }
#endif
  return 0;
}
