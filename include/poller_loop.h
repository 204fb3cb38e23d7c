/* SPDX-License-Identifier: MIT */
/*
 * poller_loop.h - the event loop over a poller: fd watchers, timers,
 * signals, child processes, file changes and cross-thread wake-ups, on
 * every backend.  Transports (buffered connections) are in
 * poller_transport.h.
 *
 * Conventions: as poller.h (0 or -errno, never errno).  Handles (timers,
 * signals, ...) are structs the caller allocates and the loop links; their
 * fields are private.  A handle must be stopped before its memory is
 * freed; stopping from inside any callback, its own included, is safe.
 * Starting a handle that is already started on the loop returns -EBUSY;
 * stopping one that is not started returns 0.  A timer is prepared once
 * with poller_timer_init; the other handles need no preparation.
 * One loop is run by one thread; poller_loop_stop and poller_async_send
 * may be called from any thread.
 *
 * Windows: fd watchers take sockets (the SOCKET value as an int, as
 * poller.h); timers, deferred work, async wake-ups, poller_loop_stop and
 * the close hooks work as on Unix.  Signal watchers take SIGINT
 * (CTRL_C_EVENT) and SIGBREAK (CTRL_BREAK_EVENT), the console control
 * events; child watchers take a process id (see each below).  File
 * watchers and the other signals check their arguments (-EFAULT,
 * -EINVAL) and then return -ENOSYS.  poller_loop_reinit returns
 * poller_reinit's -ENOSYS (there is no fork).  Transports and listeners:
 * poller_transport.h.
 */
#ifndef POLLER_LOOP_H
#define POLLER_LOOP_H

#include "poller.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct poller_loop poller_loop;

/* ---- the loop ---- */

/* Opens a loop over a new poller of `backend` (POLLER_AUTO allowed).
 * Returns 0; -EINVAL for NULL; or poller_open's error. */
int poller_loop_open(poller_loop **loop, enum poller_backend backend);

/* Closes the loop: runs the work still deferred with poller_loop_defer
 * (usually frees), runs the close hooks (transports and listeners close
 * there), stops every handle without calling its callback, and frees the
 * loop.  NULL is ignored.
 * From inside a callback of this loop (while poller_loop_run runs), the
 * close is deferred: no further callback of the loop runs, the run
 * returns after the current callback with its usual result, and the loop
 * is freed just before poller_loop_run returns; the pointer must not be
 * used after that. */
void poller_loop_close(poller_loop *loop);

/* ---- close hooks: layers above the loop clean up with it ---- */

/* A close hook lets a layer built on the loop (the transports of
 * poller_transport.h, or the application's own) release what it keeps per
 * loop when the loop closes, without the loop knowing that layer.  The
 * callback runs once, from poller_loop_close, after the deferred work and
 * before any handle is stopped, so the layer can still stop its watchers
 * and timers and free its memory (the hook's included: it was removed
 * before the call).  Hooks run in the reverse order of adding (as
 * atexit).  A hook is a caller-allocated handle like the others. */
typedef struct poller_loop_hook poller_loop_hook;
typedef void (*poller_loop_hook_cb)(poller_loop_hook *hook, void *arg);
struct poller_loop_hook { /* private */
  poller_loop *loop;
  poller_loop_hook_cb cb;
  void *arg;
  int active;
  poller_loop_hook *next;
};

/* Adds a close hook.  Returns 0; -EFAULT for a NULL loop, hook or cb;
 * -EBUSY when the hook is already added to this loop. */
int poller_loop_hook_add(poller_loop *loop, poller_loop_hook *hook,
                         poller_loop_hook_cb cb, void *arg);
/* Removes a close hook; its callback will not run.  Returns 0 (also when
 * it was not added) or -EFAULT for NULL. */
int poller_loop_hook_remove(poller_loop_hook *hook);
/* Returns the most recently added hook of the loop whose callback is cb
 * (a layer's way to find its per-loop state), or NULL. */
poller_loop_hook *poller_loop_hook_find(const poller_loop *loop,
                                        poller_loop_hook_cb cb);

/* Returns the loop's poller (for poller_backend and poller_stats_get). */
poller *poller_loop_poller(poller_loop *loop);

/* Runs the loop, as pike's loop(timeout, count) (pike: a Python SMB2/3
 * protocol test framework, see poller_transport.h): returns after `count`
 * iterations (count < 0: no limit), after timeout_ms (-1: none), when
 * poller_loop_stop was called, or when nothing is left to watch.  An
 * iteration is one pass of the order in docs/loop.md (timers, wait,
 * callbacks); a pass in which only due timers ran counts too.
 * Returns the number of iterations run (>= 0); -EFAULT for NULL; -EINVAL
 * for timeout_ms < -1; -EBUSY when called while this loop is already
 * running (from one of its callbacks: a nested run is refused, as asyncio
 * refuses it); or an error of poller_wait that is not transient.
 * Transient errors of poller_wait (-EINTR with POLLER_OPT_REPORT_EINTR,
 * -EAGAIN and -EBUSY from io_uring, -ENOMEM) do not end the run: that
 * iteration dispatches no fd reports (signals, async sends, timers and
 * deferred work still run) and the next one waits again, after a short
 * sleep (1 to 64 ms, never past a timer) when the error repeats. */
int poller_loop_run(poller_loop *loop, int timeout_ms, int count);

/* Makes poller_loop_run return after the current iteration.  Safe from
 * callbacks, other threads and signal handlers.  Returns 0 or -EFAULT. */
int poller_loop_stop(poller_loop *loop);

/* Returns the loop's cached monotonic time in milliseconds, updated once
 * per iteration (poller_loop_update_time refreshes it). */
uint64_t poller_loop_now(const poller_loop *loop);
void poller_loop_update_time(poller_loop *loop);

/* Returns the number of active handles (watchers, timers, signals, ...)
 * that keep poller_loop_run going. */
size_t poller_loop_alive(const poller_loop *loop);

/* Returns 1 when poller_loop_close was called from a callback and the
 * close is pending until poller_loop_run returns, else 0 (also for NULL).
 * A layer that calls several callbacks for one event (the transports'
 * reads, a listener's accepts) checks it between them, so no callback
 * runs once the loop is closing. */
int poller_loop_closing(const poller_loop *loop);

/* Re-initialises the loop in a forked child: a new kernel object, fd
 * watchers kept, timers kept, signal and child watchers and pending
 * wake-ups reset as documented in docs/loop.md.  Returns 0 or -errno. */
int poller_loop_reinit(poller_loop *loop);

/* ---- fd watchers: one callback per fd ---- */

/* Called with the ready bits (POLLER_*) of fd.  A report with POLLER_NVAL
 * (always with POLLER_ERR) says the poller disarmed fd's registration (the
 * kernel refused a change, or the fd was found closed): the loop deletes
 * it and the watcher is already stopped when the callback runs, which is
 * called once for it; poller_io_start may watch the fd again. */
typedef void (*poller_io_cb)(poller_loop *loop, int fd, unsigned events,
                             void *arg);

/* Watches fd for `events` (poller_add's mask, modes allowed).
 * Returns 0 or poller_add's errors. */
int poller_io_start(poller_loop *loop, int fd, unsigned events,
                    poller_io_cb cb, void *arg);
/* Changes the interest of a watched fd.  Returns 0 or poller_mod's errors. */
int poller_io_modify(poller_loop *loop, int fd, unsigned events);
/* Stops watching fd; no callback for it runs afterwards, even for events
 * of the same batch.  Returns 0 or -ENOENT. */
int poller_io_stop(poller_loop *loop, int fd);

/* ---- timers: monotonic clock, a binary heap ---- */

typedef struct poller_timer poller_timer;
typedef void (*poller_timer_cb)(poller_timer *timer, void *arg);

struct poller_timer { /* private */
  poller_loop *loop;
  uint64_t deadline_ns;
  uint64_t repeat_ns;
  uint64_t seq; /* equal deadlines fire in start order */
  size_t heap_index;
  poller_timer_cb cb;
  void *arg;
  int active;
};

/* Prepares a timer handle. */
void poller_timer_init(poller_timer *timer, poller_timer_cb cb, void *arg);
/* Starts (or restarts) the timer: first fire after timeout_ms, then every
 * repeat_ms (0: once).  Never fires early; huge values saturate instead
 * of wrapping.  Returns 0; -EFAULT; -ENOMEM. */
int poller_timer_start(poller_loop *loop, poller_timer *timer,
                       uint64_t timeout_ms, uint64_t repeat_ms);
/* Stops the timer.  Returns 0 (also when it was not active) or -EFAULT. */
int poller_timer_stop(poller_timer *timer);
/* Returns 1 while the timer is started. */
int poller_timer_active(const poller_timer *timer);

/* ---- signals, child processes, file changes, wake-ups ---- */

typedef struct poller_signal poller_signal;
typedef void (*poller_signal_cb)(poller_signal *sig, int signum,
                                 unsigned count, void *arg);
typedef struct poller_child poller_child;
typedef void (*poller_child_cb)(poller_child *child, pid_t pid, int status,
                                void *arg);
typedef struct poller_fswatch poller_fswatch;
typedef void (*poller_fswatch_cb)(poller_fswatch *watch, unsigned events,
                                  void *arg);
typedef struct poller_async poller_async;
typedef void (*poller_async_cb)(poller_async *async, void *arg);

/* File change bits (kqueue's EVFILT_VNODE notes). */
#define POLLER_FS_DELETE 0x01u
#define POLLER_FS_WRITE 0x02u
#define POLLER_FS_EXTEND 0x04u
#define POLLER_FS_ATTRIB 0x08u
#define POLLER_FS_LINK 0x10u
#define POLLER_FS_RENAME 0x20u
#define POLLER_FS_REVOKE 0x40u

/* Deferred work: fn(arg) runs once at the end of the current iteration
 * (or of the next one, when called outside poller_loop_run), after every
 * callback of the batch: the place to free what a callback closed.
 * Returns 0; -EFAULT; -ENOMEM. */
int poller_loop_defer(poller_loop *loop, void (*fn)(void *arg), void *arg);

/* Signals.  Every loop that watches a signal gets it (two loops in two
 * threads included): a process-wide handler counts the signal for each
 * watching loop and wakes it; the callback then runs in the loop with the
 * number of deliveries since the last callback (1..N for a burst of N, as
 * the kernel merges pending signals).  signalfd is not used: it sees a
 * signal only where it is blocked in every thread, and two consumers race
 * for one delivery (eventcore#113).  The previous disposition comes back when
 * the last watcher of the signal stops.  At most 64 loops watch signals at
 * once (-ENOSPC beyond).  poller_signal_start returns 0; -EFAULT;
 * -EINVAL (signum out of range, SIGKILL, SIGSTOP); -EBUSY; -ENOSPC; or
 * sigaction's error.
 * Windows: the signals are the console control events, SIGINT for
 * CTRL_C_EVENT (Ctrl+C) and SIGBREAK for CTRL_BREAK_EVENT (Ctrl+Break).
 * One handler (SetConsoleCtrlHandler) is added to the process's list
 * while a watcher of either exists and removed when the last stops, which
 * gives the process back the handlers it had.  Windows runs that handler
 * on a thread of its own: it only counts the event for each watching loop
 * and wakes the loop, and says the event was handled; the callback runs
 * on the loop's thread with the count, as on Unix (each event counts
 * once).  An event no loop watches goes to the process's other handlers
 * (the default one ends the process).  Other signal numbers: -ENOSYS
 * after the argument checks (a C signal such as SIGTERM is raised only by
 * raise() inside the raising thread, never from outside).  Start errors
 * also include SetConsoleCtrlHandler's, as -errno. */
struct poller_signal { /* private */
  poller_loop *loop;
  poller_signal_cb cb;
  void *arg;
  int signum;
  int active;
  unsigned pass;
  poller_signal *next;
};
int poller_signal_start(poller_loop *loop, poller_signal *sig, int signum,
                        poller_signal_cb cb, void *arg);
int poller_signal_stop(poller_signal *sig);

/* Child processes: the callback gets the pid and its status once, when it
 * exits, and the watcher stops.  status >= 0 is the waitpid status (use
 * WIFEXITED, WEXITSTATUS, WIFSIGNALED...); a negative status is -errno and
 * must be checked before the W* macros: -ECHILD when the child was reaped
 * by someone else (another waitpid, SIGCHLD set to SIG_IGN) and its status
 * is lost, or another error that ended the watch.  pidfd (Linux 5.3+)
 * where the kernel has it, SIGCHLD and waitpid(pid, WNOHANG) elsewhere.
 * poller_child_start returns 0; -EFAULT; -EINVAL for pid <= 0; -EBUSY when
 * already started; -ECHILD when pid is not a child of this process (or was
 * already reaped): asyncio reports such a pid as exit code 255 with a
 * warning, here the call says so at once; -ESRCH; or the error of watching
 * it (-EMFILE...).  A child that already exited is reported from inside
 * poller_child_start when pidfd is not available.
 * Windows: pid is the process id (a DWORD, as CreateProcess's
 * PROCESS_INFORMATION.dwProcessId and GetProcessId give it), of any
 * process the caller may open, not only its children.  The watcher opens
 * it with OpenProcess(SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION)
 * and waits on that handle in the thread pool (RegisterWaitForSingleObject;
 * the pool's callback only marks the watcher and wakes the loop); the
 * callback runs on the loop's thread.  status is the exit code
 * (GetExitCodeProcess: what main returned or ExitProcess was given, or an
 * exception code such as 0xC0000005 for a crash) as an int with all 32
 * bits, so codes from 0x80000000 up are negative: read it as a DWORD.
 * status is never -errno on Windows.  A process id is reused once the
 * process has ended and every handle to it is closed: keep the handle
 * CreateProcess returned open until the watcher is started, so the id
 * still names that process (one that has already ended is then reported
 * at the next run).  poller_child_stop unregisters the wait and returns
 * only when no pool callback for it runs any more (UnregisterWaitEx with
 * INVALID_HANDLE_VALUE), then closes the handle.  poller_child_start
 * returns 0; -EFAULT; -EINVAL for pid <= 0 or past 32 bits; -EBUSY;
 * -ESRCH when no process has that id; -EPERM when it may not be opened;
 * or the error of waiting on it, as -errno. */
struct poller_child { /* private */
  poller_loop *loop;
  poller_child_cb cb;
  void *arg;
  pid_t pid;
  int pidfd;
  int active;
  poller_child *next;
#ifdef _WIN32
  void *process; /* the process's HANDLE, opened by poller_child_start */
  void *wait;    /* RegisterWaitForSingleObject's wait handle */
  int exited;    /* set by the thread pool's callback, atomically */
#endif
};
int poller_child_start(poller_loop *loop, poller_child *child, pid_t pid,
                       poller_child_cb cb, void *arg);
int poller_child_stop(poller_child *child);

/* File changes: the callback gets POLLER_FS_* bits for the watched path.
 * inotify on Linux: WRITE (IN_MODIFY), EXTEND (a write that grew the
 * file), ATTRIB, LINK (the link count changed), RENAME (IN_MOVE_SELF),
 * DELETE (the last link removed, even while the file is still open
 * somewhere; reported once); REVOKE is never reported there.  Each watch
 * holds one O_PATH descriptor of the file (close-on-exec) until the file
 * is deleted or the watch stops, to read the link count of the file
 * itself rather than of whatever the path names now.  Returns 0; -EFAULT; -EINVAL (no bits); -ENOSYS where
 * the platform has no file watching (Windows, and Unix systems other
 * than Linux); or the kernel's error (-ENOENT). */
struct poller_fswatch { /* private */
  poller_loop *loop;
  poller_fswatch_cb cb;
  void *arg;
  unsigned events;
  int wd;
  int pathfd; /* O_PATH descriptor of the watched file (Linux), or -1 */
  long long size;
  unsigned long nlink;
  char *path;
  int active;
  unsigned pass;
  poller_fswatch *next;
};
int poller_fswatch_start(poller_loop *loop, poller_fswatch *watch,
                         const char *path, unsigned events,
                         poller_fswatch_cb cb, void *arg);
int poller_fswatch_stop(poller_fswatch *watch);

/* Wake-ups across threads: poller_async_send (any thread, or a signal
 * handler) makes cb run in the loop; sends before the callback coalesce
 * into one call, and a send is never lost.  An active async keeps
 * poller_loop_run going.  `pending` is a plain int that the library only
 * touches with atomic operations: no _Atomic in a public struct, so the
 * header compiles as C++ and as C99. */
struct poller_async { /* private */
  poller_loop *loop;
  poller_async_cb cb;
  void *arg;
  int pending;
  int active;
  unsigned pass;
  poller_async *next;
};
int poller_async_start(poller_loop *loop, poller_async *async,
                       poller_async_cb cb, void *arg);
int poller_async_send(poller_async *async);
int poller_async_stop(poller_async *async);

#ifdef __cplusplus
}
#endif
#endif /* POLLER_LOOP_H */
