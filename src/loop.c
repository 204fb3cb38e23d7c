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
 *
 * This file is the same on every platform.  Signals, child processes,
 * file watching and the work after fork are the operating system's:
 * loop_posix.c on Unix, loop_win32.c on Windows (loop_internal.h).
 */
#include "heap.h"
#include "loop_internal.h"
#include "platform.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* The platform's monotonic clock, in the loop's unsigned nanoseconds. */
static uint64_t mono_ns(void) { return (uint64_t)poller__platform_now_ns(); }

uint64_t poller__loop_mono_ns(void) { return mono_ns(); }

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
  poller__loop_sources_init(l);
  l->now_ns = mono_ns();
  *lp = l;
  return 0;
}

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
  poller__loop_sources_close(l);
  while (l->asyncs)
    poller_async_stop(l->asyncs);
  while (l->nheap)
    poller_timer_stop(l->heap[0]);
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
  UNLINK_LISTED(poller_loop_hook, h->loop->hooks, h);
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

int poller__loop_io_start(poller_loop *l, int fd, unsigned events,
                          poller_io_cb cb, void *arg, int internal) {
  return io_start(l, fd, events, cb, arg, internal);
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
  UNLINK_LISTED(poller_async, l->asyncs, a);
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
  poller__loop_sleep_ms(l, ms);
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
    poller__loop_dispatch_signals(l);
    poller__loop_dispatch_children(l);
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
  /* Async sends belong to the parent's past (libuv#3483) and are
   * dropped; so are the sources' (loop_posix.c). */
  atomic_store(&l->async_pending, 0);
  for (poller_async *a = l->asyncs; a; a = a->next)
    __atomic_store_n(&a->pending, 0, __ATOMIC_SEQ_CST);
  return poller__loop_sources_reinit(l);
}
