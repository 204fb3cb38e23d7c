/* SPDX-License-Identifier: MIT */
/*
 * loop_internal.h - what loop.c shares with the files of the loop's
 * operating-system event sources: the loop's structure and a small
 * interface.  loop.c holds what every platform has (fd watchers, timers,
 * deferred work, async wake-ups, running); loop_signals.c holds the part
 * of signal watching every platform shares; loop_posix.c holds the rest of
 * signals, child processes, file watching and the work after fork on
 * Unix; loop_win32.c holds their Windows versions.  Not installed.
 */
#ifndef POLLER_LOOP_INTERNAL_H
#define POLLER_LOOP_INTERNAL_H

#include "poller_loop.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

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
#ifdef _WIN32
  atomic_int child_pending; /* a process watched by the loop has ended */
#endif
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

/* Removes h from the singly linked list that starts at head (an lvalue of
 * type `type *`, linked through `next`); a no-op when h is not in it. */
#define UNLINK_LISTED(type, head, h)                                           \
  do {                                                                         \
    for (type **pp_ = &(head); *pp_; pp_ = &(*pp_)->next)                      \
      if (*pp_ == (h)) {                                                       \
        *pp_ = (h)->next;                                                      \
        break;                                                                 \
      }                                                                        \
  } while (0)

/* ---- provided by loop.c ---- */

/* Starts an fd watcher; an internal one (a pidfd, the inotify instance)
 * does not keep the loop alive by itself.  Returns 0 or -errno. */
int poller__loop_io_start(poller_loop *l, int fd, unsigned events,
                          poller_io_cb cb, void *arg, int internal);
/* The monotonic clock in nanoseconds. */
uint64_t poller__loop_mono_ns(void);

/* ---- provided by loop_signals.c ---- */

/* The operating system's handler's work for signal signum: counts it for
 * every loop that watches it and wakes those loops.  Returns nonzero when
 * one such loop was found.  Async-signal-safe (atomics and poller_wakeup
 * only). */
int poller__loop_signal_deliver(int signum);
/* Takes l out of the process-wide table of loops that watch signals and
 * waits until no handler may still be reading l. */
void poller__loop_signals_forget(poller_loop *l);
/* Runs the callbacks of the signals counted since the last call. */
void poller__loop_dispatch_signals(poller_loop *l);

/* ---- provided by loop_posix.c or loop_win32.c ---- */

/* Returns 0 when signum can be watched here, else -EINVAL (not a signal
 * number, or one that cannot be caught) or -ENOSYS (one the platform
 * never reports). */
int poller__loop_signal_check(int signum);
/* The lock of the process-wide signal table and of the handler's
 * installation. */
void poller__loop_signal_lock(void);
void poller__loop_signal_unlock(void);
/* Lets another thread run, while a loop waits for the handlers. */
void poller__loop_signal_yield(void);
/* With the lock held: a watcher of signum more, the operating system's
 * handler installed by the first.  Returns 0 or -errno (nothing counted
 * then). */
int poller__loop_signal_hold(int signum);
/* With the lock held: a watcher of signum less; the last one puts back
 * what the process had before the first. */
void poller__loop_signal_release(int signum);
/* Runs the callbacks of the child processes that ended (on Windows; on
 * Unix they come through fd and signal watchers and this does nothing). */
void poller__loop_dispatch_children(poller_loop *l);

/* Sets the sources' fields of a new loop (calloc'ed) that are not 0. */
void poller__loop_sources_init(poller_loop *l);
/* Stops every signal, child and file watcher of a loop being closed and
 * releases what the sources hold (the loop's place in the process-wide
 * signal table, the inotify instance). */
void poller__loop_sources_close(poller_loop *l);
/* The sources' part of poller_loop_reinit, after the poller's: returns 0
 * or -errno. */
int poller__loop_sources_reinit(poller_loop *l);
/* Sleeps ms (> 0) milliseconds, or less when the loop is asked to stop. */
void poller__loop_sleep_ms(poller_loop *l, int ms);

#endif /* POLLER_LOOP_INTERNAL_H */
