/* SPDX-License-Identifier: MIT */
/*
 * regress_uring.c - regression tests for the io_uring defects of issue 8
 * (items 12-19).  Each pins a contract behaviour that epoll, poll and
 * select already keep, so each runs on every backend: passing everywhere
 * shows that the contract is the same.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* A listening TCP socket on 127.0.0.1 (an ephemeral port), non-blocking;
 * its address is stored in *sa. */
static int listener(struct sockaddr_in *sa) {
  int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  ASSERT_SYS(l);
  memset(sa, 0, sizeof *sa);
  sa->sin_family = AF_INET;
  sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof *sa;
  ASSERT_SYS(bind(l, (struct sockaddr *)sa, sizeof *sa));
  ASSERT_SYS(listen(l, 8));
  ASSERT_SYS(getsockname(l, (struct sockaddr *)sa, &len));
  return l;
}

/* Asserts that a blocking connect to sa is refused at once: nothing
 * listens there any more. */
static void assert_refused(const struct sockaddr_in *sa) {
  int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_SYS(c);
  int r = connect(c, (const struct sockaddr *)sa, sizeof *sa);
  int err = r < 0 ? errno : 0;
  close(c);
  if (r == 0)
    FAIL("connect succeeded: the closed listener is still alive");
  ASSERT_EQ(err, ECONNREFUSED);
}

/* Item 12: the del of an edge-triggered registration added since the last
 * wait, on a file that is ready, releases the file before poller_del
 * returns: after close, the pipe's writer gets EPIPE with no further
 * poller call. */
TEST(uring_del_fresh_et_releases_pipe) {
  poller *p;
  int fds[2];
  t_open(&p);
  signal(SIGPIPE, SIG_IGN);
  for (int i = 0; i < 20; i++) {
    t_pipe(fds);
    t_write(fds[1], 1);
    ASSERT_OK(poller_add(p, fds[0], POLLER_IN | POLLER_ET, NULL));
    if (i & 1)
      ASSERT_OK(poller_flush(p));
    ASSERT_OK(poller_del(p, fds[0]));
    t_close(fds[0]);
    ssize_t r = write(fds[1], "x", 1);
    int err = r < 0 ? errno : 0;
    ASSERT_EQ(r, -1);
    ASSERT_EQ(err, EPIPE);
    t_close(fds[1]);
  }
  t_assert_clean(p);
}

/* Item 12, for a socket and for every mode: after del and close, the peer
 * reads EOF at once. */
TEST(uring_del_then_close_peer_sees_eof) {
  static const unsigned modes[] = {POLLER_IN, POLLER_IN | POLLER_ET,
                                   POLLER_IN | POLLER_ONESHOT,
                                   POLLER_IN | POLLER_OUT | POLLER_ET};
  poller *p;
  t_open(&p);
  for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
    for (int waited = 0; waited < 3; waited++) {
      int sv[2];
      t_socketpair(sv);
      t_write(sv[1], 1);
      ASSERT_OK(poller_add(p, sv[0], modes[m], NULL));
      /* 0: del in the same submission as the add; 1: after a flush; 2:
       * after a report. */
      if (waited == 2)
        t_wait_for(p, sv[0], POLLER_IN, 2000, NULL);
      else if (waited == 1)
        ASSERT_OK(poller_flush(p));
      ASSERT_OK(poller_del(p, sv[0]));
      /* Closing with unread data would send a reset, not EOF. */
      ASSERT_EQ(t_drain(sv[0]), 1);
      t_close(sv[0]);
      char c;
      ssize_t r = read(sv[1], &c, 1);
      if (r != 0)
        FAIL("mode 0x%x waited %d: peer read %zd (%s), want EOF", modes[m],
             waited, r, r < 0 ? strerror(errno) : "data");
      t_close(sv[1]);
    }
  }
  t_assert_clean(p);
}

/* Item 18: a listener closed after poller_del is refused at once. */
TEST(uring_listener_closed_after_del_refuses) {
  poller *p;
  struct sockaddr_in sa;
  t_open(&p);
  for (int et = 0; et < 2; et++) {
    int l = listener(&sa);
    ASSERT_OK(poller_add(p, l, POLLER_IN | (et ? POLLER_ET : 0), NULL));
    poller_event out[4];
    ASSERT_EQ(poller_wait(p, out, 4, 0), 0);
    ASSERT_OK(poller_del(p, l));
    t_close(l);
    assert_refused(&sa);
  }
  t_assert_clean(p);
}

/* Item 18: poller_close releases every file before it returns: a listener
 * closed (without poller_del) before poller_close is refused right after
 * poller_close. */
TEST(uring_listener_closed_then_poller_close_refuses) {
  int fds0 = t_fd_count();
  for (int i = 0; i < 10; i++) {
    poller *p;
    struct sockaddr_in sa;
    t_open(&p);
    int l = listener(&sa);
    ASSERT_OK(poller_add(p, l, POLLER_IN | (i & 1 ? POLLER_ET : 0), NULL));
    poller_event out[4];
    ASSERT_EQ(poller_wait(p, out, 4, 0), 0);
    t_close(l);
    poller_close(p);
    assert_refused(&sa);
  }
  ASSERT_EQ(t_fd_count(), fds0);
}

/* Item 18: a forked child that inherited the poller does not keep the
 * parent's files alive: after the child closed its own copy of the
 * listener, the parent's close and poller_close leave nothing listening,
 * while the child lives on. */
TEST(uring_fork_child_does_not_keep_listener) {
  poller *p;
  struct sockaddr_in sa;
  int go[2], ready[2];
  t_open(&p);
  int l = listener(&sa);
  ASSERT_OK(poller_add(p, l, POLLER_IN, NULL));
  poller_event out[4];
  ASSERT_EQ(poller_wait(p, out, 4, 0), 0);
  ASSERT_SYS(pipe2(go, O_CLOEXEC));
  ASSERT_SYS(pipe2(ready, O_CLOEXEC));
  fflush(stdout);
  pid_t pid = fork();
  ASSERT_SYS(pid);
  if (pid == 0) {
    close(l);
    close(go[1]);
    close(ready[0]);
    (void)!write(ready[1], "r", 1);
    char c;
    (void)!read(go[0], &c, 1); /* lives until the parent is done */
    _exit(0);
  }
  t_close(go[0]);
  t_close(ready[1]);
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  /* Closed without poller_del: poller_close must release it. */
  t_close(l);
  poller_close(p);
  assert_refused(&sa);
  t_close(go[1]);
  int status;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  t_close(ready[0]);
}

/* Item 18: a child that closes the inherited poller without reinit does
 * not take the parent's registrations away, and a child that reinits gets
 * a working poller. */
TEST(uring_fork_child_close_leaves_parent_armed) {
  poller *p;
  int a[2], b[2];
  t_open(&p);
  t_pipe(a);
  t_pipe(b);
  ASSERT_OK(poller_add(p, a[0], POLLER_IN, NULL));
  ASSERT_OK(poller_add(p, b[0], POLLER_IN | POLLER_ET, NULL));
  poller_event out[4];
  ASSERT_EQ(poller_wait(p, out, 4, 0), 0);
  for (int reinit = 0; reinit < 2; reinit++) {
    fflush(stdout);
    pid_t pid = fork();
    ASSERT_SYS(pid);
    if (pid == 0) {
      if (reinit) {
        if (poller_reinit(p) != 0)
          _exit(2);
        int c[2];
        if (pipe2(c, O_NONBLOCK) < 0 || poller_add(p, c[0], POLLER_IN, 0))
          _exit(3);
        if (write(c[1], "x", 1) != 1)
          _exit(4);
        int n = poller_wait(p, out, 4, 5000);
        if (n != 1 || out[0].fd != c[0])
          _exit(5);
        if (poller_del(p, a[0]) || poller_del(p, b[0]))
          _exit(6);
      }
      poller_close(p);
      _exit(0);
    }
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      FAIL("child (reinit %d) failed: status 0x%x", reinit, status);
    t_write(a[1], 1);
    t_write(b[1], 1);
    int seen_a = 0, seen_b = 0;
    double t0 = t_now_ms();
    while (!(seen_a && seen_b) && t_now_ms() - t0 < 5000) {
      int n = poller_wait(p, out, 4, 100);
      ASSERT_GE(n, 0);
      for (int i = 0; i < n; i++) {
        seen_a |= out[i].fd == a[0];
        seen_b |= out[i].fd == b[0];
      }
    }
    if (!seen_a || !seen_b)
      FAIL("round %d: a reported %d, b reported %d", reinit, seen_a, seen_b);
    t_drain(a[0]);
    t_drain(b[0]);
    /* Emulated ET (select, poll) learns that b is no longer ready only
     * from a wait. */
    ASSERT_EQ(poller_wait(p, out, 4, 0), 0);
  }
  ASSERT_OK(poller_del(p, a[0]));
  ASSERT_OK(poller_del(p, b[0]));
  t_close(a[0]);
  t_close(a[1]);
  t_close(b[0]);
  t_close(b[1]);
  t_assert_clean(p);
}

/* Item 13: a level report describes readiness at the wait: data that
 * arrived and was read between two waits is not reported. */
TEST(uring_level_no_report_after_drain_between_waits) {
  poller *p;
  int fds[2];
  t_open(&p);
  t_pipe(fds);
  ASSERT_OK(poller_add(p, fds[0], POLLER_IN, NULL));
  poller_event out[4];
  for (int i = 0; i < 20; i++) {
    ASSERT_EQ(poller_wait(p, out, 4, 0), 0);
    t_write(fds[1], 1);
    ASSERT_EQ(t_drain(fds[0]), 1);
    int n = poller_wait(p, out, 4, 20);
    if (n != 0)
      FAIL("round %d: empty pipe reported (0x%x)", i, out[0].events);
  }
  ASSERT_OK(poller_del(p, fds[0]));
  t_close(fds[0]);
  t_close(fds[1]);
  t_assert_clean(p);
}

/* Item 13: reports left over for want of room (max) describe readiness
 * at the wait that delivers them: drained files are not reported. */
TEST(uring_level_leftover_not_reported_after_drain) {
  poller *p;
  int a[2], b[2], c[2];
  t_open(&p);
  t_pipe(a);
  t_pipe(b);
  t_pipe(c);
  ASSERT_OK(poller_add(p, a[0], POLLER_IN, NULL));
  ASSERT_OK(poller_add(p, b[0], POLLER_IN, NULL));
  ASSERT_OK(poller_add(p, c[0], POLLER_IN, NULL));
  poller_event out[4];
  ASSERT_EQ(poller_wait(p, out, 4, 0), 0);
  for (int i = 0; i < 10; i++) {
    t_write(a[1], 1);
    t_write(b[1], 1);
    t_write(c[1], 1);
    /* Wait until some report arrives, with room for one only. */
    int n = 0;
    for (int k = 0; k < 100 && n == 0; k++)
      n = poller_wait(p, out, 1, 50);
    ASSERT_EQ(n, 1);
    t_drain(a[0]);
    t_drain(b[0]);
    t_drain(c[0]);
    n = poller_wait(p, out, 4, 20);
    if (n != 0)
      FAIL("round %d: drained fd %d reported (0x%x)", i, out[0].fd,
           out[0].events);
  }
  ASSERT_OK(poller_del(p, a[0]));
  ASSERT_OK(poller_del(p, b[0]));
  ASSERT_OK(poller_del(p, c[0]));
  int *all[] = {a, b, c};
  for (int i = 0; i < 3; i++) {
    t_close(all[i][0]);
    t_close(all[i][1]);
  }
  t_assert_clean(p);
}

/* Item 13: a changed interest reports everything ready at the wait, data
 * that arrived before the change included. */
TEST(uring_mod_reports_readiness_at_wait) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_OUT, NULL));
  for (int i = 0; i < 10; i++) {
    unsigned ev = t_wait_for(p, sv[0], POLLER_OUT, 2000, NULL);
    ASSERT_NOBITS(ev, POLLER_IN);
    t_write(sv[1], 1);
    ASSERT_OK(poller_mod(p, sv[0], POLLER_IN | POLLER_OUT, NULL));
    ev = t_wait_once(p, sv[0], 2000);
    ASSERT_BITS(ev, POLLER_IN | POLLER_OUT);
    ASSERT_EQ(t_drain(sv[0]), 1);
    ASSERT_OK(poller_mod(p, sv[0], POLLER_OUT, NULL));
  }
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* A registration left out of a full batch and then changed is checked
 * against its new interest: io_uring keeps such a candidate (built with
 * the mask the kernel held when it became one) for the next wait, which
 * must poll it with the mask held then, or a readiness that only the new
 * interest sees is missed. */
TEST(leftover_then_mod_reports_new_interest) {
  poller *p;
  int a[2], b[2];
  t_open(&p);
  t_socketpair(a);
  t_socketpair(b);
  ASSERT_OK(poller_add(p, a[0], POLLER_IN, NULL));
  ASSERT_OK(poller_add(p, b[0], POLLER_IN, NULL));
  t_write(a[1], 1);
  t_write(b[1], 1);
  /* Room for one: the other is left out, still readable. */
  poller_event out[4];
  int n = 0;
  for (int k = 0; k < 100 && n == 0; k++)
    n = poller_wait(p, out, 1, 50);
  ASSERT_EQ(n, 1);
  int first = out[0].fd, left = first == a[0] ? b[0] : a[0];
  /* The first stops being readable; the one left out now asks for OUT
   * only (a socket is writable), no longer for IN. */
  ASSERT_EQ(t_drain(first), 1);
  ASSERT_OK(poller_mod(p, left, POLLER_OUT, NULL));
  n = poller_wait(p, out, 4, 2000);
  ASSERT_EQ(n, 1);
  ASSERT_EQ(out[0].fd, left);
  ASSERT_BITS(out[0].events, POLLER_OUT);
  ASSERT_NOBITS(out[0].events, POLLER_IN);
  ASSERT_OK(poller_del(p, a[0]));
  ASSERT_OK(poller_del(p, b[0]));
  for (int i = 0; i < 2; i++) {
    t_close(a[i]);
    t_close(b[i]);
  }
  t_assert_clean(p);
}

/* The system calls of one wait of timeout_ms that must report nothing. */
static unsigned long long quiet_wait_syscalls(poller *p, int timeout_ms) {
  poller_stats a, b;
  poller_event out[4];
  ASSERT_OK(poller_stats_get(p, &a));
  int n = poller_wait(p, out, 4, timeout_ms);
  ASSERT_OK(poller_stats_get(p, &b));
  if (n != 0)
    FAIL("reported fd %d (0x%x), want nothing", out[0].fd, out[0].events);
  return b.syscalls - a.syscalls;
}

/* Item 14: a level registration whose interest lacks IN and RDHUP, on a
 * socket whose peer shut down its writing half, sleeps: a wait with
 * nothing to report makes a bounded number of system calls. */
TEST(uring_half_closed_without_in_sleeps) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_SYS(shutdown(sv[1], SHUT_WR));
  ASSERT_OK(poller_add(p, sv[0], POLLER_PRI, NULL));
  (void)quiet_wait_syscalls(p, 0);
  unsigned long long sc = quiet_wait_syscalls(p, 200);
  if (sc > 20)
    FAIL("PRI on a half-closed socket: %llu system calls in one wait", sc);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* Item 14, OUT on a full socket whose peer half-closed. */
TEST(uring_half_closed_full_out_sleeps) {
  poller *p;
  int a, b;
  t_open(&p);
  t_tcp_pair(&a, &b);
  /* Fill a's send path until the kernel refuses more. */
  static char buf[65536];
  for (;;) {
    ssize_t r = write(a, buf, sizeof buf);
    if (r < 0) {
      ASSERT_EQ(errno, EAGAIN);
      break;
    }
  }
  ASSERT_SYS(shutdown(b, SHUT_WR));
  ASSERT_OK(poller_add(p, a, POLLER_IN, NULL));
  t_wait_for(p, a, POLLER_IN, 5000, NULL); /* the FIN has arrived */
  ASSERT_OK(poller_mod(p, a, POLLER_OUT, NULL));
  /* a may become writable if the peer's window opens; then one report is
   * fine, but the wait must never spin. */
  poller_stats s0, s1;
  poller_event out[4];
  ASSERT_OK(poller_stats_get(p, &s0));
  int n = poller_wait(p, out, 4, 200);
  ASSERT_OK(poller_stats_get(p, &s1));
  ASSERT_GE(n, 0);
  if (n == 0 && s1.syscalls - s0.syscalls > 20)
    FAIL("OUT on a full half-closed socket: %llu system calls in one wait",
         s1.syscalls - s0.syscalls);
  ASSERT_OK(poller_del(p, a));
  t_close(a);
  t_close(b);
  t_assert_clean(p);
}

/* Item 15: ordinary data on a socket registered for IN|PRI is reported as
 * IN, not PRI. */
TEST(uring_in_pri_ordinary_data_is_in) {
  poller *p;
  int a, b;
  t_open(&p);
  t_tcp_pair(&a, &b);
  ASSERT_OK(poller_add(p, b, POLLER_IN | POLLER_PRI, NULL));
  for (int i = 0; i < 5; i++) {
    poller_event out[4];
    ASSERT_EQ(poller_wait(p, out, 4, 0), 0);
    t_write(a, 1);
    unsigned ev = t_wait_for(p, b, POLLER_IN, 5000, NULL);
    ASSERT_NOBITS(ev, POLLER_PRI);
    ASSERT_EQ(t_drain(b), 1);
  }
  ASSERT_OK(poller_del(p, b));
  t_close(a);
  t_close(b);
  t_assert_clean(p);
}

/* Item 16: /dev/null (a device without a poll method) is always ready,
 * as select and poll say: IN|OUT at every level wait, an edge once, never
 * ERR or NVAL, and nothing for an interest it cannot report. */
TEST(uring_dev_null_always_ready) {
  poller *p;
  t_open(&p);
  int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  ASSERT_SYS(fd);
  poller_event out[4];
  ASSERT_OK(poller_add(p, fd, POLLER_IN | POLLER_OUT, NULL));
  for (int i = 0; i < 3; i++) {
    unsigned ev = t_wait_once(p, fd, 1000);
    ASSERT_EQ(ev, POLLER_IN | POLLER_OUT);
  }
  ASSERT_OK(poller_mod(p, fd, POLLER_IN | POLLER_ET, NULL));
  ASSERT_EQ(t_wait_once(p, fd, 1000), POLLER_IN);
  ASSERT_EQ(t_wait_once(p, fd, 0), 0);
  ASSERT_OK(poller_del(p, fd));
  ASSERT_OK(poller_add(p, fd, POLLER_PRI, NULL));
  ASSERT_EQ(poller_wait(p, out, 4, 50), 0);
  ASSERT_OK(poller_del(p, fd));
  t_close(fd);
  t_assert_clean(p);
}

struct writer {
  int fd;
  atomic_int round, done;
};

static void *writer_main(void *arg) {
  struct writer *w = arg;
  for (int r = 1;; r++) {
    while (atomic_load(&w->round) < r)
      if (atomic_load(&w->round) < 0)
        return NULL;
    if (write(w->fd, "x", 1) != 1)
      return NULL;
    atomic_store(&w->done, r);
  }
}

/* Item 17: a zero-timeout wait reports an fd that another thread made
 * ready before the wait began. */
TEST(uring_zero_timeout_sees_other_thread) {
  poller *p;
  int fds[2];
  t_open(&p);
  t_pipe(fds);
  ASSERT_OK(poller_add(p, fds[0], POLLER_IN, NULL));
  struct writer w = {fds[1], 0, 0};
  pthread_t th;
  ASSERT_OK(pthread_create(&th, NULL, writer_main, &w));
  int misses = 0;
  poller_event out[4];
  for (int r = 1; r <= 200; r++) {
    ASSERT_EQ(poller_wait(p, out, 4, 0), 0);
    atomic_store(&w.round, r);
    while (atomic_load(&w.done) < r)
      ;
    int n = poller_wait(p, out, 4, 0);
    if (n != 1)
      misses++;
    ASSERT_EQ(t_drain(fds[0]), 1);
  }
  atomic_store(&w.round, -1);
  ASSERT_OK(pthread_join(th, NULL));
  if (misses)
    FAIL("%d of 200 zero-timeout waits missed a ready pipe", misses);
  ASSERT_OK(poller_del(p, fds[0]));
  t_close(fds[0]);
  t_close(fds[1]);
  t_assert_clean(p);
}

/* Item 17: an fd at or above 2^24 is reported (where the fd limit allows
 * one). */
TEST(uring_large_fd_reported) {
  struct rlimit rl;
  ASSERT_SYS(getrlimit(RLIMIT_NOFILE, &rl));
  const int big = (1 << 24) + 3;
  if (rl.rlim_cur <= (rlim_t)big) {
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
    ASSERT_SYS(getrlimit(RLIMIT_NOFILE, &rl));
    if (rl.rlim_cur <= (rlim_t)big)
      SKIP("RLIMIT_NOFILE %llu does not reach fd %d",
           (unsigned long long)rl.rlim_cur, big);
  }
  poller *p;
  int fds[2];
  t_open(&p);
  t_pipe(fds);
  ASSERT_EQ(dup3(fds[0], big, O_CLOEXEC), big);
  t_close(fds[0]);
  ASSERT_OK(poller_add(p, big, POLLER_IN, NULL));
  t_write(fds[1], 1);
  t_wait_for(p, big, POLLER_IN, 5000, NULL);
  ASSERT_OK(poller_del(p, big));
  t_close(big);
  t_close(fds[1]);
  t_assert_clean(p);
}

/* Item 19: an fd reported by one wait and ready again before another fd
 * (which stayed armed) is reported first, as epoll orders them. */
TEST(uring_report_order_ready_first) {
  poller *p;
  int a[2], b[2];
  t_open(&p);
  t_socketpair(a);
  t_socketpair(b);
  ASSERT_OK(poller_add(p, a[0], POLLER_IN, NULL));
  ASSERT_OK(poller_add(p, b[0], POLLER_IN, NULL));
  poller_event out[4];
  int first = 0;
  for (int i = 0; i < 20; i++) {
    t_write(a[1], 1);
    t_wait_for(p, a[0], POLLER_IN, 2000, NULL);
    ASSERT_EQ(t_drain(a[0]), 1);
    t_write(a[1], 1);
    t_write(b[1], 1);
    int n = 0;
    for (int k = 0; k < 100 && n < 2; k++) {
      int r = poller_wait(p, out + n, 4 - n, 20);
      ASSERT_GE(r, 0);
      n += r;
    }
    ASSERT_EQ(n, 2);
    if (out[0].fd == a[0])
      first++;
    t_drain(a[0]);
    t_drain(b[0]);
    /* Emulated ET (select, poll) learns that b is no longer ready only
     * from a wait. */
    ASSERT_EQ(poller_wait(p, out, 4, 0), 0);
  }
  if (first != 20)
    FAIL("the fd ready first was reported first in %d of 20 rounds", first);
  ASSERT_OK(poller_del(p, a[0]));
  ASSERT_OK(poller_del(p, b[0]));
  t_close(a[0]);
  t_close(a[1]);
  t_close(b[0]);
  t_close(b[1]);
  t_assert_clean(p);
}

struct opener {
  poller *p;
  int fd;
  int ok;
};

static void *opener_main(void *arg) {
  struct opener *o = arg;
  poller_event out[4];
  o->ok = poller_add(o->p, o->fd, POLLER_IN, NULL) == 0 &&
          poller_wait(o->p, out, 4, 0) == 0;
  return NULL;
}

/* One thread at a time may use a poller: registrations made (and sent to
 * the kernel) by a thread that has exited since keep working.  io_uring
 * cancels the requests of a thread when it exits. */
TEST(uring_registration_survives_thread_exit) {
  poller *p;
  int fds[2];
  t_open(&p);
  t_pipe(fds);
  struct opener o = {p, fds[0], 0};
  pthread_t th;
  ASSERT_OK(pthread_create(&th, NULL, opener_main, &o));
  ASSERT_OK(pthread_join(th, NULL));
  ASSERT_TRUE(o.ok);
  for (int i = 0; i < 3; i++) {
    t_write(fds[1], 1);
    t_wait_for(p, fds[0], POLLER_IN, 5000, NULL);
    ASSERT_EQ(t_drain(fds[0]), 1);
  }
  /* The wakeup channel too: a pending wakeup ends a wait without timeout
   * (a lost one would hang it until the harness's timeout). */
  ASSERT_EQ(poller_wakeup(p), 0);
  poller_event out[4];
  ASSERT_EQ(poller_wait(p, out, 4, -1), 0);
  ASSERT_OK(poller_del(p, fds[0]));
  t_close(fds[0]);
  t_close(fds[1]);
  t_assert_clean(p);
}

/* One report per fd per wait, also when the core tops up a batch that the
 * wakeup channel took a slot of (an always-ready file keeps the channel
 * signalled for poller_fd's sake): level fds reported by the first part
 * of the batch are not reported again by the second. */
TEST(uring_topped_up_batch_reports_each_fd_once) {
  poller *p;
  int a[2], b[2];
  t_open(&p);
  char path[] = "/tmp/poller-regress-XXXXXX";
  int f = mkstemp(path);
  ASSERT_SYS(f);
  ASSERT_SYS(unlink(path));
  t_pipe(a);
  t_pipe(b);
  t_write(a[1], 1);
  t_write(b[1], 1);
  ASSERT_OK(poller_add(p, f, POLLER_IN, NULL));
  ASSERT_OK(poller_add(p, a[0], POLLER_IN, NULL));
  ASSERT_OK(poller_add(p, b[0], POLLER_IN, NULL));
  poller_event out[4];
  for (int i = 0; i < 60; i++) {
    int max = 2 + i % 3;
    int n = poller_wait(p, out, max, 100);
    ASSERT_GE(n, 1);
    for (int j = 0; j < n; j++)
      for (int k = j + 1; k < n; k++)
        if (out[j].fd == out[k].fd)
          FAIL("wait %d (max %d): fd %d reported twice", i, max, out[j].fd);
  }
  ASSERT_OK(poller_del(p, f));
  ASSERT_OK(poller_del(p, a[0]));
  ASSERT_OK(poller_del(p, b[0]));
  t_close(f);
  t_close(a[0]);
  t_close(a[1]);
  t_close(b[0]);
  t_close(b[1]);
  t_assert_clean(p);
}

/* More ready fds than io_uring's completion ring holds are all reported
 * by one wait with room for them (the rest wait in the kernel's overflow
 * list), as epoll reports them. */
TEST_TIMEOUT(uring_many_ready_one_wait, 60) {
  struct rlimit rl;
  ASSERT_SYS(getrlimit(RLIMIT_NOFILE, &rl));
  long n = ((long)rl.rlim_cur - t_fd_count() - 50) / 2;
  if (n > 5000)
    n = 5000;
  if (n < 100)
    SKIP("RLIMIT_NOFILE %llu is too low", (unsigned long long)rl.rlim_cur);
  poller *p;
  t_open(&p);
  int(*fds)[2] = calloc((size_t)n, sizeof *fds);
  poller_event *out = calloc((size_t)n + 1, sizeof *out);
  ASSERT_TRUE(fds && out);
  for (long i = 0; i < n; i++) {
    t_pipe(fds[i]);
    ASSERT_OK(poller_add(p, fds[i][1], POLLER_OUT, NULL));
  }
  int got = poller_wait(p, out, (int)n + 1, 5000);
  ASSERT_EQ(got, n);
  for (long i = 0; i < n; i++) {
    ASSERT_OK(poller_del(p, fds[i][1]));
    t_close(fds[i][0]);
    t_close(fds[i][1]);
  }
  free(fds);
  free(out);
  t_assert_clean(p);
}

/* A file that became ready is reported at the next wait even when the
 * wakeup channel, kept signalled for an always-ready file, took the room
 * left in out[] first (io_uring: its completion came before the file's). */
TEST(uring_ready_fd_not_hidden_by_wakeup_channel) {
  poller *p;
  int fds[2];
  t_open(&p);
  char path[] = "/tmp/poller-regress-XXXXXX";
  int f = mkstemp(path);
  ASSERT_SYS(f);
  ASSERT_SYS(unlink(path));
  t_pipe(fds);
  ASSERT_OK(poller_add(p, f, POLLER_IN, NULL));
  ASSERT_OK(poller_add(p, fds[1], POLLER_IN | POLLER_PRI, NULL));
  poller_event out[2];
  for (int i = 0; i < 4; i++)
    ASSERT_EQ(poller_wait(p, out, 2, 0), 1); /* the file only */
  t_close(fds[0]);                           /* the writer now shows ERR */
  int n = poller_wait(p, out, 2, 1000);
  ASSERT_EQ(n, 2);
  int w = out[0].fd == fds[1] ? 0 : 1;
  ASSERT_EQ(out[w].fd, fds[1]);
  if (T_BACKEND != POLLER_SELECT) /* select cannot tell an error */
    ASSERT_BITS(out[w].events, POLLER_ERR);
  ASSERT_OK(poller_del(p, f));
  ASSERT_OK(poller_del(p, fds[1]));
  t_close(f);
  t_close(fds[1]);
  t_assert_clean(p);
}

/* Sends one byte of urgent data (MSG_OOB) from a to b; returns 0, or
 * the errno of a kernel that refuses it on this kind of socket. */
static int send_oob(int a) {
  ssize_t r = send(a, "!", 1, MSG_OOB);
  if (r < 0)
    return errno;
  ASSERT_EQ(r, 1);
  return 0;
}

/* Waits until fd is reported with PRI and asserts the report has nothing
 * the PRI-only interest does not ask for (ERR and HUP aside, which never
 * come here); then reads the urgent byte and asserts that a level
 * registration falls silent. */
static void pri_only_report_then_read(poller *p, int fd, unsigned mode) {
  poller_event ev;
  t_wait_for(p, fd, POLLER_PRI, 5000, &ev);
  ASSERT_NOBITS(ev.events, POLLER_IN | POLLER_OUT | POLLER_RDHUP);
  char c = 0;
  ASSERT_EQ(recv(fd, &c, 1, MSG_OOB), 1);
  ASSERT_EQ(c, '!');
  if (mode == POLLER_ONESHOT)
    ASSERT_OK(poller_mod(p, fd, POLLER_PRI | POLLER_ONESHOT, NULL));
  t_expect_none(p, fd, 30);
}

/* A registration whose interest is PRI alone (no IN) is reported when TCP
 * urgent data arrives, in every mode, as poll(2), select and epoll report
 * it.  On io_uring a poll request for POLLPRI alone was never woken by it:
 * the backend used to need IN in the interest. */
TEST(uring_pri_only_tcp_urgent_reported) {
  static const unsigned modes[] = {0, POLLER_ET, POLLER_ONESHOT};
  for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
    poller *p;
    int a, b;
    t_open(&p);
    t_tcp_pair(&a, &b);
    ASSERT_OK(poller_add(p, b, POLLER_PRI | modes[m], NULL));
    t_expect_none(p, b, 30);
    ASSERT_EQ(send_oob(a), 0);
    pri_only_report_then_read(p, b, modes[m]);
    ASSERT_OK(poller_del(p, b));
    t_close(a);
    t_close(b);
    t_assert_clean(p);
  }
}

/* The same on a unix stream socket pair, where the kernel supports
 * MSG_OOB on AF_UNIX (Linux 5.15, CONFIG_AF_UNIX_OOB). */
TEST(uring_pri_only_unix_oob_reported) {
  static const unsigned modes[] = {0, POLLER_ET, POLLER_ONESHOT};
  for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
    poller *p;
    int sv[2];
    t_open(&p);
    t_socketpair(sv);
    ASSERT_OK(poller_add(p, sv[0], POLLER_PRI | modes[m], NULL));
    t_expect_none(p, sv[0], 30);
    int err = send_oob(sv[1]);
    if (err == EOPNOTSUPP || err == EINVAL) {
      ASSERT_OK(poller_del(p, sv[0]));
      t_close(sv[0]);
      t_close(sv[1]);
      poller_close(p);
      SKIP("this kernel refuses MSG_OOB on unix sockets (%s)", strerror(err));
    }
    ASSERT_EQ(err, 0);
    pri_only_report_then_read(p, sv[0], modes[m]);
    ASSERT_OK(poller_del(p, sv[0]));
    t_close(sv[0]);
    t_close(sv[1]);
    t_assert_clean(p);
  }
}

/* A PRI-only registration on a socket that receives ordinary data reports
 * nothing and its waits sleep: a wait of 200 ms makes a bounded number of
 * system calls, whether the data arrived before the wait or stays unread
 * across it.  Urgent data arriving after it is still reported. */
TEST(uring_pri_only_ordinary_data_sleeps) {
  poller *p;
  int a, b;
  t_open(&p);
  t_tcp_pair(&a, &b);
  ASSERT_OK(poller_add(p, b, POLLER_PRI, NULL));
  for (int i = 0; i < 3; i++) {
    t_write(a, 1);
    unsigned long long sc = quiet_wait_syscalls(p, 200);
    if (sc > 20)
      FAIL("PRI-only, data arrived: %llu system calls in one wait", sc);
    sc = quiet_wait_syscalls(p, 200);
    if (sc > 20)
      FAIL("PRI-only, data unread: %llu system calls in one wait", sc);
  }
  ASSERT_EQ(send_oob(a), 0);
  pri_only_report_then_read(p, b, 0);
  ASSERT_OK(poller_del(p, b));
  t_close(a);
  t_close(b);
  t_assert_clean(p);
}

/* A PRI-only registration whose number was given a regular file by dup2
 * (always readable, never urgent data) and then changed by poller_mod:
 * its waits sleep, and report nothing but, at most once, the kernel's
 * refusal of the change (ERR|NVAL, as epoll refuses a regular file).  On
 * io_uring a request that also asks for IN ends at once on such a file;
 * renewing it at every wait was a spin (difftest seed 1796021771). */
TEST(uring_pri_only_dup2_regular_file_sleeps) {
  poller *p;
  int pf[2];
  t_open(&p);
  t_pipe(pf);
  ASSERT_OK(poller_add(p, pf[0], POLLER_RDHUP, NULL));
  char path[] = "/tmp/poller-test-XXXXXX";
  int f = mkstemp(path);
  ASSERT_SYS(f);
  ASSERT_SYS(unlink(path));
  ASSERT_SYS(dup2(f, pf[0]));
  t_close(f);
  ASSERT_OK(poller_mod(p, pf[0], POLLER_PRI, NULL));
  int refused = 0;
  for (int i = 0; i < 4; i++) {
    poller_stats a, b;
    poller_event out[4];
    ASSERT_OK(poller_stats_get(p, &a));
    int n = poller_wait(p, out, 4, 100);
    ASSERT_OK(poller_stats_get(p, &b));
    ASSERT_GE(n, 0);
    if (b.syscalls - a.syscalls > 20)
      FAIL("PRI-only on a regular file: %llu system calls in one wait",
           b.syscalls - a.syscalls);
    if (n > 0) {
      ASSERT_EQ(n, 1);
      ASSERT_EQ(out[0].fd, pf[0]);
      ASSERT_EQ(out[0].events, POLLER_ERR | POLLER_NVAL);
      ASSERT_EQ(refused++, 0);
    }
  }
  ASSERT_OK(poller_del(p, pf[0]));
  t_close(pf[0]);
  t_close(pf[1]);
  t_assert_clean(p);
}
