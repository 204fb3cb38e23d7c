/* SPDX-License-Identifier: MIT */
/*
 * readiness.c - conformance group C: what each kind of readiness looks
 * like on every backend (issue 2's readiness
 * line).  Waits are tolerant: they look for the expected bits and accept
 * extra ones where the kernel may add them (a hang-up is also readable).
 */
#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

/* C21: a reader is not ready before its peer writes and ready after;
 * among many pairs exactly the written one is reported. */
TEST(read_ready_only_after_peer_write) {
  enum { N = 16 };
  poller *p;
  int sv[N][2];
  t_open(&p);
  for (int i = 0; i < N; i++) {
    t_socketpair(sv[i]);
    ASSERT_OK(poller_add(p, sv[i][0], POLLER_IN, &sv[i]));
  }
  poller_event out[N];
  ASSERT_EQ(poller_wait(p, out, N, 30), 0);
  for (int k = 0; k < N; k += 5) {
    t_write(sv[k][1], 3);
    int n = poller_wait(p, out, N, 2000);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(out[0].fd, sv[k][0]);
    ASSERT_EQ(out[0].events, POLLER_IN);
    ASSERT_TRUE(out[0].data == &sv[k]);
    ASSERT_EQ(t_drain(sv[k][0]), 3);
    ASSERT_EQ(poller_wait(p, out, N, 0), 0);
  }
  for (int i = 0; i < N; i++) {
    ASSERT_OK(poller_del(p, sv[i][0]));
    t_close(sv[i][0]);
    t_close(sv[i][1]);
  }
  t_assert_clean(p);
}

/* C22: a fresh connected socket is writable, not readable. */
TEST(write_ready_initially_read_not) {
  poller *p;
  int a, b;
  t_open(&p);
  t_tcp_pair(&a, &b);
  ASSERT_OK(poller_add(p, a, POLLER_IN | POLLER_OUT, NULL));
  unsigned got = t_wait_for(p, a, POLLER_OUT, 2000, NULL);
  ASSERT_EQ(got, POLLER_OUT);
  ASSERT_OK(poller_del(p, a));
  t_close(a);
  t_close(b);
  t_assert_clean(p);
}

/* C23: after filling the send buffer the fd is not writable until the
 * peer drains, then it is. */
TEST(write_not_ready_when_buffer_full) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  char buf[65536];
  memset(buf, 'y', sizeof buf);
  size_t total = 0;
  for (;;) {
    ssize_t w = write(sv[0], buf, sizeof buf);
    if (w < 0) {
      ASSERT_EQ(errno, EAGAIN);
      break;
    }
    total += (size_t)w;
  }
  ASSERT_GT(total, 0);
  ASSERT_OK(poller_add(p, sv[0], POLLER_OUT, NULL));
  t_expect_none(p, sv[0], 100);
  ASSERT_EQ(t_drain(sv[1]), total);
  t_wait_for(p, sv[0], POLLER_OUT, 2000, NULL);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* C24: an fd wanted for IN and OUT, both holding, gives one event with
 * both bits. */
TEST(read_write_single_event) {
  poller *p;
  int a, b;
  t_open(&p);
  t_tcp_pair(&a, &b);
  ASSERT_OK(poller_add(p, a, POLLER_IN | POLLER_OUT, &a));
  t_write(b, 10);
  poller_event out[8];
  int both = 0;
  double deadline = t_now_ms() + 2000;
  while (!both && t_now_ms() < deadline) {
    int n = poller_wait(p, out, 8, 100);
    ASSERT_GE(n, 0);
    ASSERT_LE(n, 1); /* one entry for the fd, never two */
    if (n == 1) {
      ASSERT_EQ(out[0].fd, a);
      both = (out[0].events & (POLLER_IN | POLLER_OUT)) ==
             (POLLER_IN | POLLER_OUT);
    }
  }
  ASSERT_TRUE(both);
  ASSERT_OK(poller_del(p, a));
  t_close(a);
  t_close(b);
  t_assert_clean(p);
}

/* C25: a peer close makes the fd readable with EOF (and HUP where the
 * backend can tell it); read returns 0; nothing after del. */
TEST(hup_on_peer_close) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, NULL));
  t_close(sv[1]);
  unsigned got = t_wait_for(p, sv[0], POLLER_IN, 2000, NULL);
  if (T_BACKEND != POLLER_SELECT)
    ASSERT_BITS(got, POLLER_HUP);
  char c;
  ASSERT_EQ(read(sv[0], &c, 1), 0);
  /* Level: still reported while registered. */
  t_wait_for(p, sv[0], POLLER_IN, 2000, NULL);
  ASSERT_OK(poller_del(p, sv[0]));
  t_expect_none(p, sv[0], 50);
  t_close(sv[0]);
  t_assert_clean(p);
}

/* HUP is always reported: an fd registered for OUT only still hears of
 * the hang-up of a pipe's reader (except on select, which cannot tell). */
TEST(hup_always_reported) {
  if (T_BACKEND == POLLER_SELECT)
    SKIP("select cannot report HUP (see poller.h)");
  poller *p;
  int pf[2];
  t_open(&p);
  t_pipe(pf);
  ASSERT_OK(poller_add(p, pf[0], POLLER_PRI, NULL));
  t_expect_none(p, pf[0], 30);
  t_close(pf[1]);
  unsigned got = t_wait_for(p, pf[0], POLLER_HUP, 2000, NULL);
  ASSERT_NOBITS(got, POLLER_OUT);
  ASSERT_OK(poller_del(p, pf[0]));
  t_close(pf[0]);
  t_assert_clean(p);
}

/* C27: the peer writes then closes: all data is readable before EOF. */
TEST(data_before_hup) {
  poller *p;
  int a, b;
  t_open(&p);
  t_tcp_pair(&a, &b);
  ASSERT_OK(poller_add(p, a, POLLER_IN, NULL));
  t_write(b, 100000);
  t_close(b);
  size_t total = 0;
  int eof = 0;
  double deadline = t_now_ms() + 5000;
  while (!eof && t_now_ms() < deadline) {
    t_wait_for(p, a, POLLER_IN, 5000, NULL);
    char buf[4096];
    for (;;) {
      ssize_t r = read(a, buf, sizeof buf);
      if (r > 0) {
        total += (size_t)r;
        continue;
      }
      if (r == 0)
        eof = 1;
      else
        ASSERT_EQ(errno, EAGAIN);
      break;
    }
  }
  ASSERT_TRUE(eof);
  ASSERT_EQ(total, 100000);
  ASSERT_OK(poller_del(p, a));
  t_close(a);
  t_assert_clean(p);
}

/* RDHUP when asked: the peer's shutdown(SHUT_WR) is reported as RDHUP
 * (with IN), while the fd stays writable. */
TEST(rdhup_when_asked) {
  if (T_BACKEND == POLLER_SELECT)
    SKIP("select cannot report RDHUP (see poller.h)");
  poller *p;
  int a, b;
  t_open(&p);
  t_tcp_pair(&a, &b);
  ASSERT_OK(poller_add(p, a, POLLER_IN | POLLER_RDHUP, NULL));
  t_expect_none(p, a, 30);
  ASSERT_SYS(shutdown(b, SHUT_WR));
  unsigned got = t_wait_for(p, a, POLLER_RDHUP, 2000, NULL);
  ASSERT_BITS(got, POLLER_IN);
  ASSERT_NOBITS(got, POLLER_HUP); /* only half closed */
  t_write(a, 1);
  ASSERT_OK(poller_del(p, a));
  t_close(a);
  t_close(b);
  t_assert_clean(p);
}

/* RDHUP is not reported when not asked for. */
TEST(rdhup_not_reported_unasked) {
  poller *p;
  int a, b;
  t_open(&p);
  t_tcp_pair(&a, &b);
  ASSERT_OK(poller_add(p, a, POLLER_IN, NULL));
  ASSERT_SYS(shutdown(b, SHUT_WR));
  unsigned got = t_wait_for(p, a, POLLER_IN, 2000, NULL);
  ASSERT_NOBITS(got, POLLER_RDHUP);
  ASSERT_OK(poller_del(p, a));
  t_close(a);
  t_close(b);
  t_assert_clean(p);
}

/* A closed loopback port: bind a socket to get a free port, close it. */
static int closed_port(void) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_SYS(s);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  ASSERT_SYS(bind(s, (struct sockaddr *)&sa, sizeof sa));
  ASSERT_SYS(getsockname(s, (struct sockaddr *)&sa, &len));
  t_close(s);
  return ntohs(sa.sin_port);
}

/* A non-blocking TCP socket whose connect to a closed 127.0.0.1 port is in
 * progress: the refusal comes later, as an event.  Skips the test when the
 * kernel refuses at once (then there is no event to see). */
static int refused_connect(void) {
  int port = closed_port();
  int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  ASSERT_SYS(c);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons((uint16_t)port);
  int r = connect(c, (struct sockaddr *)&sa, sizeof sa);
  if (r == -1 && errno == ECONNREFUSED)
    SKIP("the kernel refused the connect synchronously (no event to see)");
  ASSERT_EQ(r, -1);
  ASSERT_EQ(errno, EINPROGRESS);
  return c;
}

/* C26: a non-blocking connect to a closed 127.0.0.1 port yields an error
 * event (ERR; select says readable/writable, as it cannot tell ERR) whose
 * pending error is ECONNREFUSED. */
TEST(connect_refused_is_error) {
  poller *p;
  t_open(&p);
  int c = refused_connect();
  ASSERT_OK(poller_add(p, c, POLLER_OUT, &c));
  poller_event ev;
  if (T_BACKEND == POLLER_SELECT)
    t_wait_for(p, c, POLLER_OUT, 2000, &ev);
  else
    t_wait_for(p, c, POLLER_ERR, 2000, &ev);
  ASSERT_TRUE(ev.data == &c);
  int err = 0;
  socklen_t len = sizeof err;
  ASSERT_SYS(getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &len));
  ASSERT_EQ(err, ECONNREFUSED);
  ASSERT_OK(poller_del(p, c));
  t_close(c);
  t_assert_clean(p);
}

/* PRI: TCP urgent data (MSG_OOB) makes the receiver report PRI. */
TEST(pri_urgent_data) {
  poller *p;
  int a, b;
  t_open(&p);
  t_tcp_pair(&a, &b);
  ASSERT_OK(poller_add(p, b, POLLER_PRI, &b));
  t_expect_none(p, b, 30);
  ASSERT_EQ(send(a, "!", 1, MSG_OOB), 1);
  poller_event ev;
  t_wait_for(p, b, POLLER_PRI, 2000, &ev);
  ASSERT_NOBITS(ev.events, POLLER_OUT);
  char c = 0;
  ASSERT_EQ(recv(b, &c, 1, MSG_OOB), 1);
  ASSERT_EQ(c, '!');
  ASSERT_OK(poller_del(p, b));
  t_close(a);
  t_close(b);
  t_assert_clean(p);
}

/* C28: pipes: the write end is writable, the read end becomes readable
 * after a write and reports the writer's close. */
TEST(pipe_readiness) {
  poller *p;
  int pf[2];
  t_open(&p);
  t_pipe(pf);
  ASSERT_OK(poller_add(p, pf[0], POLLER_IN, NULL));
  ASSERT_OK(poller_add(p, pf[1], POLLER_OUT, NULL));
  t_wait_for(p, pf[1], POLLER_OUT, 2000, NULL);
  ASSERT_OK(poller_del(p, pf[1]));
  t_expect_none(p, pf[0], 30);
  t_write(pf[1], 5);
  ASSERT_EQ(t_wait_for(p, pf[0], POLLER_IN, 2000, NULL), POLLER_IN);
  ASSERT_EQ(t_drain(pf[0]), 5);
  t_expect_none(p, pf[0], 30);
  t_close(pf[1]);
  unsigned got = t_wait_for(p, pf[0], 0, 2000, NULL);
  if (T_BACKEND == POLLER_SELECT)
    ASSERT_BITS(got, POLLER_IN);
  else
    ASSERT_BITS(got, POLLER_HUP);
  ASSERT_OK(poller_del(p, pf[0]));
  t_close(pf[0]);
  t_assert_clean(p);
}

/* A pipe whose reader is gone: the writer reports ERR (select: writable). */
TEST(pipe_reader_closed) {
  poller *p;
  int pf[2];
  t_open(&p);
  t_pipe(pf);
  ASSERT_OK(poller_add(p, pf[1], POLLER_OUT, NULL));
  t_close(pf[0]);
  if (T_BACKEND == POLLER_SELECT)
    t_wait_for(p, pf[1], POLLER_OUT, 2000, NULL);
  else
    t_wait_for(p, pf[1], POLLER_ERR, 2000, NULL);
  ASSERT_OK(poller_del(p, pf[1]));
  t_close(pf[1]);
  t_assert_clean(p);
}

/* C28: eventfd: writable at once, readable only after a write. */
TEST(eventfd_readiness) {
  poller *p;
  t_open(&p);
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ASSERT_SYS(fd);
  ASSERT_OK(poller_add(p, fd, POLLER_IN | POLLER_OUT, NULL));
  ASSERT_EQ(t_wait_for(p, fd, POLLER_OUT, 2000, NULL), POLLER_OUT);
  ASSERT_OK(poller_mod(p, fd, POLLER_IN, NULL));
  t_expect_none(p, fd, 30);
  uint64_t one = 1;
  ASSERT_EQ(write(fd, &one, sizeof one), sizeof one);
  ASSERT_EQ(t_wait_for(p, fd, POLLER_IN, 2000, NULL), POLLER_IN);
  ASSERT_EQ(read(fd, &one, sizeof one), sizeof one);
  t_expect_none(p, fd, 30);
  ASSERT_OK(poller_del(p, fd));
  t_close(fd);
  t_assert_clean(p);
}

/* C28: a pty (the io_uring poll trap on old kernels, liburing#117): the
 * master is writable; it becomes readable when the slave writes, and the
 * slave readable when the master writes. */
TEST(pty_readiness) {
  poller *p;
  t_open(&p);
  int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (m < 0)
    SKIP("posix_openpt: %s", strerror(errno));
  ASSERT_SYS(grantpt(m));
  ASSERT_SYS(unlockpt(m));
  char *name = ptsname(m);
  ASSERT_TRUE(name != NULL);
  int s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
  ASSERT_SYS(s);
  ASSERT_SYS(fcntl(m, F_SETFL, fcntl(m, F_GETFL) | O_NONBLOCK));
  struct termios tio;
  ASSERT_SYS(tcgetattr(s, &tio));
  cfmakeraw(&tio);
  ASSERT_SYS(tcsetattr(s, TCSANOW, &tio));
  ASSERT_OK(poller_add(p, m, POLLER_IN | POLLER_OUT, &m));
  ASSERT_OK(poller_add(p, s, POLLER_IN, &s));
  unsigned got = t_wait_for(p, m, POLLER_OUT, 2000, NULL);
  ASSERT_NOBITS(got, POLLER_IN);
  ASSERT_OK(poller_mod(p, m, POLLER_IN, &m));
  t_expect_none(p, m, 30);
  ASSERT_EQ(write(s, "hi", 2), 2);
  t_wait_for(p, m, POLLER_IN, 2000, NULL);
  ASSERT_EQ(t_drain(m), 2);
  ASSERT_EQ(write(m, "yo", 2), 2);
  t_wait_for(p, s, POLLER_IN, 2000, NULL);
  ASSERT_EQ(t_drain(s), 2);
  t_expect_none(p, s, 30);
  ASSERT_OK(poller_del(p, m));
  ASSERT_OK(poller_del(p, s));
  t_close(s);
  t_close(m);
  t_assert_clean(p);
}

/* A listening socket reports IN when a connection is pending. */
TEST(listen_socket_readable_on_connect) {
  poller *p;
  t_open(&p);
  int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  ASSERT_SYS(l);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  ASSERT_SYS(bind(l, (struct sockaddr *)&sa, sizeof sa));
  ASSERT_SYS(listen(l, 4));
  ASSERT_SYS(getsockname(l, (struct sockaddr *)&sa, &len));
  ASSERT_OK(poller_add(p, l, POLLER_IN, NULL));
  t_expect_none(p, l, 30);
  int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  ASSERT_SYS(c);
  int r = connect(c, (struct sockaddr *)&sa, sizeof sa);
  ASSERT_TRUE(r == 0 || errno == EINPROGRESS);
  t_wait_for(p, l, POLLER_IN, 2000, NULL);
  int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
  ASSERT_SYS(s);
  t_expect_none(p, l, 30);
  ASSERT_OK(poller_del(p, l));
  t_close(s);
  t_close(c);
  t_close(l);
  t_assert_clean(p);
}

/* ERR is always reported: a refused connect is reported with ERR to a
 * registration that asked for PRI only (select cannot tell ERR). */
TEST(err_always_reported) {
  if (T_BACKEND == POLLER_SELECT)
    SKIP("select cannot report ERR as such (see poller.h)");
  poller *p;
  t_open(&p);
  int c = refused_connect();
  ASSERT_OK(poller_add(p, c, POLLER_PRI, NULL));
  unsigned got = t_wait_for(p, c, POLLER_ERR, 2000, NULL);
  ASSERT_NOBITS(got, POLLER_OUT | POLLER_IN);
  ASSERT_OK(poller_del(p, c));
  t_close(c);
  t_assert_clean(p);
}

/* Lessons F13 (libuv#4992): a pty whose slave wrote and closed reports
 * HUP with data pending; every byte is still readable before the end
 * (EIO on a Linux pty master). */
TEST(pty_data_before_hup) {
  poller *p;
  t_open(&p);
  int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (m < 0)
    SKIP("posix_openpt: %s", strerror(errno));
  ASSERT_SYS(grantpt(m));
  ASSERT_SYS(unlockpt(m));
  int s = open(ptsname(m), O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_SYS(s);
  ASSERT_SYS(fcntl(m, F_SETFL, fcntl(m, F_GETFL) | O_NONBLOCK));
  struct termios tio;
  ASSERT_SYS(tcgetattr(s, &tio));
  cfmakeraw(&tio);
  ASSERT_SYS(tcsetattr(s, TCSANOW, &tio));
  ASSERT_OK(poller_add(p, m, POLLER_IN, &m));
  t_write(s, 2000);
  t_close(s);
  size_t total = 0;
  int end = 0;
  for (int round = 0; round < 100 && !end; round++) {
    t_wait_for(p, m, POLLER_IN, 2000, NULL);
    char buf[512]; /* small reads: the partial-read case */
    for (;;) {
      ssize_t r = read(m, buf, sizeof buf);
      if (r > 0) {
        total += (size_t)r;
        continue;
      }
      if (r == 0 || errno == EIO)
        end = 1;
      else
        ASSERT_EQ(errno, EAGAIN);
      break;
    }
  }
  ASSERT_TRUE(end);
  ASSERT_EQ(total, 2000);
  ASSERT_OK(poller_del(p, m));
  t_close(m);
  t_assert_clean(p);
}
