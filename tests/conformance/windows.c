/* SPDX-License-Identifier: MIT */
/*
 * windows.c - the Windows contract of the core API (README, "Windows"):
 * sockets are the only descriptors, passed as their SOCKET value in an
 * int; anything else is refused with a clear error; poller_fd is -1 and
 * poller_reinit is -ENOSYS.  Built on Windows only.
 */
#include "harness.h"

#include <limits.h>

#ifdef _WIN32
#include "internal.h"

static int tag;

/* Winsock's errors become their errno, not EIO, so an error the core or a
 * transport reports says what happened (WSAECONNRESET is -ECONNRESET). */
TEST(win_errno_maps_wsa_errors) {
  static const int map[][2] = {
      {WSAECONNRESET, ECONNRESET},
      {WSAECONNREFUSED, ECONNREFUSED},
      {WSAECONNABORTED, ECONNABORTED},
      {WSAEADDRINUSE, EADDRINUSE},
      {WSAEADDRNOTAVAIL, EADDRNOTAVAIL},
      {WSAETIMEDOUT, ETIMEDOUT},
      {WSAENOTSOCK, ENOTSOCK},
      {WSAENOTCONN, ENOTCONN},
      {WSAEISCONN, EISCONN},
      {WSAENETDOWN, ENETDOWN},
      {WSAENETUNREACH, ENETUNREACH},
      {WSAENETRESET, ENETRESET},
      {WSAEHOSTUNREACH, EHOSTUNREACH},
      {WSAEAFNOSUPPORT, EAFNOSUPPORT},
      {WSAEMSGSIZE, EMSGSIZE},
      {WSAEALREADY, EALREADY},
      {WSAEINPROGRESS, EINPROGRESS},
      {WSAEOPNOTSUPP, EOPNOTSUPP},
      {WSAEPROTONOSUPPORT, EPROTONOSUPPORT},
      {WSAEPROTOTYPE, EPROTOTYPE},
      {WSAENOPROTOOPT, ENOPROTOOPT},
      {WSAEDESTADDRREQ, EDESTADDRREQ},
      {WSAEACCES, EACCES},
      {WSAESHUTDOWN, EPIPE},
      {WSAEWOULDBLOCK, EAGAIN},
      {WSAEINVAL, EINVAL},
      {WSAEMFILE, EMFILE},
      {WSAEBADF, EBADF},
      {WSAEINTR, EINTR},
      {WSAEFAULT, EFAULT},
      {ERROR_ACCESS_DENIED, EACCES},
      {ERROR_INVALID_PARAMETER, EINVAL},
  };
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
    if (poller__win_errno(map[i][0]) != map[i][1])
      FAIL("WSA/Win32 error %d maps to %d (%s), not %d (%s)", map[i][0],
           poller__win_errno(map[i][0]),
           poller_strerror(-poller__win_errno(map[i][0])), map[i][1],
           poller_strerror(-map[i][1]));
}

/* A handle that is not a socket (a file) is refused with ENOTSOCK, and
 * the poller stays usable. */
TEST(win_non_socket_refused) {
  poller *p;
  t_open(&p);
  char dir[MAX_PATH], path[MAX_PATH];
  ASSERT_TRUE(GetTempPathA(sizeof dir, dir) != 0);
  ASSERT_TRUE(GetTempFileNameA(dir, "plr", 0, path) != 0);
  HANDLE h = CreateFileA(path, GENERIC_READ | GENERIC_WRITE, 0, NULL,
                         CREATE_ALWAYS, FILE_FLAG_DELETE_ON_CLOSE, NULL);
  ASSERT_TRUE(h != INVALID_HANDLE_VALUE);
  int fd = (int)(uintptr_t)h;
  ASSERT_ERR(poller_add(p, fd, POLLER_IN, &tag), -ENOTSOCK);
  ASSERT_ERR(poller_del(p, fd), -ENOENT);
  int sv[2];
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag));
  t_write(sv[1], 1);
  t_wait_for(p, sv[0], POLLER_IN, 5000, NULL);
  ASSERT_OK(poller_del(p, sv[0]));
  CloseHandle(h);
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* A closed socket is refused with EBADF at add. */
TEST(win_closed_socket_refused) {
  poller *p;
  t_open(&p);
  int sv[2];
  t_socketpair(sv);
  t_close(sv[0]);
  ASSERT_ERR(poller_add(p, sv[0], POLLER_IN, &tag), -EBADF);
  ASSERT_ERR(poller_add(p, INT_MAX - 3, POLLER_IN, &tag), -EBADF);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* A socket closed behind poller's back is reported once as ERR|NVAL, the
 * other sockets keep working, and del succeeds. */
TEST(win_closed_behind_back_nval) {
  poller *p;
  t_open(&p);
  int a[2], b[2];
  t_socketpair(a);
  t_socketpair(b);
  ASSERT_OK(poller_add(p, a[0], POLLER_IN, &tag));
  ASSERT_OK(poller_add(p, b[0], POLLER_IN, &tag));
  ASSERT_EQ(t_wait_once(p, a[0], 0), 0);
  t_close(a[0]);
  unsigned got = t_wait_for(p, a[0], POLLER_NVAL, 5000, NULL);
  ASSERT_BITS(got, POLLER_ERR);
  t_expect_none(p, a[0], 50);
  t_write(b[1], 1);
  t_wait_for(p, b[0], POLLER_IN, 5000, NULL);
  ASSERT_OK(poller_del(p, a[0]));
  ASSERT_OK(poller_del(p, b[0]));
  t_close(a[1]);
  t_close(b[0]);
  t_close(b[1]);
  t_assert_clean(p);
}

/* More sockets than Winsock's FD_SETSIZE (64): every one is watched, and
 * each one's readiness is reported. */
TEST_TIMEOUT(win_sets_grow_past_fd_setsize, 60) {
  enum { N = 200 };
  poller *p;
  t_open(&p);
  static int sv[N][2];
  for (int i = 0; i < N; i++) {
    t_socketpair(sv[i]);
    ASSERT_OK(poller_add(p, sv[i][0], POLLER_IN, &sv[i]));
  }
  for (int i = 0; i < N; i += 7) {
    t_write(sv[i][1], 1);
    t_wait_for(p, sv[i][0], POLLER_IN, 5000, NULL);
    t_drain(sv[i][0]);
  }
  t_write(sv[N - 1][1], 1);
  poller_event ev;
  t_wait_for(p, sv[N - 1][0], POLLER_IN, 5000, &ev);
  ASSERT_TRUE(ev.data == &sv[N - 1]);
  for (int i = 0; i < N; i++) {
    ASSERT_OK(poller_del(p, sv[i][0]));
    t_close(sv[i][0]);
    t_close(sv[i][1]);
  }
  t_assert_clean(p);
}

/* poller_fd has no meaning on Windows (-1), poller_reinit is -ENOSYS and
 * leaves the poller usable. */
TEST(win_fd_and_reinit) {
  poller *p;
  t_open(&p);
  ASSERT_EQ(poller_fd(p), -1);
  ASSERT_ERR(poller_reinit(p), -ENOSYS);
  int sv[2];
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_OUT, &tag));
  t_wait_for(p, sv[0], POLLER_OUT, 5000, NULL);
  ASSERT_OK(poller_wakeup(p));
  poller_event out[4];
  ASSERT_GE(poller_wait(p, out, 4, 5000), 0);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* A peer that closes makes the socket readable (IN, as a hang-up is
 * everywhere), and a reset one too. */
TEST(win_peer_close_readable) {
  poller *p;
  t_open(&p);
  int sv[2];
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag));
  t_expect_none(p, sv[0], 30);
  t_close(sv[1]);
  t_wait_for(p, sv[0], POLLER_IN, 5000, NULL);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_assert_clean(p);
}
/* The application's socket stays free for its own overlapped I/O: poller
 * never ties it to a completion port of its own (a handle can belong to
 * one port only, for its whole life). */
TEST(win_socket_free_for_own_port) {
  poller *p;
  t_open(&p);
  int sv[2];
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag));
  t_write(sv[1], 1);
  t_wait_for(p, sv[0], POLLER_IN, 5000, NULL);
  HANDLE port = CreateIoCompletionPort(
      (HANDLE)(uintptr_t)(unsigned)sv[0], NULL, 1, 0);
  ASSERT_TRUE(port != NULL);
  /* Still watched, and still reported. */
  t_wait_for(p, sv[0], POLLER_IN, 5000, NULL);
  ASSERT_OK(poller_del(p, sv[0]));
  CloseHandle(port);
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}
/* ---- readiness of TCP sockets (readiness.c's socket cases, in Winsock
 * terms) ---- */

#define S(fd) ((SOCKET)(uintptr_t)(unsigned)(fd))

/* A non-blocking TCP socket as an int. */
static int tcp_socket(void) {
  SOCKET s = WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                        WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
  ASSERT_TRUE(s != INVALID_SOCKET);
  u_long on = 1;
  ASSERT_EQ(ioctlsocket(s, FIONBIO, &on), 0);
  return (int)(uintptr_t)s;
}

/* A loopback address whose port had a listener a moment ago. */
static void closed_port(struct sockaddr_in *sa) {
  int l = tcp_socket();
  int len = sizeof *sa;
  memset(sa, 0, sizeof *sa);
  sa->sin_family = AF_INET;
  sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(S(l), (struct sockaddr *)sa, sizeof *sa), 0);
  ASSERT_EQ(getsockname(S(l), (struct sockaddr *)sa, &len), 0);
  t_close(l);
}

/* A refused connect is ERR, whatever the interest (Winsock puts it in
 * select's exception set only, never the write set). */
TEST(win_connect_refused_is_error) {
  poller *p;
  t_open(&p);
  struct sockaddr_in sa;
  closed_port(&sa);
  int c = tcp_socket();
  int r = connect(S(c), (struct sockaddr *)&sa, sizeof sa);
  if (r == 0 || WSAGetLastError() != WSAEWOULDBLOCK)
    SKIP("connect finished at once (%d): no event to see", WSAGetLastError());
  ASSERT_OK(poller_add(p, c, POLLER_OUT, &tag));
  poller_event ev;
  t_wait_for(p, c, POLLER_ERR, 10000, &ev);
  ASSERT_TRUE(ev.data == &tag);
  int err = 0, len = sizeof err;
  ASSERT_EQ(getsockopt(S(c), SOL_SOCKET, SO_ERROR, (char *)&err, &len), 0);
  ASSERT_EQ(err, WSAECONNREFUSED);
  ASSERT_OK(poller_del(p, c));
  t_close(c);
  t_assert_clean(p);
}

/* A listening socket is readable when a connection waits, and not after
 * it was accepted. */
TEST(win_listen_readable_on_connect) {
  poller *p;
  t_open(&p);
  int l = tcp_socket();
  struct sockaddr_in sa;
  int len = sizeof sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(S(l), (struct sockaddr *)&sa, sizeof sa), 0);
  ASSERT_EQ(listen(S(l), 4), 0);
  ASSERT_EQ(getsockname(S(l), (struct sockaddr *)&sa, &len), 0);
  ASSERT_OK(poller_add(p, l, POLLER_IN, &tag));
  t_expect_none(p, l, 30);
  int c = tcp_socket();
  int r = connect(S(c), (struct sockaddr *)&sa, sizeof sa);
  ASSERT_TRUE(r == 0 || WSAGetLastError() == WSAEWOULDBLOCK);
  t_wait_for(p, l, POLLER_IN, 5000, NULL);
  SOCKET a = accept(S(l), NULL, NULL);
  ASSERT_TRUE(a != INVALID_SOCKET);
  t_expect_none(p, l, 30);
  ASSERT_OK(poller_del(p, l));
  closesocket(a);
  t_close(c);
  t_close(l);
  t_assert_clean(p);
}

/* The peer's shutdown(SD_SEND) makes the socket readable (EOF); afd also
 * reports RDHUP when asked, select cannot tell it. */
TEST(win_rdhup_on_peer_shutdown) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN | POLLER_RDHUP, &tag));
  t_expect_none(p, sv[0], 30);
  ASSERT_EQ(shutdown(S(sv[1]), SD_SEND), 0);
  unsigned got = t_wait_for(p, sv[0], POLLER_IN, 5000, NULL);
  if (T_BACKEND == POLLER_AFD)
    ASSERT_BITS(got, POLLER_RDHUP);
  char c;
  ASSERT_EQ(recv(S(sv[0]), &c, 1, 0), 0);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* Data the peer sent before closing is readable before the end. */
TEST(win_data_before_hup) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag));
  t_write(sv[1], 5);
  t_close(sv[1]);
  t_wait_for(p, sv[0], POLLER_IN, 5000, NULL);
  char buf[16];
  int total = 0, r;
  double deadline = t_now_ms() + 5000;
  while ((r = recv(S(sv[0]), buf, sizeof buf, 0)) != 0) {
    if (r > 0)
      total += r;
    else if (WSAGetLastError() == WSAEWOULDBLOCK && t_now_ms() < deadline)
      t_wait_for(p, sv[0], POLLER_IN, 5000, NULL);
    else
      FAIL("recv: Winsock error %d", WSAGetLastError());
  }
  ASSERT_EQ(total, 5);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_assert_clean(p);
}

/* A socket whose send buffer is full is not writable until the peer
 * reads. */
TEST_TIMEOUT(win_write_not_ready_when_full, 60) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  static char buf[65536];
  memset(buf, 'x', sizeof buf);
  ASSERT_OK(poller_add(p, sv[0], POLLER_OUT, &tag));
  /* TCP may grow its buffers after a fill (Linux under Wine tunes the
   * receive window), so a fill is repeated until a quiet interval shows
   * that a full socket is not reported writable. */
  int quiet = 0;
  for (int round = 0; round < 20 && !quiet; round++) {
    for (;;) {
      int w = send(S(sv[0]), buf, sizeof buf, 0);
      if (w == SOCKET_ERROR) {
        ASSERT_EQ(WSAGetLastError(), WSAEWOULDBLOCK);
        break;
      }
    }
    quiet = !(t_wait_once(p, sv[0], 100) & POLLER_OUT);
  }
  ASSERT_TRUE(quiet);
  double deadline = t_now_ms() + 30000;
  for (;;) {
    t_drain(sv[1]);
    if (t_wait_once(p, sv[0], 50) & POLLER_OUT)
      break;
    if (t_now_ms() > deadline)
      FAIL("never writable again after the peer read everything");
  }
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* TCP urgent data (MSG_OOB) is PRI. */
TEST(win_pri_urgent_data) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_PRI, &tag));
  t_expect_none(p, sv[0], 30);
  ASSERT_EQ(send(S(sv[1]), "!", 1, MSG_OOB), 1);
  unsigned got = t_wait_for(p, sv[0], POLLER_PRI, 5000, NULL);
  ASSERT_NOBITS(got, POLLER_OUT);
  char c = 0;
  ASSERT_EQ(recv(S(sv[0]), &c, 1, MSG_OOB), 1);
  ASSERT_EQ(c, '!');
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}
/* Edge-triggered: a peer that closes without sending is one report, not
 * one per way of seeing it (the backend's report and the emulation's
 * probe). */
TEST(win_edge_peer_close_reported_once) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN | POLLER_ET, &tag));
  t_expect_none(p, sv[0], 30);
  t_close(sv[1]);
  t_wait_for(p, sv[0], POLLER_IN, 5000, NULL);
  t_expect_none(p, sv[0], 200);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_assert_clean(p);
}
#endif
