/* SPDX-License-Identifier: MIT */
/*
 * platform_win32.c - the core's operating-system calls on Windows (see
 * platform.h), and the wakeup channel there.
 *
 * On Windows a poller "fd" is a Winsock SOCKET value.  SOCKET is a
 * pointer-sized kernel handle, but Windows keeps handle values within 32
 * bits so that 32-bit and 64-bit processes can share them (Microsoft's
 * "Interprocess Communication Between 32-bit and 64-bit Applications"),
 * so the value fits poller's int; poller.h says how to pass it.
 *
 * The wakeup channel is a connected loopback TCP pair: both Windows
 * backends watch sockets only, and a socket is what both can wait on.
 */
#define WIN32_LEAN_AND_MEAN
#include "internal.h"

#include <errno.h>
#include <winsock2.h>
#include <windows.h>
#include <ws2tcpip.h>

/* The probe's bits: private values, only poller__to_pollbits and
 * poller__from_pollbits produce and read them. */
#define PROBE_IN 0x01
#define PROBE_OUT 0x02
#define PROBE_PRI 0x04
#define PROBE_ERR 0x08
#define PROBE_HUP 0x10
#define PROBE_NVAL 0x20

short poller__to_pollbits(unsigned events) {
  short ev = 0;
  if (events & POLLER_IN)
    ev |= PROBE_IN;
  if (events & POLLER_OUT)
    ev |= PROBE_OUT;
  if (events & POLLER_PRI)
    ev |= PROBE_PRI;
  return ev;
}

unsigned poller__from_pollbits(short revents) {
  unsigned bits = 0;
  if (revents & PROBE_IN)
    bits |= POLLER_IN;
  if (revents & PROBE_OUT)
    bits |= POLLER_OUT;
  if (revents & PROBE_PRI)
    bits |= POLLER_PRI;
  if (revents & PROBE_ERR)
    bits |= POLLER_ERR;
  if (revents & PROBE_HUP)
    bits |= POLLER_HUP;
  if (revents & PROBE_NVAL)
    bits |= POLLER_NVAL;
  return bits;
}

/* Each Winsock error as the errno it stands for (WSAECONNRESET is
 * ECONNRESET, and so on: mingw-w64's errno.h defines the POSIX network
 * codes), so an error says what happened; the few Win32 errors the
 * backends pass here too; EIO for the rest.  WSAENOBUFS is ENOMEM, the
 * shortage the loop retries after (poller_loop.h); WSAESHUTDOWN (a send
 * after shutdown) is EPIPE, as send(2) says it on Unix. */
int poller__win_errno(int wsa) {
  switch (wsa) {
  case WSAENOTSOCK:
    return ENOTSOCK;
  case WSAEBADF:
  case WSA_INVALID_HANDLE:
    return EBADF;
  case WSAEINTR:
    return EINTR;
  case WSAEFAULT:
    return EFAULT;
  case WSAEINVAL:
  case ERROR_INVALID_PARAMETER:
    return EINVAL;
  case WSAEACCES:
  case ERROR_ACCESS_DENIED:
    return EACCES;
  case WSAEMFILE:
    return EMFILE;
  case WSAENOBUFS:
  case WSA_NOT_ENOUGH_MEMORY:
  case ERROR_OUTOFMEMORY:
    return ENOMEM;
  case WSAEWOULDBLOCK:
    return EAGAIN;
  case WSAEINPROGRESS:
    return EINPROGRESS;
  case WSAEALREADY:
    return EALREADY;
  case WSAEDESTADDRREQ:
    return EDESTADDRREQ;
  case WSAEMSGSIZE:
    return EMSGSIZE;
  case WSAEPROTOTYPE:
    return EPROTOTYPE;
  case WSAENOPROTOOPT:
    return ENOPROTOOPT;
  case WSAEPROTONOSUPPORT:
  case WSAESOCKTNOSUPPORT:
    return EPROTONOSUPPORT;
  case WSAEOPNOTSUPP:
    return EOPNOTSUPP;
  case WSAEAFNOSUPPORT:
  case WSAEPFNOSUPPORT:
    return EAFNOSUPPORT;
  case WSAEADDRINUSE:
    return EADDRINUSE;
  case WSAEADDRNOTAVAIL:
    return EADDRNOTAVAIL;
  case WSAENETDOWN:
    return ENETDOWN;
  case WSAENETUNREACH:
    return ENETUNREACH;
  case WSAENETRESET:
    return ENETRESET;
  case WSAECONNABORTED:
    return ECONNABORTED;
  case WSAECONNRESET:
    return ECONNRESET;
  case WSAEISCONN:
    return EISCONN;
  case WSAENOTCONN:
    return ENOTCONN;
  case WSAESHUTDOWN:
    return EPIPE;
  case WSAETIMEDOUT:
    return ETIMEDOUT;
  case WSAECONNREFUSED:
    return ECONNREFUSED;
  case WSAELOOP:
    return ELOOP;
  case WSAENAMETOOLONG:
    return ENAMETOOLONG;
  case WSAEHOSTDOWN:
  case WSAEHOSTUNREACH:
    return EHOSTUNREACH;
  case WSANOTINITIALISED:
  case WSASYSNOTREADY:
  case WSAVERNOTSUPPORTED:
    return ENOSYS;
  default:
    return EIO;
  }
}

int poller__win_startup(void) {
  /* Winsock counts WSAStartup calls; one per process is enough and is
   * never undone (a library cannot know when the last user is gone). */
  static volatile LONG done;
  if (done)
    return 0;
  WSADATA wd;
  int r = WSAStartup(MAKEWORD(2, 2), &wd);
  if (r != 0)
    return -poller__win_errno(r);
  InterlockedExchange(&done, 1);
  return 0;
}

int poller__win_is_socket(int fd) {
  int type;
  int len = sizeof type;
  return getsockopt((SOCKET)(uintptr_t)(unsigned)fd, SOL_SOCKET, SO_TYPE,
                    (char *)&type, &len) == 0;
}

int poller__win_is_stream(int fd) {
  int type = 0;
  int len = sizeof type;
  return getsockopt((SOCKET)(uintptr_t)(unsigned)fd, SOL_SOCKET, SO_TYPE,
                    (char *)&type, &len) == 0 &&
         type == SOCK_STREAM;
}

/* The errors of a peek that mean the connection is gone (a listening
 * socket's WSAENOTCONN does not). */
static int is_reset(int err) {
  return err == WSAECONNRESET || err == WSAECONNABORTED ||
         err == WSAENETRESET || err == WSAESHUTDOWN;
}

/* A zero-timeout select over at most 64 sockets at a time, so the probe
 * needs no allocation: Winsock's fd_set is a counted array of FD_SETSIZE
 * (64) entries.  A socket closed behind poller's back fails the whole
 * call with WSAENOTSOCK; each socket is then probed alone. */
static int probe_chunk(poller__pollfd *pf, int n) {
  fd_set r, w, x;
  r.fd_count = w.fd_count = x.fd_count = 0;
  for (int i = 0; i < n; i++) {
    SOCKET s = (SOCKET)(uintptr_t)(unsigned)pf[i].fd;
    pf[i].revents = 0;
    if (pf[i].events & PROBE_IN)
      r.fd_array[r.fd_count++] = s;
    if (pf[i].events & PROBE_OUT)
      w.fd_array[w.fd_count++] = s;
    x.fd_array[x.fd_count++] = s; /* errors and urgent data */
  }
  struct timeval tv = {0, 0};
  int k = select(0, r.fd_count ? &r : NULL, w.fd_count ? &w : NULL, &x, &tv);
  if (k == SOCKET_ERROR)
    return -poller__win_errno(WSAGetLastError());
  int m = 0;
  for (int i = 0; i < n; i++) {
    SOCKET s = (SOCKET)(uintptr_t)(unsigned)pf[i].fd;
    short ev = 0;
    if (FD_ISSET(s, &r)) {
      /* select cannot tell a hang-up from data; a one-byte peek can
       * when nothing is left to read (0: the peer closed, an error: it
       * reset).  Emulated ET needs the hang-up as a new bit, or a peer
       * closing after a drain would be no transition (test
       * edge_reports_peer_close). */
      char c;
      int got = recv(s, &c, 1, MSG_PEEK);
      ev |= PROBE_IN;
      if (got == 0 && poller__win_is_stream(pf[i].fd))
        ev |= PROBE_HUP; /* not an empty datagram */
      else if (got < 0 && is_reset(WSAGetLastError()))
        ev |= PROBE_HUP | PROBE_ERR;
    }
    if (FD_ISSET(s, &w))
      ev |= PROBE_OUT;
    if (FD_ISSET(s, &x)) {
      int err = 0, len = sizeof err;
      if (getsockopt(s, SOL_SOCKET, SO_ERROR, (char *)&err, &len) == 0 &&
          err != 0)
        ev |= PROBE_ERR;
      else if (pf[i].events & PROBE_PRI)
        ev |= PROBE_PRI;
    }
    pf[i].revents = ev;
    m += ev != 0;
  }
  return m;
}

int poller__platform_probe(poller__pollfd *pf, int n) {
  int m = 0;
  for (int i = 0; i < n; i += FD_SETSIZE) {
    int c = n - i < FD_SETSIZE ? n - i : FD_SETSIZE;
    int k = probe_chunk(pf + i, c);
    if (k == -ENOTSOCK) {
      k = 0;
      for (int j = i; j < i + c; j++) {
        int one = probe_chunk(pf + j, 1);
        if (one < 0) {
          pf[j].revents = PROBE_NVAL;
          one = 1;
        }
        k += one;
      }
    }
    if (k < 0)
      return k;
    m += k;
  }
  return m;
}

int poller__platform_wait_readable(int fd, int timeout_ms) {
  fd_set r;
  r.fd_count = 1;
  r.fd_array[0] = (SOCKET)(uintptr_t)(unsigned)fd;
  struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  int k = select(0, &r, NULL, NULL, &tv);
  return k == SOCKET_ERROR ? -poller__win_errno(WSAGetLastError()) : k;
}

int poller__platform_fd_open(int fd) {
  /* A valid handle of this process, socket or not: the backends refuse
   * what is not a socket with ENOTSOCK, a clearer error than EBADF. */
  DWORD flags;
  return GetHandleInformation((HANDLE)(uintptr_t)(unsigned)fd, &flags) != 0 ||
         poller__win_is_socket(fd);
}

int poller__platform_dup_above(int fd) {
  /* Socket values cannot be chosen.  Only poller_reinit, which is not
   * supported on Windows, could ask. */
  (void)fd;
  return -ENOSYS;
}

void poller__platform_close(int fd) {
  closesocket((SOCKET)(uintptr_t)(unsigned)fd);
}

long long poller__platform_now_ns(void) {
  static LARGE_INTEGER freq;
  LARGE_INTEGER now;
  if (!freq.QuadPart)
    QueryPerformanceFrequency(&freq);
  QueryPerformanceCounter(&now);
  long long f = freq.QuadPart;
  return now.QuadPart / f * 1000000000LL +
         now.QuadPart % f * 1000000000LL / f;
}

int poller__platform_env_trusted(void) { return 1; }

/* ---- the wakeup channel ---- */

static int set_nonblocking(SOCKET s) {
  u_long on = 1;
  return ioctlsocket(s, FIONBIO, &on) == 0 ? 0 : -1;
}

/* Both ends must fit an int, as every socket poller sees. */
static int fits_int(SOCKET s) { return (uintptr_t)s <= (uintptr_t)INT_MAX; }

int poller__win_socketpair(int *a, int *b) {
  int r = poller__win_startup();
  if (r < 0)
    return r;
  SOCKET l = INVALID_SOCKET, c = INVALID_SOCKET, s = INVALID_SOCKET;
  struct sockaddr_in sa;
  int len = sizeof sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  /* Not inherited by child processes, as close-on-exec on Unix. */
  l = WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                 WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
  if (l == INVALID_SOCKET)
    goto fail;
  if (bind(l, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(l, 1) != 0 ||
      getsockname(l, (struct sockaddr *)&sa, &len) != 0)
    goto fail;
  c = WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                 WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
  if (c == INVALID_SOCKET ||
      connect(c, (struct sockaddr *)&sa, sizeof sa) != 0)
    goto fail;
  s = accept(l, NULL, NULL);
  if (s == INVALID_SOCKET)
    goto fail;
  /* Another process could have connected to the listener first: the
   * accepted peer must be our own client. */
  struct sockaddr_in pa, ca;
  int plen = sizeof pa, clen = sizeof ca;
  if (getpeername(s, (struct sockaddr *)&pa, &plen) != 0 ||
      getsockname(c, (struct sockaddr *)&ca, &clen) != 0 ||
      pa.sin_port != ca.sin_port)
    goto fail;
  closesocket(l);
  l = INVALID_SOCKET;
  int one = 1;
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, (char *)&one, sizeof one);
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (char *)&one, sizeof one);
  if (set_nonblocking(c) != 0 || set_nonblocking(s) != 0 || !fits_int(c) ||
      !fits_int(s))
    goto fail;
  *a = (int)(uintptr_t)c;
  *b = (int)(uintptr_t)s;
  return 0;
fail:
  r = -poller__win_errno(WSAGetLastError());
  if (r == -EIO)
    r = -EMFILE;
  if (l != INVALID_SOCKET)
    closesocket(l);
  if (c != INVALID_SOCKET)
    closesocket(c);
  if (s != INVALID_SOCKET)
    closesocket(s);
  return r;
}

int poller__wakefd_open(int *rfd, int *wfd) {
  return poller__win_socketpair(rfd, wfd);
}

void poller__wakefd_drain(int rfd) {
  char buf[64];
  while (recv((SOCKET)(uintptr_t)(unsigned)rfd, buf, sizeof buf, 0) > 0) {
  }
}

void poller__wakefd_signal(int wfd) {
  /* Callable from a console control handler, which Windows runs on a
   * thread of its own: send is safe there.  errno and the Winsock error
   * are left as they were. */
  int saved = errno;
  int wsa = WSAGetLastError();
  char one = 1;
  send((SOCKET)(uintptr_t)(unsigned)wfd, &one, 1, 0);
  WSASetLastError(wsa);
  errno = saved;
}
