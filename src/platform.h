/* SPDX-License-Identifier: MIT */
/*
 * platform.h - the few operating-system calls the core (poller.c) makes,
 * behind one small interface, so the core has no conditional code: the
 * readiness probe of emulated edge-triggered mode, "is this descriptor
 * open", moving a descriptor to a higher number, closing one, the
 * monotonic clock and whether the environment may be trusted.
 * platform_posix.c implements it on Unix, platform_win32.c on Windows
 * (where a descriptor is a Winsock SOCKET value).  Not installed.
 */
#ifndef POLLER_PLATFORM_H
#define POLLER_PLATFORM_H

#ifdef _WIN32
/* One entry of a readiness probe, laid out as struct pollfd; the bits are
 * those of poller__to_pollbits. */
typedef struct {
  int fd;
  short events;
  short revents;
} poller__pollfd;
#else
#include <poll.h>
typedef struct pollfd poller__pollfd;
#endif

/* Conversions between POLLER_* bits and the probe's bits (poll(2)'s on
 * Unix, defined by backend_poll.c; platform_win32.c on Windows). */
short poller__to_pollbits(unsigned events);
unsigned poller__from_pollbits(short revents);

/* Fills revents of pf[0..n) with the readiness of each fd now, without
 * blocking.  Returns the number of entries with revents set, or -errno. */
int poller__platform_probe(poller__pollfd *pf, int n);
/* Waits at most timeout_ms (>= 0) for fd to become readable.  Returns 1
 * when it is, 0 on timeout, or -errno (-EINTR included). */
int poller__platform_wait_readable(int fd, int timeout_ms);
/* Returns 1 when fd is an open descriptor (Windows: a socket), else 0. */
int poller__platform_fd_open(int fd);
/* Returns a close-on-exec duplicate of fd numbered above fd, or -errno
 * (-ENOSYS where descriptors cannot be moved). */
int poller__platform_dup_above(int fd);
/* Closes a descriptor the core owns (the wakeup channel's). */
void poller__platform_close(int fd);
/* The monotonic clock in nanoseconds. */
long long poller__platform_now_ns(void);
/* Returns 1 when the environment is the caller's own (not a setuid or
 * setgid program's), so POLLER_BACKEND may be read. */
int poller__platform_env_trusted(void);

/* The process's fork generation: a count of the forks (through the C
 * library's fork, which runs pthread_atfork handlers) that led to this
 * process since the first poller was opened.  A poller copies it when it
 * is opened and when poller_reinit succeeds; a different value means the
 * poller was inherited by a forked child, which must not touch the
 * parent's kernel object (epoll's set, the wakeup channel) until
 * poller_reinit.  Reading it is one load, no system call, so poller_wait
 * can check it every time.  Windows has no fork: it is always 0 there. */
#ifdef _WIN32
static inline unsigned poller__platform_fork_gen(void) { return 0; }
static inline void poller__platform_fork_watch(void) {}
#else
#include <stdatomic.h>
extern atomic_uint poller__fork_generation;
static inline unsigned poller__platform_fork_gen(void) {
  return atomic_load_explicit(&poller__fork_generation, memory_order_relaxed);
}
/* Installs the pthread_atfork child handler that counts forks, once per
 * process; called before a poller first reads the generation. */
void poller__platform_fork_watch(void);
#endif

#ifdef _WIN32
/* Windows only (platform_win32.c).  Starts Winsock once per process;
 * returns 0 or -errno. */
int poller__win_startup(void);
/* Maps a Winsock or Win32 error code to an errno value. */
int poller__win_errno(int wsa);
/* Returns 1 when fd is a socket, a stream socket. */
int poller__win_is_socket(int fd);
int poller__win_is_stream(int fd);
/* A connected, non-blocking, non-inherited loopback TCP pair whose
 * values fit an int.  Returns 0 or -errno. */
int poller__win_socketpair(int *a, int *b);
#endif

#endif /* POLLER_PLATFORM_H */
