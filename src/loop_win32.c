/* SPDX-License-Identifier: MIT */
/*
 * loop_win32.c - the loop's operating-system event sources on Windows:
 * console control events as signals (SIGINT for CTRL_C_EVENT, SIGBREAK
 * for CTRL_BREAK_EVENT, through SetConsoleCtrlHandler) and child
 * processes (a process handle waited on by the thread pool,
 * RegisterWaitForSingleObject).  Both are told on a thread the loop does
 * not own: that thread only counts or marks, and wakes the loop with
 * poller_wakeup; the callbacks run on the loop's thread (the signals'
 * table, counting and dispatch are loop_signals.c's).  File watching is
 * not provided: poller_fswatch_start checks its arguments and returns
 * -ENOSYS (include/poller_loop.h, "Windows").  Timers, deferred work,
 * async wake-ups and fd (socket) watchers are loop.c's and work as on
 * Unix.
 */
#define WIN32_LEAN_AND_MEAN
#include "loop_internal.h"
#include "platform.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <windows.h>

void poller__loop_sources_init(poller_loop *l) { l->inotify_fd = -1; }

/* Windows has no signal that cuts a Sleep short; the backoff it serves is
 * at most 64 ms, so a stop waits that long at most. */
void poller__loop_sleep_ms(poller_loop *l, int ms) {
  (void)l;
  Sleep((DWORD)ms);
}

/* ---- console control events as signals ---- */

/* The table of watching loops and the watchers themselves are
 * loop_signals.c's; here are the numbers that can be watched, the console
 * control handler and the table's lock. */
static SRWLOCK sig_lock = SRWLOCK_INIT;
static int sig_users; /* signal watchers, all loops; the handler is set
                         while there is one */

void poller__loop_signal_lock(void) { AcquireSRWLockExclusive(&sig_lock); }
void poller__loop_signal_unlock(void) { ReleaseSRWLockExclusive(&sig_lock); }
void poller__loop_signal_yield(void) { SwitchToThread(); }

int poller__loop_signal_check(int signum) {
  if (signum <= 0 || signum >= NSIGNALS)
    return -EINVAL;
  /* The other C signals are raised only by raise() and the C runtime's
   * faults, inside the thread that caused them; no console event names
   * them. */
  if (signum != SIGINT && signum != SIGBREAK)
    return -ENOSYS;
  return 0;
}

/* The console control events that have a C signal number. */
static int ctrl_signum(DWORD type) {
  switch (type) {
  case CTRL_C_EVENT:
    return SIGINT;
  case CTRL_BREAK_EVENT:
    return SIGBREAK;
  default:
    return 0;
  }
}

/* Counts the event for each loop that watches its signal and wakes those
 * loops.  Returns TRUE (handled) when one did; otherwise the next handler
 * of the process runs, the default one ending the process, as if poller
 * were not there. */
static BOOL WINAPI on_ctrl(DWORD type) {
  int signum = ctrl_signum(type);
  if (!signum)
    return FALSE;
  return poller__loop_signal_deliver(signum) ? TRUE : FALSE;
}

int poller__loop_signal_hold(int signum) {
  (void)signum;
  if (sig_users == 0 && !SetConsoleCtrlHandler(on_ctrl, TRUE))
    return -poller__win_errno((int)GetLastError());
  sig_users++;
  return 0;
}

/* The last watcher removes the handler: the process's handlers are what
 * they were before the first start. */
void poller__loop_signal_release(int signum) {
  (void)signum;
  if (--sig_users == 0)
    SetConsoleCtrlHandler(on_ctrl, FALSE);
}

/* ---- child processes ---- */

/* Runs on a thread of the pool once the process has ended: it only marks
 * the watcher and wakes its loop.  poller_child_stop waits for it to
 * return (UnregisterWaitEx with INVALID_HANDLE_VALUE), so c and its loop
 * are alive while it runs. */
static VOID CALLBACK on_process_end(PVOID arg, BOOLEAN timed_out) {
  poller_child *c = arg;
  poller_loop *l = c->loop;
  (void)timed_out; /* INFINITE: never */
  __atomic_store_n(&c->exited, 1, __ATOMIC_SEQ_CST);
  atomic_store(&l->child_pending, 1);
  poller_wakeup(l->p);
}

void poller__loop_dispatch_children(poller_loop *l) {
  if (!atomic_exchange(&l->child_pending, 0))
    return;
again:
  for (poller_child *c = l->children; c; c = c->next) {
    if (l->close_requested)
      return;
    if (!__atomic_load_n(&c->exited, __ATOMIC_SEQ_CST))
      continue;
    DWORD code = 0;
    /* Reading the code of an ended process does not fail; should it,
     * the status is all ones, as TerminateProcess(h, -1) leaves. */
    int status = GetExitCodeProcess(c->process, &code) ? (int)code : -1;
    pid_t pid = c->pid;
    poller_child_cb cb = c->cb;
    void *arg = c->arg;
    poller_child_stop(c);
    cb(c, pid, status, arg);
    goto again; /* the callback may have changed the list */
  }
}

int poller_child_start(poller_loop *l, poller_child *c, pid_t pid,
                       poller_child_cb cb, void *arg) {
  if (!l || !c || !cb)
    return -EFAULT;
  /* A process id is a DWORD. */
  if (pid <= 0 || (unsigned long long)pid > 0xffffffffull)
    return -EINVAL;
  int listed;
  IS_LISTED(listed, poller_child, l->children, c);
  if (listed)
    return -EBUSY;
  HANDLE h = OpenProcess(SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION, FALSE,
                         (DWORD)pid);
  if (!h) {
    DWORD err = GetLastError();
    if (err == ERROR_INVALID_PARAMETER)
      return -ESRCH; /* no process has that id */
    if (err == ERROR_ACCESS_DENIED)
      return -EPERM;
    return -poller__win_errno((int)err);
  }
  *c = (poller_child){0};
  c->loop = l;
  c->cb = cb;
  c->arg = arg;
  c->pid = pid;
  c->pidfd = -1;
  c->process = h;
  HANDLE wait = NULL;
  if (!RegisterWaitForSingleObject(&wait, h, on_process_end, c, INFINITE,
                                   WT_EXECUTEONLYONCE)) {
    int r = -poller__win_errno((int)GetLastError());
    CloseHandle(h);
    c->process = NULL;
    return r;
  }
  c->wait = wait;
  c->active = 1;
  c->next = l->children;
  l->children = c;
  l->alive++;
  return 0;
}

int poller_child_stop(poller_child *c) {
  if (!c)
    return -EFAULT;
  if (!c->active)
    return 0;
  poller_loop *l = c->loop;
  UNLINK_LISTED(poller_child, l->children, c);
  c->active = 0;
  l->alive--;
  /* INVALID_HANDLE_VALUE: returns only once a callback already running
   * has returned, so none runs after this and c may be freed. */
  UnregisterWaitEx(c->wait, INVALID_HANDLE_VALUE);
  CloseHandle(c->process);
  c->wait = NULL;
  c->process = NULL;
  return 0;
}

/* ---- file changes: not provided ---- */

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

/* ---- the loop's hooks ---- */

void poller__loop_sources_close(poller_loop *l) {
  while (l->signals)
    poller_signal_stop(l->signals);
  while (l->children)
    poller_child_stop(l->children);
  poller__loop_signals_forget(l);
}

/* There is no fork on Windows: nothing to redo. */
int poller__loop_sources_reinit(poller_loop *l) {
  (void)l;
  return 0;
}
