/* SPDX-License-Identifier: MIT */
/*
 * compat_win32.h - lets the conformance sources compile on Windows
 * (harness.h includes it there, and only there).
 *
 * On Windows a test's descriptors are Winsock sockets: read and write on
 * them become recv and send, close becomes closesocket, and poll is done
 * with select.  The POSIX calls that have no Windows
 * counterpart (fcntl, dup3, fork, waitpid, kill, uids, rlimits,
 * signals, interval timers, pipe2, socketpair, links) are declared as
 * stubs that fail, so a test that needs them still compiles; such a test
 * starts with T_POSIX_ONLY("reason"), which skips it on Windows with the
 * reason before any stub can run.
 */
#ifndef POLLER_TESTS_COMPAT_WIN32_H
#define POLLER_TESTS_COMPAT_WIN32_H

#define WIN32_LEAN_AND_MEAN
#include <winsock2.h>
#include <windows.h>

#include <fcntl.h>
#include <io.h>
#include <signal.h>
#include <stdint.h>
#include <sys/time.h>
#include <unistd.h>

#define T_POSIX_ONLY(...) SKIP("not on Windows: " __VA_ARGS__)

static inline int t_sock_read_(int fd, void *buf, size_t n) {
  int r = recv((SOCKET)(uintptr_t)(unsigned)fd, (char *)buf, (int)n, 0);
  if (r < 0)
    errno = WSAGetLastError() == WSAEWOULDBLOCK ? EAGAIN : EIO;
  return r;
}
static inline int t_sock_write_(int fd, const void *buf, size_t n) {
  int r = send((SOCKET)(uintptr_t)(unsigned)fd, (const char *)buf, (int)n, 0);
  if (r < 0)
    errno = WSAGetLastError() == WSAEWOULDBLOCK ? EAGAIN : EIO;
  return r;
}
#define read(fd, buf, n) t_sock_read_((fd), (buf), (n))
#define write(fd, buf, n) t_sock_write_((fd), (buf), (n))

/* Stubs: never reached, T_POSIX_ONLY skips first. */
#define O_CLOEXEC 0
#define O_NONBLOCK 0
#define F_GETFD 1
#define F_GETFL 3
#define F_SETFL 4
#define F_DUPFD_CLOEXEC 1030
static inline int t_posix_stub_(void) {
  errno = ENOSYS;
  return -1;
}
#define fcntl(...) t_posix_stub_()
#define dup3(...) t_posix_stub_()
#define SIGALRM 14
#define ITIMER_REAL 0
struct sigaction {
  void (*sa_handler)(int);
  int sa_flags;
  int sa_mask;
};
struct itimerval {
  struct timeval it_interval, it_value;
};
#define sigemptyset(set) ((void)(set))
#define sigaction(sig, sa, old) ((void)(sa), (void)(old), t_posix_stub_())
#define setitimer(...) t_posix_stub_()

/* Unix signal numbers the loop's tests name (their tests skip). */
#define SIGKILL 9
#define SIGUSR1 10
#define SIGUSR2 12
#define SIGCHLD 17
#define SIGSTOP 19
#define SIGWINCH 28
#define SIGPIPE 13
#define kill(...) t_posix_stub_()

/* Socket spellings: Winsock sockets here are already non-blocking where
 * a test makes them so (t_socketpair, t_tcp_pair), and Winsock takes
 * option values as char pointers. */
#define SOCK_NONBLOCK 0
#define SOCK_CLOEXEC 0
#define MSG_DONTWAIT 0
#define SHUT_WR SD_SEND
#define setsockopt(s, level, name, val, len)                                   \
  setsockopt((s), (level), (name), (const char *)(val), (len))
typedef long rlim_t;
#define setrlimit(...) t_posix_stub_()
#define WIFSIGNALED(st) 0
#define WTERMSIG(st) 0
#define WNOHANG 1

#define fork(...) t_posix_stub_()
#define getppid() 1
#define alarm(...) t_posix_stub_()
#define pipe2(...) t_posix_stub_()
#define socketpair(...) t_posix_stub_()
#define readlink(...) t_posix_stub_()
#define link(...) t_posix_stub_()
#define fchmod(...) t_posix_stub_()
#define waitpid(pid, st, fl) ((void)(st), t_posix_stub_())
#define WIFEXITED(st) 0
#define WEXITSTATUS(st) 1
#define setresuid(...) t_posix_stub_()
#define getuid() 0
#define geteuid() 0
struct rlimit {
  long rlim_cur, rlim_max;
};
#define RLIMIT_NOFILE 7
#define RLIM_INFINITY (-1L)
#define getrlimit(...) t_posix_stub_()
/* poll(2) for sockets, by select: Wine's WSAPoll returns a count with no
 * events (README, "Windows"). */
static inline int t_poll_(struct pollfd *p, unsigned long n, int ms) {
  fd_set r, w, e;
  FD_ZERO(&r);
  FD_ZERO(&w);
  FD_ZERO(&e);
  for (unsigned long i = 0; i < n && i < FD_SETSIZE; i++) {
    SOCKET s = (SOCKET)(uintptr_t)(unsigned)p[i].fd;
    if (p[i].events & POLLIN)
      FD_SET(s, &r);
    if (p[i].events & POLLOUT)
      FD_SET(s, &w);
    FD_SET(s, &e);
  }
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  if (select(0, &r, &w, &e, ms < 0 ? NULL : &tv) == SOCKET_ERROR) {
    errno = EINVAL;
    return -1;
  }
  int k = 0;
  for (unsigned long i = 0; i < n && i < FD_SETSIZE; i++) {
    SOCKET s = (SOCKET)(uintptr_t)(unsigned)p[i].fd;
    p[i].revents = 0;
    if (FD_ISSET(s, &r))
      p[i].revents |= p[i].events & POLLIN;
    if (FD_ISSET(s, &w))
      p[i].revents |= POLLOUT;
    if (FD_ISSET(s, &e))
      p[i].revents |= POLLERR;
    k += p[i].revents != 0;
  }
  return k;
}
#define poll(p, n, ms) t_poll_((p), (n), (ms))

/* close(2) for a socket is closesocket; other descriptors are the C
 * runtime's. */
static inline int t_close_any_(int fd) {
  if (closesocket((SOCKET)(uintptr_t)(unsigned)fd) == 0)
    return 0;
  if (WSAGetLastError() == WSAENOTSOCK)
    return _close(fd);
  errno = EBADF;
  return -1;
}
#define close(fd) t_close_any_(fd)

/* Real ones: the environment is the same on Windows. */
static inline int t_setenv_(const char *name, const char *value) {
  return _putenv_s(name, value) == 0 ? 0 : -1;
}
#define setenv(name, value, overwrite) t_setenv_((name), (value))
#define unsetenv(name) t_setenv_((name), "")

#endif /* POLLER_TESTS_COMPAT_WIN32_H */
