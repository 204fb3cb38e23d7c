/* SPDX-License-Identifier: MIT */
/*
 * loop_win32.c - the loop's operating-system event sources on Windows:
 * console control events as signals (SIGINT for CTRL_C_EVENT, SIGBREAK
 * for CTRL_BREAK_EVENT, through SetConsoleCtrlHandler) and child
 * processes (a process handle waited on by the thread pool,
 * RegisterWaitForSingleObject).  Both are told on a thread the loop does
 * not own: that thread only counts or marks, and wakes the loop with
 * poller_wakeup; the callbacks run on the loop's thread.  File watching is
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

/* The process-wide table of loops that watch signals, as on Unix: the
 * control handler reads it without locks, and a loop leaves it only after
 * the handlers that might be reading it have returned.  Windows runs each
 * control handler call on a new thread of its own, so several may run at
 * once. */
static _Atomic(poller_loop *) sig_loops[MAX_SIGNAL_LOOPS];
static atomic_int sig_in_handler;
static SRWLOCK sig_lock = SRWLOCK_INIT;
static int sig_users; /* signal watchers, all loops; the handler is set
                         while there is one */

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
  BOOL handled = FALSE;
  atomic_fetch_add(&sig_in_handler, 1);
  for (int i = 0; i < MAX_SIGNAL_LOOPS; i++) {
    poller_loop *l = atomic_load(&sig_loops[i]);
    if (!l || atomic_load(&l->sigwatch[signum]) == 0)
      continue;
    atomic_fetch_add(&l->sigcount[signum], 1);
    atomic_store(&l->sig_pending, 1);
    poller_wakeup(l->p);
    handled = TRUE;
  }
  atomic_fetch_sub(&sig_in_handler, 1);
  return handled;
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
  AcquireSRWLockExclusive(&sig_lock);
  for (int i = 0; i < MAX_SIGNAL_LOOPS; i++)
    if (atomic_load(&sig_loops[i]) == l)
      atomic_store(&sig_loops[i], NULL);
  ReleaseSRWLockExclusive(&sig_lock);
  while (atomic_load(&sig_in_handler))
    SwitchToThread();
}

int poller_signal_start(poller_loop *l, poller_signal *s, int signum,
                        poller_signal_cb cb, void *arg) {
  if (!l || !s || !cb)
    return -EFAULT;
  if (signum <= 0 || signum >= NSIGNALS)
    return -EINVAL;
  /* The other C signals are raised only by raise() and the C runtime's
   * faults, inside the thread that caused them; no console event names
   * them. */
  if (signum != SIGINT && signum != SIGBREAK)
    return -ENOSYS;
  int listed;
  IS_LISTED(listed, poller_signal, l->signals, s);
  if (listed)
    return -EBUSY;
  AcquireSRWLockExclusive(&sig_lock);
  int r = signals_join(l);
  if (r == 0 && sig_users == 0 && !SetConsoleCtrlHandler(on_ctrl, TRUE))
    r = -poller__win_errno((int)GetLastError());
  if (r == 0)
    sig_users++;
  ReleaseSRWLockExclusive(&sig_lock);
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
  /* The last watcher removes the handler: the process's handlers are
   * what they were before the first start. */
  AcquireSRWLockExclusive(&sig_lock);
  if (--sig_users == 0)
    SetConsoleCtrlHandler(on_ctrl, FALSE);
  ReleaseSRWLockExclusive(&sig_lock);
  return 0;
}

static void dispatch_console_signals(poller_loop *l) {
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

static void dispatch_children(poller_loop *l) {
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

void poller__loop_dispatch_signals(poller_loop *l) {
  dispatch_console_signals(l);
  dispatch_children(l);
}

void poller__loop_sources_close(poller_loop *l) {
  while (l->signals)
    poller_signal_stop(l->signals);
  while (l->children)
    poller_child_stop(l->children);
  signals_forget(l);
}

/* There is no fork on Windows: nothing to redo. */
int poller__loop_sources_reinit(poller_loop *l) {
  (void)l;
  return 0;
}
