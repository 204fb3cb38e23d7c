/* SPDX-License-Identifier: MIT */
/*
 * regress_kqueue.c - contract tests written for defects found in the
 * kqueue backend (issue 8, items 20-25).  Each holds on every backend:
 * that is how they show that kqueue keeps the contract epoll keeps.
 */
#include "harness.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int tag_a, tag_b;

/* Read and write readiness of one fd make one report even when the
 * caller's buffer holds a single report (kqueue has one event per filter,
 * and fetching only `max` of them split the fd in two). */
TEST(read_write_merged_with_max_one) {
  poller *p;
  int a[2], b[2];
  t_open(&p);
  t_socketpair(a);
  t_socketpair(b);
  t_write(a[1], 1);
  t_write(b[1], 1);
  ASSERT_OK(poller_add(p, a[0], POLLER_IN | POLLER_OUT, &tag_a));
  ASSERT_OK(poller_add(p, b[0], POLLER_IN | POLLER_OUT, &tag_b));
  int seen_a = 0, seen_b = 0;
  for (int w = 0; w < 8; w++) {
    poller_event ev;
    ASSERT_EQ(poller_wait(p, &ev, 1, 1000), 1);
    ASSERT_TRUE(ev.fd == a[0] || ev.fd == b[0]);
    ASSERT_EQ(ev.events, POLLER_IN | POLLER_OUT);
    seen_a += ev.fd == a[0];
    seen_b += ev.fd == b[0];
  }
  ASSERT_GE(seen_a, 1);
  ASSERT_GE(seen_b, 1);
  ASSERT_OK(poller_del(p, a[0]));
  ASSERT_OK(poller_del(p, b[0]));
  for (int i = 0; i < 2; i++) {
    t_close(a[i]);
    t_close(b[i]);
  }
  t_assert_clean(p);
}

/* A pipe whose writer closed is a hang-up (HUP), not a half-close: epoll
 * and poll report HUP and no RDHUP for pipes, even when RDHUP is asked. */
TEST(pipe_writer_closed_hup_not_rdhup) {
  if (T_BACKEND == POLLER_SELECT)
    SKIP("select cannot report HUP or RDHUP (see poller.h)");
  poller *p;
  int pf[2];
  t_open(&p);
  t_pipe(pf);
  ASSERT_OK(poller_add(p, pf[0], POLLER_IN | POLLER_RDHUP, NULL));
  t_expect_none(p, pf[0], 30);
  t_close(pf[1]);
  unsigned got = t_wait_for(p, pf[0], POLLER_HUP, 2000, NULL);
  ASSERT_NOBITS(got, POLLER_RDHUP | POLLER_OUT);
  ASSERT_OK(poller_del(p, pf[0]));
  t_close(pf[0]);
  t_assert_clean(p);
}

/* A change the kernel refuses at a wait whose buffer has room for one
 * report: every wait still succeeds, the refused registration is reported
 * at most once (ERR|NVAL), the others keep being reported, and later
 * changes keep working (kqueue used to resend the refused change, and the
 * changes queued behind it, at every wait: every wait failed and the
 * change list overflowed). */
TEST(refused_change_small_buffer_keeps_waiting) {
  poller *p;
  int a[2], b[2];
  t_open(&p);
  t_socketpair(a);
  t_socketpair(b);
  ASSERT_OK(poller_add(p, a[0], POLLER_OUT, &tag_a));
  ASSERT_OK(poller_add(p, b[0], POLLER_OUT, &tag_b));
  ASSERT_OK(poller_flush(p));
  int na = a[0];
  t_close(na); /* closed before del: a new interest for it is refused */
  ASSERT_OK(poller_mod(p, na, POLLER_IN | POLLER_OUT, &tag_a));
  int got_a = 0, got_b = 0;
  for (int w = 0; w < 12; w++) {
    /* A change of b at every wait, queued behind a's. */
    ASSERT_OK(poller_mod(p, b[0], (w & 1) ? POLLER_OUT : POLLER_IN | POLLER_OUT,
                         &tag_b));
    poller_event ev;
    int n = poller_wait(p, &ev, 1, 1000);
    ASSERT_GE(n, 0);
    if (n == 0)
      continue;
    if (ev.fd == na) {
      ASSERT_EQ(ev.events, POLLER_ERR | POLLER_NVAL);
      ASSERT_TRUE(ev.data == &tag_a);
      got_a++;
    } else {
      ASSERT_EQ(ev.fd, b[0]);
      ASSERT_BITS(ev.events, POLLER_OUT);
      got_b++;
    }
  }
  ASSERT_LE(got_a, 1);
  ASSERT_GE(got_b, 4);
  int r = poller_del(p, na);
  ASSERT_TRUE(r == 0 || r == -ENOENT); /* gone already, or dropped now */
  ASSERT_OK(poller_del(p, b[0]));
  poller_event ev;
  ASSERT_EQ(poller_wait(p, &ev, 1, 0), 0);
  t_close(a[1]);
  t_close(b[0]);
  t_close(b[1]);
  t_assert_clean(p);
}

/* poller_reinit in the process that opened the poller releases the old
 * kernel object: repeated reinits leak no descriptor (kqueue made a new
 * kqueue each time and never closed the old one).  Some userspace
 * kqueues free a closed queue asynchronously, so the count is given time
 * to settle. */
TEST(reinit_in_process_releases_old_object) {
  poller *p;
  t_open(&p);
  int sv[2];
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag_a));
  ASSERT_OK(poller_reinit(p));
  int base = t_fd_count();
  for (int i = 0; i < 20; i++)
    ASSERT_OK(poller_reinit(p));
  double deadline = t_now_ms() + 3000;
  while (t_fd_count() > base && t_now_ms() < deadline)
    t_sleep_ms(10);
  ASSERT_LE(t_fd_count(), base); /* fewer: an older one was reaped late */
  /* And the registration still works. */
  t_write(sv[1], 1);
  poller_event ev;
  t_wait_for(p, sv[0], POLLER_IN, 2000, &ev);
  ASSERT_TRUE(ev.data == &tag_a);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* In a forked child that does not reinit, poller_close closes only what is
 * the poller's in the child.  A kqueue is not inherited by fork (kqueue(2)
 * on the BSDs and macOS), so its number is free in the child and may be
 * given to the next file the child opens: closing "the kqueue" closed that
 * file. */
TEST(fork_child_close_without_reinit_spares_files) {
  poller *p;
  t_open(&p);
  int pfd = poller_fd(p);
  if (pfd < 0) {
    poller_close(p);
    SKIP("%s has no kernel object of its own (poller_fd is -1)",
         T_BACKEND_NAME);
  }
  fflush(stdout);
  pid_t pid = fork();
  ASSERT_SYS(pid);
  if (pid == 0) {
    /* Files opened in the child take the lowest free numbers: the
     * poller's number is among them when it is free here. */
    int opened[64], n = 0, hit = 0;
    while (n < 64 && !hit) {
      int f = open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (f < 0)
        _exit(2);
      opened[n++] = f;
      hit = f >= pfd;
    }
    poller_close(p);
    for (int i = 0; i < n; i++)
      if (fcntl(opened[i], F_GETFD) == -1)
        _exit(1); /* the poller closed a file that was not its own */
    _exit(0);
  }
  int status;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 1)
    FAIL("poller_close in the child closed a file the child opened");
  ASSERT_EQ(WEXITSTATUS(status), 0);
  /* The parent's poller is untouched. */
  int sv[2];
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag_b));
  t_write(sv[1], 1);
  t_wait_for(p, sv[0], POLLER_IN, 2000, NULL);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* A ONESHOT registration whose fd was closed after its report is re-armed
 * by mod: the kernel cannot watch a closed fd, so the registration is
 * reported once as ERR|NVAL, never silently left unarmed (kqueue re-arms
 * with a delete and an add, and took the add's EBADF for the delete's). */
TEST(oneshot_rearm_closed_fd_reports_nval) {
  poller *p;
  int a[2];
  t_open(&p);
  t_socketpair(a);
  ASSERT_OK(poller_add(p, a[0], POLLER_IN | POLLER_ONESHOT, &tag_a));
  t_write(a[1], 1);
  t_wait_for(p, a[0], POLLER_IN, 2000, NULL);
  int na = a[0];
  t_close(na);
  ASSERT_OK(poller_mod(p, na, POLLER_IN | POLLER_ONESHOT, &tag_b));
  int nval = 0;
  poller_event out[8];
  for (int w = 0; w < 5; w++) {
    int n = poller_wait(p, out, 8, 20);
    ASSERT_GE(n, 0);
    for (int i = 0; i < n; i++) {
      ASSERT_EQ(out[i].fd, na);
      ASSERT_EQ(out[i].events, POLLER_ERR | POLLER_NVAL);
      ASSERT_TRUE(out[i].data == &tag_b);
      nval++;
    }
  }
  ASSERT_EQ(nval, 1);
  int r = poller_del(p, na);
  ASSERT_TRUE(r == 0 || r == -ENOENT); /* gone already, or dropped now */
  t_close(a[1]);
  t_assert_clean(p);
}

/* An interest without IN (RDHUP alone, PRI alone) on a socket with unread
 * ordinary data reports nothing and sleeps: kqueue's read filter, which
 * serves IN, PRI and RDHUP alike, fired at every wait for the data, and
 * the wait spun on reports the core then masked to nothing.  After the
 * peer's half-close, RDHUP alone is reported at every wait (level). */
TEST(interest_without_in_sleeps_on_data) {
  static const unsigned interests[] = {POLLER_RDHUP, POLLER_PRI};
  for (unsigned i = 0; i < 2; i++) {
    if (interests[i] == POLLER_RDHUP && T_BACKEND == POLLER_SELECT)
      continue; /* select cannot watch RDHUP (see poller.h) */
    poller *p;
    int a, b;
    t_open(&p);
    t_tcp_pair(&a, &b);
    ASSERT_OK(poller_add(p, a, interests[i], &tag_a));
    t_write(b, 10);
    poller_stats before, after;
    ASSERT_OK(poller_stats_get(p, &before));
    poller_event out[8];
    double t0 = t_now_ms();
    ASSERT_EQ(poller_wait(p, out, 8, 100), 0);
    ASSERT_GE(t_now_ms() - t0, 99);
    ASSERT_OK(poller_stats_get(p, &after));
    ASSERT_LE(after.syscalls - before.syscalls, 12);
    /* The peer's half-close: RDHUP alone is reported at every wait. */
    if (interests[i] == POLLER_RDHUP) {
      ASSERT_SYS(shutdown(b, SHUT_WR));
      for (int w = 0; w < 3; w++) {
        unsigned got = t_wait_for(p, a, POLLER_RDHUP, 2000, NULL);
        ASSERT_NOBITS(got, POLLER_IN | POLLER_HUP);
      }
    }
    ASSERT_OK(poller_del(p, a));
    t_close(a);
    t_close(b);
    t_assert_clean(p);
  }
}

/* ONESHOT with RDHUP alone: ordinary data that arrives first does not use
 * up the one report (kqueue's read filter fired for the data, EV_DISPATCH
 * disabled it, and the report was masked to nothing: the half-close that
 * followed was never reported). */
TEST(oneshot_rdhup_alone_survives_data) {
  if (T_BACKEND == POLLER_SELECT)
    SKIP("select cannot watch RDHUP (see poller.h)");
  poller *p;
  int a, b;
  t_open(&p);
  t_tcp_pair(&a, &b);
  ASSERT_OK(poller_add(p, a, POLLER_RDHUP | POLLER_ONESHOT, &tag_a));
  t_write(b, 10);
  t_expect_none(p, a, 50);
  ASSERT_SYS(shutdown(b, SHUT_WR));
  poller_event ev;
  t_wait_for(p, a, POLLER_RDHUP, 2000, &ev);
  ASSERT_TRUE(ev.data == &tag_a);
  t_expect_none(p, a, 50); /* once */
  ASSERT_OK(poller_del(p, a));
  t_close(a);
  t_close(b);
  t_assert_clean(p);
}

/* ONESHOT with more ready fds than max: every fd is reported exactly once,
 * readable and writable in one report, none lost (kqueue fetches more
 * events than fit and keeps the EV_DISPATCH ones it cannot report yet,
 * which the kernel would not repeat). */
TEST(oneshot_small_max_each_fd_once) {
  enum { N = 6 };
  poller *p;
  int sv[N][2];
  t_open(&p);
  for (int i = 0; i < N; i++) {
    t_socketpair(sv[i]);
    t_write(sv[i][1], 1);
    ASSERT_OK(poller_add(p, sv[i][0], POLLER_IN | POLLER_OUT | POLLER_ONESHOT,
                         &sv[i]));
  }
  int seen[N] = {0}, total = 0;
  for (int w = 0; w < 2 * N + 3 && total < N; w++) {
    poller_event ev;
    int n = poller_wait(p, &ev, 1, 500);
    ASSERT_GE(n, 0);
    if (n == 0)
      continue;
    int idx = (int)((int(*)[2])ev.data - sv);
    ASSERT_GE(idx, 0);
    ASSERT_LT(idx, N);
    ASSERT_EQ(ev.events, POLLER_IN | POLLER_OUT);
    ASSERT_EQ(seen[idx], 0);
    seen[idx] = 1;
    total++;
  }
  ASSERT_EQ(total, N);
  poller_event out[8];
  ASSERT_EQ(poller_wait(p, out, 8, 30), 0); /* all disarmed */
  for (int i = 0; i < N; i++) {
    ASSERT_OK(poller_del(p, sv[i][0]));
    t_close(sv[i][0]);
    t_close(sv[i][1]);
  }
  t_assert_clean(p);
}

/* One wait with room for them all reports every ready fd, as the standard
 * library's selectors test (test_above_fd_setsize) expects: libkqueue
 * returns at most 512 events per kevent(), and kqueue's wait stopped
 * there. */
TEST(one_wait_reports_every_ready_fd) {
  enum { N = 700 };
  poller *p;
  t_open(&p);
  static int sv[N][2];
  for (int i = 0; i < N; i++) {
    t_socketpair(sv[i]);
    ASSERT_OK(poller_add(p, sv[i][0], POLLER_OUT, NULL));
  }
  static poller_event out[N + 1];
  int n = poller_wait(p, out, N + 1, 2000);
  ASSERT_EQ(n, N);
  for (int i = 0; i < N; i++) {
    ASSERT_OK(poller_del(p, sv[i][0]));
    t_close(sv[i][0]);
    t_close(sv[i][1]);
  }
  t_assert_clean(p);
}
