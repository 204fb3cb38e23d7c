/* SPDX-License-Identifier: MIT */
/*
 * loop_signals.c - the loop's signal watchers, as far as every platform
 * shares them: the process-wide table of the loops that watch signals,
 * what the handler does for each of them (count and wake), the watchers'
 * lists and the dispatch of the counted signals on the loop's thread.
 * What differs is the platform's (loop_internal.h, "provided by
 * loop_posix.c or loop_win32.c"): which numbers can be watched, the
 * operating system's handler (sigaction on Unix, SetConsoleCtrlHandler on
 * Windows), the table's lock and how a thread yields.
 */
#include "loop_internal.h"

#include <errno.h>
#include <stdatomic.h>

/* The process-wide table of loops that watch signals.  The handler reads
 * it without locks; a loop leaves it only after the handlers that might
 * be reading it have finished (sig_in_handler).  On Windows each control
 * handler call runs on a new thread of its own, so several may run at
 * once. */
static _Atomic(poller_loop *) sig_loops[MAX_SIGNAL_LOOPS];
static atomic_int sig_in_handler;

/* Only atomics and poller_wakeup: this runs inside a Unix signal handler,
 * where nothing else is async-signal-safe. */
int poller__loop_signal_deliver(int signum) {
  if (signum <= 0 || signum >= NSIGNALS)
    return 0;
  int counted = 0;
  atomic_fetch_add(&sig_in_handler, 1);
  for (int i = 0; i < MAX_SIGNAL_LOOPS; i++) {
    poller_loop *l = atomic_load(&sig_loops[i]);
    if (!l || atomic_load(&l->sigwatch[signum]) == 0)
      continue;
    atomic_fetch_add(&l->sigcount[signum], 1);
    atomic_store(&l->sig_pending, 1);
    poller_wakeup(l->p); /* async-signal-safe, keeps errno */
    counted = 1;
  }
  atomic_fetch_sub(&sig_in_handler, 1);
  return counted;
}

/* Enters l in the table (once); the caller holds the table's lock. */
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

void poller__loop_signals_forget(poller_loop *l) {
  poller__loop_signal_lock();
  for (int i = 0; i < MAX_SIGNAL_LOOPS; i++)
    if (atomic_load(&sig_loops[i]) == l)
      atomic_store(&sig_loops[i], NULL);
  poller__loop_signal_unlock();
  while (atomic_load(&sig_in_handler))
    poller__loop_signal_yield();
}

int poller_signal_start(poller_loop *l, poller_signal *s, int signum,
                        poller_signal_cb cb, void *arg) {
  if (!l || !s || !cb)
    return -EFAULT;
  int r = poller__loop_signal_check(signum);
  if (r < 0)
    return r;
  int listed;
  IS_LISTED(listed, poller_signal, l->signals, s);
  if (listed)
    return -EBUSY;
  poller__loop_signal_lock();
  r = signals_join(l);
  if (r == 0)
    r = poller__loop_signal_hold(signum);
  poller__loop_signal_unlock();
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
  UNLINK_LISTED(poller_signal, l->signals, s);
  s->active = 0;
  l->version++;
  atomic_fetch_sub(&l->sigwatch[s->signum], 1);
  l->alive--;
  poller__loop_signal_lock();
  poller__loop_signal_release(s->signum);
  poller__loop_signal_unlock();
  return 0;
}

void poller__loop_dispatch_signals(poller_loop *l) {
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
