/* SPDX-License-Identifier: MIT */
/*
 * closed.c - conformance group E: closed, dup'ed and reused fds
 * (issue 2's poller_del line; libuv#1468, swift-nio#341, cpython#83420,
 * h2o#1427).
 */
#include "harness.h"

#include <fcntl.h>
#include <unistd.h>

static int tag_old, tag_new;

/* Moves a fresh socketpair's first end onto the number `fd` (which must be
 * free), so the number is reused by a different file.  sv[1] is its peer. */
static void reuse_number(int fd, int sv[2]) {
  t_socketpair(sv);
  if (sv[0] == fd)
    return; /* the lowest free number: reused already */
  T_POSIX_ONLY("Winsock did not reuse the socket value, and a socket "
               "cannot be moved to a chosen one");
  ASSERT_EQ(dup3(sv[0], fd, O_CLOEXEC), fd);
  t_close(sv[0]);
  sv[0] = fd;
}

/* del then close: nothing of the registration is reported afterwards,
 * even with readiness pending at the time of del (the removal is
 * synchronous; libuv#4323). */
TEST(del_then_close) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag_old));
  t_write(sv[1], 1);
  t_wait_for(p, sv[0], POLLER_IN, 2000, NULL);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  poller_event out[8];
  ASSERT_EQ(poller_wait(p, out, 8, 50), 0);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* E33: close first, then del: del succeeds and frees the key
 * (cpython#83420), with or without a wait in between. */
TEST(unregister_after_close) {
  poller *p;
  int a[2], b[2];
  t_open(&p);
  t_socketpair(a);
  t_socketpair(b);
  ASSERT_OK(poller_add(p, a[0], POLLER_IN, &tag_old));
  ASSERT_OK(poller_add(p, b[0], POLLER_IN | POLLER_OUT, &tag_new));
  ASSERT_OK(poller_flush(p));
  t_close(a[0]);
  t_close(b[0]);
  ASSERT_OK(poller_del(p, a[0]));
  poller_event out[8];
  /* select and poll may report b's closed fd once (ERR|NVAL).  io_uring
   * may also deliver the one report its request posted before the close
   * (b was writable at the flush): a request holds the file, not the
   * number, and its completion is already in the ring. */
  int n = poller_wait(p, out, 8, 20);
  ASSERT_GE(n, 0);
  for (int i = 0; i < n; i++) {
    ASSERT_EQ(out[i].fd, b[0]);
    if (T_BACKEND == POLLER_URING && !(out[i].events & POLLER_NVAL))
      ASSERT_EQ(out[i].events, POLLER_OUT);
    else
      ASSERT_EQ(out[i].events, POLLER_ERR | POLLER_NVAL);
  }
  ASSERT_OK(poller_del(p, b[0]));
  ASSERT_EQ(poller_count(p), 0);
  ASSERT_ERR(poller_del(p, a[0]), -ENOENT);
  ASSERT_EQ(poller_wait(p, out, 8, 20), 0);
  t_close(a[1]);
  t_close(b[1]);
  t_assert_clean(p);
}

/* E34: the number of a closed, still registered fd is reused by a new
 * socket: add of the new file is -EEXIST while the old key stands; del of
 * the old key does not disturb the new file; the new registration gets
 * its own events only. */
TEST(unregister_after_close_and_reuse) {
  poller *p;
  int a[2], b[2];
  t_open(&p);
  t_socketpair(a);
  ASSERT_OK(poller_add(p, a[0], POLLER_IN, &tag_old));
  t_write(a[1], 1); /* the old file is readable */
  ASSERT_OK(poller_flush(p));
  int num = a[0];
  t_close(a[0]);
  reuse_number(num, b);
  ASSERT_ERR(poller_add(p, num, POLLER_IN, &tag_new), -EEXIST);
  ASSERT_OK(poller_del(p, num));
  ASSERT_OK(poller_add(p, num, POLLER_IN, &tag_new));
  /* The new file has no data: nothing for it. */
  t_expect_none(p, num, 50);
  t_write(b[1], 1);
  poller_event ev;
  t_wait_for(p, num, POLLER_IN, 2000, &ev);
  ASSERT_TRUE(ev.data == &tag_new);
  ASSERT_EQ(t_drain(num), 1);
  ASSERT_OK(poller_del(p, num));
  t_close(a[1]);
  t_close(b[0]);
  t_close(b[1]);
  t_assert_clean(p);
}

/* Lessons 2 (swift-nio#341): a report of the old registration is not
 * current once the number is reused and added again (generation), and
 * the new registration never sees the old file's readiness. */
TEST(fd_reuse_generation) {
  poller *p;
  int a[2], b[2];
  t_open(&p);
  t_socketpair(a);
  ASSERT_OK(poller_add(p, a[0], POLLER_IN, &tag_old));
  t_write(a[1], 1);
  poller_event old;
  t_wait_for(p, a[0], POLLER_IN, 2000, &old);
  ASSERT_EQ(poller_current(p, &old), 1);
  int num = a[0];
  ASSERT_OK(poller_del(p, num));
  t_close(num);
  reuse_number(num, b);
  ASSERT_OK(poller_add(p, num, POLLER_IN, &tag_new));
  ASSERT_EQ(poller_current(p, &old), 0);
  poller_event key;
  ASSERT_OK(poller_get(p, num, &key));
  ASSERT_NE(key.gen, old.gen);
  t_expect_none(p, num, 50);
  t_write(b[1], 1);
  poller_event ev;
  t_wait_for(p, num, POLLER_IN, 2000, &ev);
  ASSERT_TRUE(ev.data == &tag_new);
  ASSERT_EQ(ev.gen, key.gen);
  ASSERT_NE(ev.gen, old.gen);
  ASSERT_EQ(poller_current(p, &ev), 1);
  ASSERT_OK(poller_del(p, num));
  t_close(a[1]);
  t_close(b[0]);
  t_close(b[1]);
  t_assert_clean(p);
}

/* E36: while handling a batch, fd N is deleted, closed and its number
 * reused and added again: N's report in the batch is not current, and the
 * next wait reports nothing for the new file. */
TEST(close_and_reopen_within_batch) {
  poller *p;
  int a[2], b[2], c[2];
  t_open(&p);
  t_socketpair(a);
  t_socketpair(c);
  ASSERT_OK(poller_add(p, a[0], POLLER_IN, &tag_old));
  ASSERT_OK(poller_add(p, c[0], POLLER_IN, &tag_new));
  t_write(a[1], 1);
  t_write(c[1], 1);
  poller_event out[8];
  int n = 0;
  for (int tries = 0; tries < 100 && n < 2; tries++)
    n = poller_wait(p, out, 8, 100);
  ASSERT_EQ(n, 2);
  int num = a[0];
  int ia = out[0].fd == num ? 0 : 1;
  ASSERT_EQ(out[ia].fd, num);
  /* "Handling" c's report: drop a and reuse its number. */
  ASSERT_OK(poller_del(p, num));
  t_close(num);
  reuse_number(num, b);
  ASSERT_OK(poller_add(p, num, POLLER_IN, &tag_new));
  ASSERT_EQ(poller_current(p, &out[ia]), 0);
  ASSERT_EQ(poller_current(p, &out[1 - ia]), 1);
  t_expect_none(p, num, 50);
  ASSERT_OK(poller_del(p, num));
  ASSERT_OK(poller_del(p, c[0]));
  t_close(a[1]);
  t_close(b[0]);
  t_close(b[1]);
  t_close(c[0]);
  t_close(c[1]);
  t_assert_clean(p);
}

/* E35 (libuv#1468): register fd, dup it, del and close the
 * original: no event for the closed number, although the file lives on
 * through the dup; the dup can be registered on its own. */
TEST(dup_then_close_no_ghost_events) {
  T_POSIX_ONLY("dup of a descriptor number (a duplicated socket handle is a new number)");
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag_old));
  ASSERT_OK(poller_flush(p));
  int d = fcntl(sv[0], F_DUPFD_CLOEXEC, 0);
  ASSERT_SYS(d);
  int num = sv[0];
  ASSERT_OK(poller_del(p, num));
  t_close(num);
  t_write(sv[1], 1);
  poller_event out[8];
  ASSERT_EQ(poller_wait(p, out, 8, 50), 0);
  poller_stats st;
  ASSERT_OK(poller_stats_get(p, &st));
  ASSERT_EQ(st.stale, 0); /* the kernel holds nothing of it either */
  ASSERT_OK(poller_add(p, d, POLLER_IN, &tag_new));
  poller_event ev;
  t_wait_for(p, d, POLLER_IN, 2000, &ev);
  ASSERT_TRUE(ev.data == &tag_new);
  ASSERT_OK(poller_del(p, d));
  t_close(d);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* E35, closed behind poller's back while a dup lives: once del has run,
 * no report of the old registration reaches the caller (epoll may keep
 * the file in its set, poller.h says; poller must filter it), and the
 * dup registered on its own gets its own events only. */
TEST(dup_close_before_del_no_ghost) {
  T_POSIX_ONLY("dup of a descriptor number (a duplicated socket handle is a new number)");
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag_old));
  ASSERT_OK(poller_flush(p));
  int d = fcntl(sv[0], F_DUPFD_CLOEXEC, 0);
  ASSERT_SYS(d);
  int num = sv[0];
  t_close(num);
  ASSERT_OK(poller_del(p, num));
  t_write(sv[1], 1);
  poller_event out[8];
  int n = poller_wait(p, out, 8, 50);
  ASSERT_EQ(n, 0);
  poller_stats st;
  ASSERT_OK(poller_stats_get(p, &st));
  if (st.stale)
    t_note("%llu stale kernel reports filtered (the closed number's file "
           "is still in the kernel set)", st.stale);
  ASSERT_OK(poller_add(p, d, POLLER_IN, &tag_new));
  poller_event ev;
  t_wait_for(p, d, POLLER_IN, 2000, &ev);
  ASSERT_TRUE(ev.data == &tag_new);
  n = poller_wait(p, out, 8, 0);
  for (int i = 0; i < n; i++)
    ASSERT_NE(out[i].fd, num);
  ASSERT_OK(poller_del(p, d));
  t_close(d);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* E35 (libuv#1468): after a close-then-del with a dup alive, a
 * readable file that the kernel may still hold under the closed number
 * must not turn poller_wait into a busy loop of stale reports: a wait of
 * 200 ms with nothing to report makes a handful of system calls, and an
 * infinite wait still ends with a wakeup. */
TEST(dup_close_before_del_no_spin) {
  T_POSIX_ONLY("dup of a descriptor number (a duplicated socket handle is a new number)");
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN | POLLER_OUT, &tag_old));
  ASSERT_OK(poller_flush(p));
  int d = fcntl(sv[0], F_DUPFD_CLOEXEC, 0);
  ASSERT_SYS(d);
  int num = sv[0];
  t_close(num);
  ASSERT_OK(poller_del(p, num));
  t_write(sv[1], 1); /* the file is readable and writable: level ghosts */
  int pfd = poller_fd(p);
  poller_event out[8];
  poller_stats before, after;
  ASSERT_OK(poller_stats_get(p, &before));
  double t0 = t_now_ms();
  ASSERT_EQ(poller_wait(p, out, 8, 200), 0);
  ASSERT_GE(t_now_ms() - t0, 200);
  ASSERT_OK(poller_stats_get(p, &after));
  t_note("%llu system calls, %llu stale reports in a 200 ms wait",
         after.syscalls - before.syscalls, after.stale - before.stale);
  ASSERT_LE(after.syscalls - before.syscalls, 50);
  ASSERT_EQ(poller_fd(p), pfd); /* a nesting caller's fd stays valid */
  ASSERT_OK(poller_wakeup(p));
  ASSERT_EQ(poller_wait(p, out, 8, -1), 0);
  /* Registering the dup works, with its own data. */
  ASSERT_OK(poller_add(p, d, POLLER_IN, &tag_new));
  poller_event ev;
  t_wait_for(p, d, POLLER_IN, 2000, &ev);
  ASSERT_TRUE(ev.data == &tag_new);
  ASSERT_OK(poller_del(p, d));
  t_close(d);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* E34 + E35 (swift-nio#341, creytiv/re#266): the fd is closed before del
 * while a dup
 * keeps its file alive, and its number is reused by a new file that is
 * registered: readiness of the old file (which the kernel may still hold
 * under that number) never reaches the new registration; only the new
 * file's own readiness does, with its own data and generation. */
TEST(dup_close_reuse_no_ghost) {
  T_POSIX_ONLY("dup of a descriptor number (a duplicated socket handle is a new number)");
  poller *p;
  int a[2], b[2];
  t_open(&p);
  t_socketpair(a);
  ASSERT_OK(poller_add(p, a[0], POLLER_IN, &tag_old));
  ASSERT_OK(poller_flush(p));
  poller_event key;
  ASSERT_OK(poller_get(p, a[0], &key));
  int d = fcntl(a[0], F_DUPFD_CLOEXEC, 0);
  ASSERT_SYS(d);
  int num = a[0];
  t_close(num);
  reuse_number(num, b);
  ASSERT_OK(poller_del(p, num));
  ASSERT_OK(poller_add(p, num, POLLER_IN, &tag_new));
  t_write(a[1], 1); /* the old file (alive through d) becomes readable */
  t_expect_none(p, num, 100);
  t_write(b[1], 1);
  poller_event ev;
  t_wait_for(p, num, POLLER_IN, 2000, &ev);
  ASSERT_TRUE(ev.data == &tag_new);
  ASSERT_NE(ev.gen, key.gen);
  ASSERT_OK(poller_del(p, num));
  t_close(d);
  t_close(a[1]);
  t_close(b[0]);
  t_close(b[1]);
  t_assert_clean(p);
}

/* E37: select and poll: a registered fd closed behind poller's back is
 * reported once as ERR|NVAL (not a spin), the rest of the
 * poller keeps working, and del then succeeds.  Covers a close before the
 * first wait (the add still queued) and after it. */
TEST(closed_fd_nval_once) {
  if (T_BACKEND != POLLER_SELECT && T_BACKEND != POLLER_POLL &&
      T_BACKEND != POLLER_AFD)
    SKIP("%s watches open files: the kernel drops a closed fd silently "
         "(see closed_fd_del_succeeds)", T_BACKEND_NAME);
  poller *p;
  int a[2], b[2], c[2];
  t_open(&p);
  t_socketpair(a);
  t_socketpair(b);
  t_socketpair(c);
  ASSERT_OK(poller_add(p, a[0], POLLER_IN, &tag_old));
  ASSERT_OK(poller_add(p, b[0], POLLER_IN, &tag_new));
  ASSERT_OK(poller_flush(p));
  ASSERT_OK(poller_add(p, c[0], POLLER_IN, &c)); /* still queued */
  int na = a[0], nc = c[0];
  t_close(na);
  t_close(nc);
  t_write(b[1], 1);
  int got_a = 0, got_b = 0, got_c = 0;
  poller_event out[8];
  for (int round = 0; round < 5; round++) {
    int n = poller_wait(p, out, 8, 20);
    ASSERT_GE(n, 0);
    for (int i = 0; i < n; i++) {
      if (out[i].fd == na) {
        ASSERT_EQ(out[i].events, POLLER_ERR | POLLER_NVAL);
        ASSERT_TRUE(out[i].data == &tag_old);
        got_a++;
      } else if (out[i].fd == nc) {
        ASSERT_EQ(out[i].events, POLLER_ERR | POLLER_NVAL);
        ASSERT_TRUE(out[i].data == &c);
        got_c++;
      } else {
        ASSERT_EQ(out[i].fd, b[0]);
        ASSERT_BITS(out[i].events, POLLER_IN);
        got_b++;
      }
    }
  }
  ASSERT_EQ(got_a, 1);
  ASSERT_EQ(got_c, 1);
  ASSERT_GE(got_b, 1);
  /* No spin: a wait with only the disarmed fds is one kernel call. */
  ASSERT_EQ(t_drain(b[0]), 1);
  poller_stats before, after;
  ASSERT_OK(poller_stats_get(p, &before));
  ASSERT_EQ(poller_wait(p, out, 8, 100), 0);
  ASSERT_OK(poller_stats_get(p, &after));
  ASSERT_LE(after.syscalls - before.syscalls, 3);
  ASSERT_OK(poller_del(p, na));
  ASSERT_OK(poller_del(p, nc));
  ASSERT_OK(poller_del(p, b[0]));
  t_close(a[1]);
  t_close(b[0]);
  t_close(b[1]);
  t_close(c[1]);
  t_assert_clean(p);
}

/* E33/E37 on every backend: a registered fd closed behind poller's back
 * never crashes or spins the poller; it is reported at most once (ERR|
 * NVAL), and del succeeds. */
TEST(closed_fd_del_succeeds) {
  poller *p;
  int a[2];
  t_open(&p);
  t_socketpair(a);
  ASSERT_OK(poller_add(p, a[0], POLLER_IN | POLLER_OUT, &tag_old));
  t_wait_for(p, a[0], POLLER_OUT, 2000, NULL);
  int na = a[0];
  t_close(na);
  int reports = 0;
  poller_event out[8];
  for (int round = 0; round < 5; round++) {
    int n = poller_wait(p, out, 8, 20);
    ASSERT_GE(n, 0);
    for (int i = 0; i < n; i++) {
      ASSERT_EQ(out[i].fd, na);
      ASSERT_EQ(out[i].events, POLLER_ERR | POLLER_NVAL);
      reports++;
    }
  }
  ASSERT_LE(reports, 1);
  ASSERT_OK(poller_del(p, na));
  ASSERT_EQ(poller_wait(p, out, 8, 20), 0);
  t_close(a[1]);
  t_assert_clean(p);
}
