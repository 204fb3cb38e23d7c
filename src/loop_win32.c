/* SPDX-License-Identifier: MIT */
/*
 * loop_win32.c - the loop's operating-system event sources on Windows.
 * Signal watchers, child process watchers and file watching are not
 * provided yet: their start functions check their arguments like the
 * Unix versions, then return -ENOSYS, and a handle that never started
 * stops as a no-op (include/poller_loop.h, "Windows").  Timers, deferred
 * work, async wake-ups and fd (socket) watchers are loop.c's and work as
 * on Unix.
 */
#include "loop_internal.h"

#include <errno.h>
#include <stddef.h>
#include <windows.h>

void poller__loop_sources_init(poller_loop *l) { l->inotify_fd = -1; }

/* Windows has no signal that cuts a Sleep short; the backoff it serves is
 * at most 64 ms, so a stop waits that long at most. */
void poller__loop_sleep_ms(poller_loop *l, int ms) {
  (void)l;
  Sleep((DWORD)ms);
}

void poller__loop_sources_close(poller_loop *l) { (void)l; }

void poller__loop_dispatch_signals(poller_loop *l) { (void)l; }

/* There is no fork on Windows: nothing to redo. */
int poller__loop_sources_reinit(poller_loop *l) {
  (void)l;
  return 0;
}

int poller_signal_start(poller_loop *l, poller_signal *s, int signum,
                        poller_signal_cb cb, void *arg) {
  (void)arg;
  if (!l || !s || !cb)
    return -EFAULT;
  if (signum <= 0 || signum >= NSIGNALS)
    return -EINVAL;
  return -ENOSYS;
}

int poller_signal_stop(poller_signal *s) { return s ? 0 : -EFAULT; }

int poller_child_start(poller_loop *l, poller_child *c, pid_t pid,
                       poller_child_cb cb, void *arg) {
  (void)arg;
  if (!l || !c || !cb)
    return -EFAULT;
  if (pid <= 0)
    return -EINVAL;
  return -ENOSYS;
}

int poller_child_stop(poller_child *c) { return c ? 0 : -EFAULT; }

int poller_fswatch_start(poller_loop *l, poller_fswatch *w, const char *path,
                         unsigned events, poller_fswatch_cb cb, void *arg) {
  (void)arg;
  if (!l || !w || !path || !cb)
    return -EFAULT;
  if (!(events & 0x7fu) || (events & ~0x7fu))
    return -EINVAL;
  return -ENOSYS;
}

int poller_fswatch_stop(poller_fswatch *w) { return w ? 0 : -EFAULT; }
