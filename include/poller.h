/* SPDX-License-Identifier: MIT */
/*
 * poller.h - the public contract of the poller core.
 *
 * poller tells a program which of its file descriptors are ready, through
 * one API over select(2), poll(2), epoll(7), io_uring(7) and kqueue(2).
 * The backend is chosen at run time (POLLER_AUTO) or by the caller.
 *
 * Conventions that hold for every function below:
 *  - Functions return 0 (or a count) on success and a negative errno value
 *    on failure.  errno is never used as a side channel.
 *  - A failed call changes nothing (unless its comment says otherwise) and
 *    leaves the poller usable.
 *  - The caller owns the event buffer; poller_wait allocates nothing.
 *  - One poller is used by one thread at a time.  poller_wakeup is the
 *    exception: any thread, and any signal handler, may call it.
 *  - epoll, io_uring and kqueue watch open file descriptions, not numbers.
 *    Call poller_del before close(2) (libuv#1468).  poller hides
 *    the events of a registration that was deleted or replaced, but the
 *    kernel may keep a closed-but-dup'ed file in its set until the last
 *    copy is closed.  On epoll a registered number that dup2(2) makes
 *    refer to another file keeps reporting the old file's readiness until
 *    poller_mod or poller_del (a kernel limitation: epoll watches open
 *    files, and dup2 does not tell it).
 *  - On Windows a descriptor is a Winsock socket, passed as its SOCKET
 *    value converted to int: poller_add(p, (int)(intptr_t)sock, ...), and
 *    a report's fd converts back with (SOCKET)(intptr_t)ev.fd.  Windows
 *    keeps handle values within 32 bits (so that 32-bit and 64-bit
 *    processes can share them), so the conversion loses nothing; the
 *    Unix API and ABI are the same as everywhere.  Only sockets can be
 *    watched there: another handle is refused with -ENOTSOCK.
 */
#ifndef POLLER_H
#define POLLER_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of these headers, MAJOR.MINOR.PATCH (Semantic Versioning:
 * see the README).  CMake reads these three lines for the shared library's
 * VERSION (libpoller.so.MAJOR.MINOR.PATCH) and SOVERSION (MAJOR). */
#define POLLER_VERSION_MAJOR 0
#define POLLER_VERSION_MINOR 1
#define POLLER_VERSION_PATCH 0
/* The same as one number, MAJOR * 10000 + MINOR * 100 + PATCH. */
#define POLLER_VERSION                                                         \
  (POLLER_VERSION_MAJOR * 10000 + POLLER_VERSION_MINOR * 100 +                 \
   POLLER_VERSION_PATCH)

/* Returns the version of the library linked at run time as one number,
 * MAJOR * 10000 + MINOR * 100 + PATCH (0.1.0 is 100, as libuv's
 * uv_version()); compare it with POLLER_VERSION, the headers' version.
 * Never fails. */
int poller_version(void);

/* Returns the same version as a static string "MAJOR.MINOR.PATCH".
 * Never fails; the string must not be freed. */
const char *poller_version_string(void);

/* An instance of the poller: a kernel object plus the fd table. */
typedef struct poller poller;

/* The readiness mechanisms.  The values are stable: bit (1u << b) of
 * poller_available() stands for backend b. */
enum poller_backend {
  POLLER_AUTO = 0,   /* the best usable here, see poller_open */
  POLLER_SELECT = 1, /* select(2), with sets that grow past FD_SETSIZE */
  POLLER_POLL = 2,   /* poll(2) */
  POLLER_EPOLL = 3,  /* epoll(7), Linux */
  POLLER_KQUEUE = 4, /* kqueue(2), BSD and macOS (or libkqueue) */
  POLLER_URING = 5,  /* io_uring poll requests, Linux 5.13+ (liburing) */
  POLLER_AFD = 6     /* Windows: AFD poll requests through an I/O
                        completion port (sockets only) */
};

/* Readiness bits, used both in interest masks and in reports.  The values
 * are poll(2)'s traditional ones (the same in <poll.h> on Linux, the BSDs
 * and macOS), POLLER_RDHUP is Linux's POLLRDHUP, and the modes are spelled
 * as epoll spells EPOLLONESHOT and EPOLLET, so masks built from <poll.h>
 * or <sys/epoll.h> constants mean the same thing here. */
#define POLLER_IN 0x001u /* readable, or the peer closed */
/* urgent (out-of-band) data: TCP's, and unix sockets' where the kernel
 * has MSG_OOB for them; reported alone or with other bits, on every
 * backend but kqueue, where PRI is reported only where the kernel has
 * EV_OOBAND (macOS); the BSDs never report it. */
#define POLLER_PRI 0x002u
#define POLLER_OUT 0x004u /* writable */
#define POLLER_ERR 0x008u /* an error is pending; always reported */
/* Hang-up; always reported (not on select).  A hang-up is also readable:
 * with POLLER_IN in the interest, a report with POLLER_HUP or POLLER_RDHUP
 * always has POLLER_IN too, on every backend (a pipe whose writer closed
 * included), so a caller that tests IN sees EOF. */
#define POLLER_HUP 0x010u
/* Report only: the kernel refused a deferred change of the registration,
 * or the fd was found closed (select, poll).  The registration stays,
 * disarmed, until poller_del.  It always comes with POLLER_ERR.  See
 * poller_wait. */
#define POLLER_NVAL 0x020u
#define POLLER_RDHUP 0x2000u /* the peer shut down its writing half */
/* Modes, interest only. */
#define POLLER_ONESHOT (1u << 30) /* disarm after one report; mod re-arms */
#define POLLER_ET (1u << 31)      /* edge-triggered: report transitions */

/* Every bit valid in an interest mask. */
#define POLLER_INTEREST_MASK                                                   \
  (POLLER_IN | POLLER_OUT | POLLER_PRI | POLLER_ERR | POLLER_HUP |             \
   POLLER_RDHUP | POLLER_ET | POLLER_ONESHOT)

/* A registration (key) as returned by poller_get and poller_next, and a
 * report as filled in by poller_wait.
 *  fd:     the file descriptor.
 *  gen:    the generation of the registration, new for every poller_add
 *          (and every push onto an empty stack), never 0.  poller_current
 *          compares it to tell a report of a deleted or replaced
 *          registration.
 *  events: the interest mask (key) or the ready bits (report).
 *  data:   the caller's pointer given at add, mod or push.
 * The order of the fields changed in 0.x (gen moved next to fd); use the
 * field names, not positional initializers. */
typedef struct poller_event {
  int fd;
  unsigned gen; /* next to fd: the epoll backend copies both at once */
  unsigned events;
  void *data;
} poller_event;

/* Counters kept per poller, for tests and benchmarks (poller_stats). */
typedef struct poller_stats {
  unsigned long long waits;    /* calls of poller_wait that waited */
  unsigned long long syscalls; /* system calls made by the backend */
  unsigned long long events;   /* events reported to the caller */
  unsigned long long changes;  /* interest changes sent to the kernel */
  unsigned long long eintr;    /* EINTR retries inside poller_wait */
  unsigned long long stale;    /* kernel events dropped as stale */
} poller_stats;

/* Options for poller_option. */
enum poller_option {
  /* 1: poller_wait returns -EINTR when a signal interrupts it.
   * 0 (the default): it retries against its deadline (PEP 475). */
  POLLER_OPT_REPORT_EINTR = 1
};

/* Opens a poller on `backend` and stores it in *p.
 * POLLER_AUTO picks the first usable of epoll, kqueue, poll, select
 * (io_uring only when asked for: see the README for the measurement),
 * unless the environment variable POLLER_BACKEND names one (select, poll,
 * epoll, uring, kqueue); the variable is ignored in setuid programs.
 * Returns 0; -EINVAL for a NULL p or an unknown backend; -ENOSYS when the
 * backend is not built in; the kernel's error (-EPERM, -ENOSYS, -EMFILE,
 * -ENOMEM...) when it is built in but refused here.  *p is NULL on failure. */
int poller_open(poller **p, enum poller_backend backend);

/* Closes the poller: releases the kernel object, every registration and
 * all memory.  The caller's fds stay open.  Every file that the kernel
 * object still held is released when this returns: on io_uring the poll
 * requests, which hold a reference to their files (also those of fds
 * closed without poller_del), are cancelled and completed first.  In a
 * forked child that did not call poller_reinit, the parent's kernel object
 * is left alone.  NULL is ignored. */
void poller_close(poller *p);

/* Returns the backend in use (never POLLER_AUTO), or POLLER_AUTO for NULL. */
enum poller_backend poller_backend(const poller *p);

/* Returns the backend's name ("auto", "select", "poll", "epoll", "kqueue",
 * "uring"), or "unknown". */
const char *poller_backend_name(enum poller_backend b);

/* Parses a backend name as poller_backend_name spells it.
 * Returns the backend, or -EINVAL. */
int poller_backend_from_name(const char *name);

/* Returns bit (1u << b) for every backend b built in and usable here. */
unsigned poller_available(void);

/* Returns the modes the backend provides natively: POLLER_ET and/or
 * POLLER_ONESHOT.  The others are emulated (see the README). 0 for NULL. */
unsigned poller_caps(const poller *p);

/* Registers fd with interest `events` and the caller's `data`.
 * Returns 0; -EFAULT for a NULL p; -EBADF for a negative or closed fd;
 * -EINVAL for an empty interest (no readiness bit) or an unknown bit;
 * -EEXIST when fd is already registered (that registration is unchanged);
 * -ENOMEM; or the kernel's error.  A file the kernel cannot watch (a
 * regular file under epoll) is accepted and reported always ready, as
 * select and poll report it.  On Windows: -ENOTSOCK for a handle that is
 * not a socket, -EBADF for a value that is no handle (a closed socket). */
int poller_add(poller *p, int fd, unsigned events, void *data);

/* Changes the interest and data of fd's registration (the top of its
 * stack) and re-arms a ONESHOT registration.  A change of data alone costs
 * no system call; interest changes are applied at the next poller_wait or
 * poller_flush, and a change undone before then costs nothing.
 * Returns 0; -EFAULT; -EINVAL for a bad mask; -ENOENT for an unknown fd. */
int poller_mod(poller *p, int fd, unsigned events, void *data);

/* Removes fd's registration, with its whole stack.  The kernel no longer
 * watches the fd when this returns, so closing it right after is safe, and
 * no event of this registration is reported afterwards.  Succeeds for an
 * fd closed since it was added, and for a registration disarmed by a
 * refusal (POLLER_NVAL, see poller_wait).  On io_uring a poll request holds a
 * reference to its file: an fd closed with close(2) before poller_del
 * keeps its file open (a socket's peer sees no EOF, a listener still
 * accepts) until poller_del or poller_close, which release it before they
 * return.  In a forked child before poller_reinit it forgets the
 * registration without asking the kernel, whose object is the parent's
 * (see poller_reinit).  Returns 0; -EFAULT; -ENOENT for an unknown fd. */
int poller_del(poller *p, int fd);

/* Stores fd's registration (interest, data, generation) in *key.
 * Returns 0; -EFAULT for NULL; -ENOENT for an unknown fd. */
int poller_get(const poller *p, int fd, poller_event *key);

/* Stores in *key the registration with the lowest fd above after_fd (pass
 * -1 to start).  Returns 0; -ENOENT when there is none; -EFAULT. */
int poller_next(const poller *p, int after_fd, poller_event *key);

/* Returns the number of registered fds (a stack counts once); 0 for NULL. */
size_t poller_count(const poller *p);

/* Pushes (events, data) onto fd's registration stack: registers fd when it
 * has no stack (as poller_add), otherwise saves the current top and makes
 * the new entry the one in force.  Errors as poller_add, without -EEXIST. */
int poller_push(poller *p, int fd, unsigned events, void *data);

/* Pops fd's registration stack: the entry below comes back in force; the
 * last entry unregisters fd (as poller_del).
 * Returns 0; -EFAULT; -ENOENT for an unknown fd. */
int poller_pop(poller *p, int fd);

/* Returns the depth of fd's registration stack, 0 when not registered. */
int poller_depth(const poller *p, int fd);

/* Applies the interest changes queued by add, mod, push and pop now.
 * A registration whose change the kernel refuses is disarmed, not
 * removed: it is reported once as POLLER_ERR|POLLER_NVAL at the next
 * poller_wait and stays until poller_del (see poller_wait).
 * Returns 0, or the first such error (-errno); -EFAULT for NULL; -ECHILD
 * in a forked child before poller_reinit (nothing is applied: see
 * poller_reinit). */
int poller_flush(poller *p);

/* Waits for readiness and stores at most max reports in out[], one per fd
 * (read and write merged).  timeout_ms: -1 blocks until an event or a
 * wakeup; 0 does not block; a positive value waits at least that long.
 * A signal does not end the wait early (it resumes with the time left)
 * unless POLLER_OPT_REPORT_EINTR is set; a handler that wants the wait to
 * end calls poller_wakeup.  When more fds are ready than max, the next
 * waits report the others.
 *
 * The registration lifecycle, the same on every backend: a registration
 * exists from a successful poller_add or poller_push until the caller's
 * poller_del or last poller_pop (or poller_close); poller never removes
 * one by itself, so poller_count, poller_get, poller_next and
 * poller_depth depend only on the caller's calls.  When the kernel
 * refuses a deferred change (at a wait or a poller_flush), or select or
 * poll find the fd closed, the registration is disarmed (nothing stays
 * armed in the kernel) and reported once as POLLER_ERR|POLLER_NVAL with
 * its data; later waits report nothing for it and do not spin.  It stays
 * until poller_del, which then returns 0.  poller_mod, poller_push and
 * poller_pop re-arm it: the kernel is asked again (another NVAL report if
 * the fd is still bad), and an NVAL report not yet delivered is dropped.
 * Returns the number of reports (0 on timeout or wakeup); -EFAULT for a
 * NULL p or out; -EINVAL for max <= 0 or a timeout below -1; -ECHILD in a
 * forked child before poller_reinit, on every backend, without waiting
 * (the kernel object is the parent's: see poller_reinit); -EINTR (only
 * with POLLER_OPT_REPORT_EINTR); or the kernel's error. */
int poller_wait(poller *p, poller_event *out, int max, int timeout_ms);

/* Returns 1 when *ev (a report of the last poller_wait) belongs to the
 * registration now in force for its fd and that registration still wants
 * some of the reported bits; 0 when it was deleted, replaced (the fd number
 * reused) or disarmed since.  An NVAL report is current while its
 * registration is in force: until its fd is deleted (poller_del, the last
 * poller_pop) or registered again.  Event loops call
 * it before each dispatch so a handler that closes another fd of the same
 * batch is safe. */
int poller_current(const poller *p, const poller_event *ev);

/* Makes a poller_wait in progress, or the next one, return promptly.
 * Async-signal-safe and thread-safe; wakeups coalesce.  In a forked child
 * before poller_reinit it does nothing: the channel is the parent's, and
 * poller_reinit drops pending wakeups.
 * Returns 0; -EFAULT for NULL. */
int poller_wakeup(poller *p);

/* Returns a descriptor that is readable while the poller has events to
 * report (epoll, kqueue, io_uring), so a poller nests in another loop;
 * -1 where there is none (select, poll, every Windows backend: a
 * completion port or a socket set is not a waitable socket), for NULL, or
 * when it cannot be
 * made (epoll makes it at the first call; out of descriptors).  Its number
 * stays the same for the poller's life (and across poller_reinit; in a
 * forked child it is the parent's number, never readable until
 * poller_reinit, except on kqueue: see poller_reinit).  On io_uring it is
 * the ring's descriptor, readable while completions wait to be read: a
 * completion for a file that is no longer ready when poller_wait checks
 * it (another thread or process read the data) makes it readable once,
 * and the wait that reports nothing for it clears it.
 * Interest changes reach the kernel at the next poller_wait or
 * poller_flush: a nesting loop calls poller_flush before it sleeps on this
 * descriptor. */
int poller_fd(const poller *p);

/* Rebuilds the kernel object in a forked child and registers every fd
 * again; the parent's poller is unaffected.  Pending wakeups are dropped.
 *
 * The fork contract, the same on every backend: a child forked (through
 * fork(2) of the C library, whose pthread_atfork handlers poller uses to
 * notice the fork without a system call) from a process with a poller
 * shares the parent's kernel object (epoll's set, the wakeup channel).
 * Until poller_reinit succeeds, the child's copy never touches it:
 * poller_wait and poller_flush return -ECHILD (also on select and poll,
 * which share nothing, so a program behaves the same everywhere);
 * poller_add, poller_mod, poller_push and poller_pop only queue their
 * change, which poller_reinit applies; poller_del (and the last
 * poller_pop) forgets the registration without asking the kernel;
 * poller_wakeup does nothing (it returns 0); poller_close closes only the
 * child's own descriptors; poller_fd returns the same number as in the
 * parent, and after poller_reinit too, but until then it stands for an
 * empty epoll instance, never readable, so a loop nesting it never sees
 * the parent's readiness (epoll: the child's copy of the outer instance
 * is emptied at fork, and one first made in the child starts empty; io_uring:
 * the child's copy of the ring is dropped at fork, so that the ring and
 * the files it watches stay the parent's alone, and the placeholder keeps
 * its number); poller_reinit puts the child's own object on that number.
 * kqueue is the exception: a kqueue is not inherited by fork, so in the
 * child poller_fd is the parent's number, which is not the poller's,
 * until poller_reinit gives a new one.  The parent's
 * registrations, reports and wakeups are never changed by the child.
 * poller_reinit is also allowed in the owning process, where it rebuilds
 * the kernel object in place.
 * Returns 0; -EFAULT; -ENOSYS on Windows, which has no fork (the poller
 * is unchanged); or the kernel's error (the poller is then unusable
 * except for poller_close). */
int poller_reinit(poller *p);

/* Sets an option (enum poller_option).  Returns 0; -EFAULT; -EINVAL. */
int poller_option(poller *p, int option, int value);

/* Copies the poller's counters into *st.  Returns 0; -EFAULT for NULL. */
int poller_stats_get(const poller *p, poller_stats *st);

/* Returns the bytes poller keeps per registered fd (the fd table entry). */
size_t poller_fd_state_size(void);

/* Returns a static description of a negative errno returned by poller (a
 * positive one is read as its negative; 0 is "success").  On Windows,
 * where Winsock's errors come back as their errno (WSAECONNRESET as
 * -ECONNRESET, and so on), it also names the POSIX codes that the C
 * runtime's strerror calls "Unknown error". */
const char *poller_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif /* POLLER_H */
