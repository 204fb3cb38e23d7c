/* SPDX-License-Identifier: MIT */
/*
 * transport_win32.h - the socket calls of transport.c on Windows.
 * transport.c includes it instead of the Unix socket headers, and only
 * there.  Each Unix call it makes is given a Winsock version under the
 * same name that returns -1 with errno set from WSAGetLastError, so the
 * transports' logic stays one text: send and recv for sockets (there is
 * no read or write on a SOCKET), non-blocking mode by ioctlsocket, no
 * SIGPIPE (Winsock never raises it), sockets only (adopting any other
 * handle fails with -ENOTSOCK), no Unix domain sockets (-EAFNOSUPPORT).
 * A socket is its SOCKET value as an int (poller.h).  Not installed.
 */
#ifndef POLLER_TRANSPORT_WIN32_H
#define POLLER_TRANSPORT_WIN32_H

#include "platform.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>
#include <winsock2.h>
#include <ws2tcpip.h>

#include <afunix.h>

#define TR_SOCK(fd) ((SOCKET)(uintptr_t)(unsigned)(fd))

/* Winsock's error of the last call as errno: the platform layer's table,
 * except WSAEINPROGRESS, which Winsock returns while another blocking
 * call is in progress on the socket: for a connect that is "already in
 * progress", not the start of one. */
static inline int tr_win_errno(int wsa) {
  return wsa == WSAEINPROGRESS ? EALREADY : poller__win_errno(wsa);
}
static inline int tr_win_fail(void) {
  errno = tr_win_errno(WSAGetLastError());
  return -1;
}

/* Unix names Winsock lacks or spells differently. */
#define SHUT_WR SD_SEND
#define MSG_NOSIGNAL 0
#define SOCK_NONBLOCK 0x800
#define SOCK_CLOEXEC 0x80000
#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif
#define O_NONBLOCK 0x800
#define FD_CLOEXEC 1
#define F_GETFD 1
#define F_SETFD 2
#define F_GETFL 3
#define F_SETFL 4
#ifndef O_ACCMODE
#define O_ACCMODE 3
#endif
typedef unsigned short sa_family_t;

struct iovec {
  void *iov_base;
  size_t iov_len;
};
struct msghdr {
  struct iovec *msg_iov;
  size_t msg_iovlen;
};

/* A new non-blocking, non-inherited stream socket, or -1.  Unix domain
 * sockets are refused (-EAFNOSUPPORT): Wine does not provide them. */
static inline int tr_win_socket(int fam, int type, int proto) {
  if (poller__win_startup() < 0) {
    errno = ENOSYS;
    return -1;
  }
  if (fam == AF_UNIX) {
    errno = EAFNOSUPPORT;
    return -1;
  }
  SOCKET s =
      WSASocketW(fam, type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC), proto, NULL, 0,
                 WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
  if (s == INVALID_SOCKET)
    return tr_win_fail();
  u_long one = 1;
  if ((uintptr_t)s > INT_MAX || ioctlsocket(s, FIONBIO, &one) != 0) {
    int e = (uintptr_t)s > INT_MAX ? EMFILE : tr_win_errno(WSAGetLastError());
    closesocket(s);
    errno = e;
    return -1;
  }
  return (int)(uintptr_t)s;
}
#define socket(fam, type, proto) tr_win_socket((fam), (type), (proto))

static inline int tr_win_accept4(int fd, void *sa, void *len, int flags) {
  (void)sa, (void)len, (void)flags;
  SOCKET s = accept(TR_SOCK(fd), NULL, NULL);
  if (s == INVALID_SOCKET)
    return tr_win_fail();
  u_long one = 1;
  if ((uintptr_t)s > INT_MAX || ioctlsocket(s, FIONBIO, &one) != 0) {
    int e = (uintptr_t)s > INT_MAX ? EMFILE : tr_win_errno(WSAGetLastError());
    closesocket(s);
    errno = e;
    return -1;
  }
  (void)SetHandleInformation((HANDLE)s, HANDLE_FLAG_INHERIT, 0);
  return (int)(uintptr_t)s;
}
#define accept4(fd, sa, len, flags) tr_win_accept4((fd), (sa), (len), (flags))

/* Only what transport.c asks of fcntl: the status flags (a socket is
 * reported open for reading and writing; setting O_NONBLOCK is
 * ioctlsocket's FIONBIO) and "is it open" (F_GETFD). */
static inline int tr_win_fcntl(int fd, int cmd, ...) {
  int arg = 0;
  if (cmd == F_SETFL || cmd == F_SETFD) {
    va_list ap;
    va_start(ap, cmd);
    arg = va_arg(ap, int);
    va_end(ap);
  }
  if (!poller__win_is_socket(fd)) {
    errno = poller__platform_fd_open(fd) ? ENOTSOCK : EBADF;
    return -1;
  }
  if (cmd == F_SETFL && (arg & O_NONBLOCK)) {
    u_long one = 1;
    if (ioctlsocket(TR_SOCK(fd), FIONBIO, &one) != 0)
      return tr_win_fail();
  }
  return cmd == F_GETFL ? 2 /* O_RDWR, blocking as far as one knows */ : 0;
}
#define fcntl tr_win_fcntl

static inline int tr_win_connect(int fd, const struct sockaddr *sa, int len) {
  if (connect(TR_SOCK(fd), sa, len) == 0)
    return 0;
  int wsa = WSAGetLastError();
  errno = wsa == WSAEWOULDBLOCK ? EINPROGRESS : tr_win_errno(wsa);
  return -1;
}
#define connect(fd, sa, len) tr_win_connect((fd), (sa), (int)(len))

static inline int tr_win_getsockopt(int fd, int level, int name, void *val,
                                    socklen_t *len) {
  int l = (int)*len;
  if (getsockopt(TR_SOCK(fd), level, name, (char *)val, &l) != 0)
    return tr_win_fail();
  *len = (socklen_t)l;
  /* SO_ERROR holds a Winsock code; the transports expect an errno. */
  if (level == SOL_SOCKET && name == SO_ERROR && *(int *)val != 0)
    *(int *)val = tr_win_errno(*(int *)val);
  return 0;
}
#define getsockopt(fd, level, name, val, len)                                  \
  tr_win_getsockopt((fd), (level), (name), (val), (len))

static inline int tr_win_setsockopt(int fd, int level, int name,
                                    const void *val, int len) {
  /* SO_REUSEADDR on Windows lets another socket take a bound port; the
   * Unix meaning (rebind while old connections linger) is Windows's
   * default, so the option is not set. */
  if (level == SOL_SOCKET && name == SO_REUSEADDR)
    return 0;
  return setsockopt(TR_SOCK(fd), level, name, (const char *)val, len) == 0
             ? 0
             : tr_win_fail();
}
#define setsockopt(fd, level, name, val, len)                                  \
  tr_win_setsockopt((fd), (level), (name), (val), (int)(len))

static inline ssize_t tr_win_recv(int fd, void *buf, size_t n, int flags) {
  int r = recv(TR_SOCK(fd), (char *)buf, n > INT_MAX ? INT_MAX : (int)n, flags);
  return r == SOCKET_ERROR ? tr_win_fail() : r;
}
#define recv(fd, buf, n, flags) tr_win_recv((fd), (buf), (n), (flags))
#define read(fd, buf, n) tr_win_recv((fd), (buf), (n), 0)

static inline ssize_t tr_win_send(int fd, const void *buf, size_t n,
                                  int flags) {
  int r = send(TR_SOCK(fd), (const char *)buf, n > INT_MAX ? INT_MAX : (int)n,
               flags);
  return r == SOCKET_ERROR ? tr_win_fail() : r;
}

/* sendmsg as send over each piece in turn, stopping at the first one the
 * kernel did not take whole. */
static inline ssize_t tr_win_sendmsg(int fd, const struct msghdr *m,
                                     int flags) {
  ssize_t total = 0;
  for (size_t i = 0; i < m->msg_iovlen; i++) {
    size_t len = m->msg_iov[i].iov_len;
    int want = len > INT_MAX ? INT_MAX : (int)len;
    int r =
        send(TR_SOCK(fd), (const char *)m->msg_iov[i].iov_base, want, flags);
    if (r == SOCKET_ERROR)
      return total > 0 ? total : tr_win_fail();
    total += r;
    if (r < want)
      break;
  }
  return total;
}
#define sendmsg(fd, m, flags) tr_win_sendmsg((fd), (m), (flags))
#define send(fd, buf, n, flags) tr_win_send((fd), (buf), (n), (flags))

/* No other handle than a socket is ever adopted (tr_win_fcntl refuses
 * it), so the pipe path of the flush is never taken. */
static inline ssize_t tr_writev_nosigpipe(int fd, const struct iovec *iov,
                                          int n) {
  (void)fd, (void)iov, (void)n;
  errno = ENOTSOCK;
  return -1;
}

static inline int tr_win_close(int fd) {
  return closesocket(TR_SOCK(fd)) == 0 ? 0 : tr_win_fail();
}
#define close(fd) tr_win_close(fd)

static inline int tr_win_shutdown(int fd, int how) {
  return shutdown(TR_SOCK(fd), how) == 0 ? 0 : tr_win_fail();
}
#define shutdown(fd, how) tr_win_shutdown((fd), (how))

static inline int tr_win_bind(int fd, const struct sockaddr *sa, int len) {
  return bind(TR_SOCK(fd), sa, len) == 0 ? 0 : tr_win_fail();
}
#define bind(fd, sa, len) tr_win_bind((fd), (sa), (int)(len))

static inline int tr_win_listen(int fd, int backlog) {
  return listen(TR_SOCK(fd), backlog) == 0 ? 0 : tr_win_fail();
}
#define listen(fd, backlog) tr_win_listen((fd), (backlog))

static inline int tr_win_getsockname(int fd, struct sockaddr *sa,
                                     socklen_t *len) {
  int l = (int)*len;
  if (getsockname(TR_SOCK(fd), sa, &l) != 0)
    return tr_win_fail();
  *len = (socklen_t)l;
  return 0;
}
#define getsockname(fd, sa, len) tr_win_getsockname((fd), (sa), (len))

/* The listener's reserve descriptor (the EMFILE trick) has no Windows
 * counterpart: sockets are not counted against a descriptor limit. */
#define open(...) (-1)

#endif /* POLLER_TRANSPORT_WIN32_H */
