/* SPDX-License-Identifier: MIT */
/*
 * regress_core.c - regressions of the core and of the select, poll and
 * epoll backends found by a differential random tester and a review
 * (issue 8, items 1-11).  Each test names the promise it pins.
 */
#include "harness.h"
#include "internal.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/epoll.h>
#endif

static int tag_a, tag_b;

static unsigned long long syscalls_of(poller *p) {
  poller_stats st;
  ASSERT_OK(poller_stats_get(p, &st));
  return st.syscalls;
}

/* A wait with nothing to report sleeps: at most a handful of system
 * calls in a wait of `ms` milliseconds that reports nothing. */
static void assert_sleeps(poller *p, int ms) {
  unsigned long long before = syscalls_of(p);
  poller_event out[8];
  double t0 = t_now_ms();
  ASSERT_EQ(poller_wait(p, out, 8, ms), 0);
  ASSERT_GE(t_now_ms() - t0, ms - 1);
  ASSERT_LE(syscalls_of(p) - before, 12);
}

/* ---- item 1: caller input never overflows an int ---- */

/* poller_next after the highest possible fd finds nothing (after_fd + 1
 * must not wrap to INT_MIN and index the table below its start). */
TEST(next_after_int_max) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag_a));
  poller_event key;
  ASSERT_ERR(poller_next(p, INT_MAX, &key), -ENOENT);
  ASSERT_ERR(poller_next(p, INT_MAX - 1, &key), -ENOENT);
  ASSERT_OK(poller_next(p, INT_MIN, &key));
  ASSERT_EQ(key.fd, sv[0]);
  ASSERT_OK(poller_next(p, -1, &key));
  ASSERT_EQ(key.fd, sv[0]);
  ASSERT_ERR(poller_next(p, sv[0], &key), -ENOENT);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* ---- item 2: a hang-up is readable (IN with HUP) on every backend ---- */

/* Registered for IN, a hang-up is reported with IN (poller.h: IN means
 * "readable, or the peer closed"), and with HUP where the backend can
 * tell it (not select). */
static void check_hangup_bits(unsigned got) {
  ASSERT_BITS(got, POLLER_IN);
  if (T_BACKEND != POLLER_SELECT)
    ASSERT_BITS(got, POLLER_HUP);
}

TEST(hangup_in_pipe) {
  static const unsigned modes[] = {0, POLLER_ET, POLLER_ONESHOT};
  for (unsigned m = 0; m < 3; m++) {
    poller *p;
    int pf[2];
    t_open(&p);
    t_pipe(pf);
    ASSERT_OK(poller_add(p, pf[0], POLLER_IN | modes[m], NULL));
    t_expect_none(p, pf[0], 20);
    t_close(pf[1]);
    check_hangup_bits(t_wait_exactly_once(p, pf[0], 2000, NULL));
    ASSERT_OK(poller_del(p, pf[0]));
    t_close(pf[0]);
    t_assert_clean(p);
  }
}

/* Without IN in the interest, a hang-up brings no IN. */
TEST(hangup_no_in_without_interest) {
  if (T_BACKEND == POLLER_SELECT)
    SKIP("select cannot report HUP (see poller.h)");
  poller *p;
  int pf[2];
  t_open(&p);
  t_pipe(pf);
  ASSERT_OK(poller_add(p, pf[0], POLLER_PRI, NULL));
  t_close(pf[1]);
  unsigned got = t_wait_exactly_once(p, pf[0], 2000, NULL);
  ASSERT_BITS(got, POLLER_HUP);
  ASSERT_NOBITS(got, POLLER_IN | POLLER_OUT);
  ASSERT_OK(poller_del(p, pf[0]));
  t_close(pf[0]);
  t_assert_clean(p);
}

TEST(hangup_in_socketpair) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, NULL));
  t_close(sv[1]);
  check_hangup_bits(t_wait_exactly_once(p, sv[0], 2000, NULL));
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_assert_clean(p);
}

/* A pty master whose slave side closed. */
TEST(hangup_in_pty) {
  int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (m < 0)
    SKIP("posix_openpt: %s", strerror(errno));
  ASSERT_SYS(grantpt(m));
  ASSERT_SYS(unlockpt(m));
  const char *name = ptsname(m);
  ASSERT_TRUE(name != NULL);
  int s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_SYS(s);
  ASSERT_SYS(fcntl(m, F_SETFL, O_NONBLOCK));
  poller *p;
  t_open(&p);
  ASSERT_OK(poller_add(p, m, POLLER_IN, NULL));
  t_expect_none(p, m, 20);
  t_close(s);
  check_hangup_bits(t_wait_exactly_once(p, m, 2000, NULL));
  ASSERT_OK(poller_del(p, m));
  t_close(m);
  t_assert_clean(p);
}

/* Half-closed TCP: RDHUP comes with IN; a full close with IN and HUP. */
TEST(hangup_in_tcp_half_and_full) {
  poller *p;
  int a, b;
  t_open(&p);
  t_tcp_pair(&a, &b);
  ASSERT_OK(poller_add(p, a, POLLER_IN | POLLER_RDHUP, NULL));
  t_expect_none(p, a, 20);
  ASSERT_SYS(shutdown(b, SHUT_WR));
  unsigned got = t_wait_exactly_once(p, a, 2000, NULL);
  ASSERT_BITS(got, POLLER_IN);
  if (T_BACKEND != POLLER_SELECT)
    ASSERT_BITS(got, POLLER_RDHUP);
  ASSERT_NOBITS(got, POLLER_HUP);
  ASSERT_SYS(shutdown(a, SHUT_WR));
  t_close(b);
  double deadline = t_now_ms() + 2000;
  do
    got = t_wait_exactly_once(p, a, 2000, NULL);
  while (T_BACKEND != POLLER_SELECT && !(got & POLLER_HUP) &&
         t_now_ms() < deadline);
  check_hangup_bits(got);
  ASSERT_OK(poller_del(p, a));
  t_close(a);
  t_assert_clean(p);
}

/* ---- item 3: poller_reinit never takes a registered number ---- */

struct reinit_ctx {
  poller *p;
  int sv[2];
};

static void reinit_child(void *arg) {
  struct reinit_ctx *c = arg;
  /* Closed before del: its number is free, and the lowest one free (the
   * holes below it are filled), so a new wakeup channel would take it. */
  t_close(c->sv[0]);
  int fill[64], nfill = 0;
  for (;;) {
    int f = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ASSERT_SYS(f);
    if (f == c->sv[0]) {
      t_close(f);
      break;
    }
    ASSERT_LT(nfill, 64);
    fill[nfill++] = f;
  }
  ASSERT_OK(poller_reinit(c->p));
  ASSERT_NE(c->p->wakefd_r, c->sv[0]);
  ASSERT_NE(c->p->wakefd_w, c->sv[0]);
  ASSERT_EQ(poller_count(c->p), 1);
  poller_event key;
  ASSERT_OK(poller_get(c->p, c->sv[0], &key));
  ASSERT_TRUE(key.data == &tag_a);
  ASSERT_OK(poller_del(c->p, c->sv[0]));
  ASSERT_EQ(poller_count(c->p), 0);
  /* The wakeup channel works, and nothing else is reported. */
  ASSERT_OK(poller_wakeup(c->p));
  poller_event out[4];
  ASSERT_EQ(poller_wait(c->p, out, 4, -1), 0); /* ends only by the wakeup */
  ASSERT_EQ(poller_wait(c->p, out, 4, 20), 0);
  for (int i = 0; i < nfill; i++)
    t_close(fill[i]);
  poller_close(c->p);
}

TEST(reinit_keeps_registration_of_closed_fd) {
  struct reinit_ctx c;
  t_socketpair(c.sv); /* below the poller's own descriptors */
  t_open(&c.p);
  ASSERT_OK(poller_add(c.p, c.sv[0], POLLER_IN, &tag_a));
  ASSERT_OK(poller_flush(c.p));
  t_in_child(reinit_child, &c);
  ASSERT_EQ(poller_count(c.p), 1);
  ASSERT_OK(poller_del(c.p, c.sv[0]));
  t_close(c.sv[0]);
  t_close(c.sv[1]);
  t_assert_clean(c.p);
}

/* ---- item 4: poller_current after a delete in the same batch ---- */

/* An NVAL report whose fd a handler of the same batch deleted is not
 * current; an NVAL report of a registration the core dropped is current
 * until the number gets a new registration. */
TEST(current_nval_after_delete) {
  poller *p;
  int sv[2], other[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag_a));
  ASSERT_OK(poller_flush(p));
  int fd = sv[0];
  t_close(sv[0]);
  /* A change of interest makes every backend look at the closed fd. */
  ASSERT_OK(poller_mod(p, fd, POLLER_IN | POLLER_OUT, &tag_a));
  poller_event ev;
  unsigned got = t_wait_for(p, fd, POLLER_NVAL, 2000, &ev);
  ASSERT_BITS(got, POLLER_ERR | POLLER_NVAL);
  ASSERT_EQ(poller_current(p, &ev), 1);
  int r = poller_del(p, fd);
  if (r == 0) {
    ASSERT_EQ(poller_current(p, &ev), 0);
  } else {
    /* Dropped by the core already: the report stays the last word. */
    ASSERT_ERR(r, -ENOENT);
    ASSERT_EQ(poller_current(p, &ev), 1);
  }
  /* A new file on the number, added and deleted: never current. */
  t_socketpair(other);
  if (other[0] != fd) {
    ASSERT_EQ(dup3(other[0], fd, O_CLOEXEC), fd);
    t_close(other[0]);
  }
  ASSERT_OK(poller_add(p, fd, POLLER_IN, &tag_b));
  ASSERT_EQ(poller_current(p, &ev), 0);
  ASSERT_OK(poller_del(p, fd));
  ASSERT_EQ(poller_current(p, &ev), 0);
  t_close(fd);
  t_close(other[1]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* ---- item 5: the wakeup channel takes no slot and ends no wait ---- */

static int temp_file(void) {
  char path[] = "/tmp/poller-test-XXXXXX";
  int f = mkstemp(path);
  ASSERT_SYS(f);
  ASSERT_SYS(unlink(path));
  return f;
}

/* A regular file and a writable socket, max 2, timeout 0: both are
 * reported at every wait. */
TEST(wakeup_channel_takes_no_slot) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  int f = temp_file();
  ASSERT_OK(poller_add(p, f, POLLER_IN, &tag_a));
  ASSERT_OK(poller_add(p, sv[0], POLLER_OUT, &tag_b));
  for (int i = 0; i < 20; i++) {
    poller_event out[2];
    int n = poller_wait(p, out, 2, 0);
    ASSERT_EQ(n, 2);
    ASSERT_NE(out[0].fd, out[1].fd);
    for (int j = 0; j < 2; j++) {
      if (out[j].fd == f)
        ASSERT_EQ(out[j].events, POLLER_IN);
      else
        ASSERT_EQ(out[j].events, POLLER_OUT);
    }
  }
  ASSERT_OK(poller_del(p, f));
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(f);
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* A regular file added then deleted leaves nothing behind: a wait with
 * max 1 sleeps its whole timeout and returns 0. */
TEST(always_ready_deleted_wait_sleeps) {
  poller *p;
  t_open(&p);
  int f = temp_file();
  ASSERT_OK(poller_add(p, f, POLLER_IN, &tag_a));
  poller_event out[1];
  ASSERT_EQ(poller_wait(p, out, 1, 0), 1);
  ASSERT_EQ(out[0].fd, f);
  ASSERT_OK(poller_flush(p));
  ASSERT_OK(poller_del(p, f));
  double t0 = t_now_ms();
  ASSERT_EQ(poller_wait(p, out, 1, 200), 0);
  ASSERT_GE(t_now_ms() - t0, 199);
  assert_sleeps(p, 100);
  t_close(f);
  t_assert_clean(p);
}

static void *wake_later(void *arg) {
  t_sleep_ms(150);
  poller_wakeup(arg);
  return NULL;
}

/* With -1 a wait after such a delete ends only by a real wakeup. */
TEST(always_ready_deleted_infinite_wait) {
  poller *p;
  t_open(&p);
  int f = temp_file();
  ASSERT_OK(poller_add(p, f, POLLER_IN | POLLER_OUT, &tag_a));
  poller_event out[1];
  ASSERT_EQ(poller_wait(p, out, 1, 0), 1);
  ASSERT_OK(poller_del(p, f));
  pthread_t th;
  /* t0 before the thread starts: its wakeup comes at least 150 ms later,
   * however the threads are scheduled. */
  double t0 = t_now_ms();
  ASSERT_EQ(pthread_create(&th, NULL, wake_later, p), 0);
  ASSERT_EQ(poller_wait(p, out, 1, -1), 0);
  ASSERT_GE(t_now_ms() - t0, 149);
  ASSERT_EQ(pthread_join(th, NULL), 0);
  t_close(f);
  t_assert_clean(p);
}

/* A real wakeup still ends a wait while an always-ready file keeps the
 * channel signalled, and is not lost. */
TEST(wakeup_with_always_ready_pending) {
  poller *p;
  t_open(&p);
  int f = temp_file();
  ASSERT_OK(poller_add(p, f, POLLER_IN | POLLER_ONESHOT, &tag_a));
  poller_event out[4];
  ASSERT_EQ(poller_wait(p, out, 4, 0), 1);
  ASSERT_OK(poller_wakeup(p));
  ASSERT_EQ(poller_wait(p, out, 4, -1), 0); /* ends only by the wakeup */
  assert_sleeps(p, 50);
  ASSERT_OK(poller_del(p, f));
  t_close(f);
  t_assert_clean(p);
}

/* ---- item 6: POLLER_AUTO never picks io_uring by itself ---- */

TEST(auto_never_falls_back_to_uring) {
  if (T_BACKEND != POLLER_SELECT)
    SKIP("backend independent: run once");
  if (getenv("POLLER_BACKEND"))
    SKIP("POLLER_BACKEND is set");
  poller *p;
  /* Every backend AUTO prefers to poll refuses: the next is poll(2). */
  poller__fault_set(POLLER__FAULT_INIT_NATIVE, -EMFILE);
  int r = poller_open(&p, POLLER_AUTO);
  poller__fault_set(POLLER__FAULT_INIT_NATIVE, 0);
  ASSERT_OK(r);
  ASSERT_EQ(poller_backend(p), POLLER_POLL);
  poller_close(p);
  for (int i = 0; poller__backends[i]; i++)
    if (poller__backends[i]->id == POLLER_URING)
      ASSERT_FALSE(poller__auto_eligible(poller__backends[i]));
}

/* ---- item 7: emulated ET reports one hang-up once ---- */

static void edge_hangup_once(int pipe_kind, int drain) {
  poller *p;
  int fds[2];
  t_open(&p);
  if (pipe_kind)
    t_pipe(fds);
  else
    t_socketpair(fds);
  ASSERT_OK(poller_add(p, fds[0], POLLER_IN | POLLER_ET, NULL));
  t_write(fds[1], 1);
  t_wait_for(p, fds[0], POLLER_IN, 2000, NULL);
  if (drain)
    ASSERT_EQ(t_drain(fds[0]), 1);
  t_expect_none(p, fds[0], 30);
  t_close(fds[1]);
  /* A hang-up is a new readiness, drained or not; select shows it as
   * IN alone (it cannot tell HUP, see poller.h). */
  unsigned got = t_wait_exactly_once(p, fds[0], 2000, NULL);
  ASSERT_BITS(got, POLLER_IN);
  if (T_BACKEND == POLLER_SELECT)
    ASSERT_NOBITS(got, POLLER_HUP | POLLER_RDHUP | POLLER_ERR);
  else
    ASSERT_BITS(got, POLLER_HUP);
  /* Nothing changed since: no second report, and the waits sleep. */
  t_expect_none(p, fds[0], 60);
  assert_sleeps(p, 50);
  ASSERT_OK(poller_del(p, fds[0]));
  t_close(fds[0]);
  t_assert_clean(p);
}

TEST(edge_hangup_reported_once_pipe) {
  edge_hangup_once(1, 1);
  edge_hangup_once(1, 0);
}

TEST(edge_hangup_reported_once_socketpair) {
  edge_hangup_once(0, 1);
  edge_hangup_once(0, 0);
}

/* ---- items 8-10: replaced numbers and ghosts never spin ---- */

/* Moves `from` onto number `to` (closing what `to` was) and closes from. */
static void move_fd(int from, int to) {
  ASSERT_EQ(dup3(from, to, O_CLOEXEC), to);
  t_close(from);
}

/* A registered number replaced behind the poller (the old file kept alive
 * by a dup, readable) and then modified: the old file is never reported,
 * the new one is, once per wait and within the interest, and a wait with
 * nothing to report sleeps. */
TEST(replaced_number_then_mod_no_spin) {
  static const unsigned modes[] = {0, POLLER_ET, POLLER_ONESHOT};
  for (unsigned m = 0; m < 3; m++) {
    poller *p;
    int sv[2], nw[2];
    t_open(&p);
    t_socketpair(sv);
    t_socketpair(nw);
    ASSERT_OK(poller_add(p, sv[0], POLLER_IN | modes[m], &tag_a));
    ASSERT_OK(poller_flush(p));
    int keep = dup(sv[0]);
    ASSERT_SYS(keep);
    move_fd(nw[0], sv[0]); /* sv[0] is now the new file */
    t_write(sv[1], 1);     /* the old file is readable */
    ASSERT_OK(
        poller_mod(p, sv[0], POLLER_IN | POLLER_RDHUP | modes[m], &tag_b));
    t_expect_none(p, sv[0], 50);
    assert_sleeps(p, 100);
    t_write(nw[1], 1);
    poller_event ev;
    unsigned got = t_wait_for(p, sv[0], POLLER_IN, 2000, &ev);
    ASSERT_NOBITS(got, ~(POLLER_IN | POLLER_RDHUP | POLLER_ERR | POLLER_HUP));
    ASSERT_TRUE(ev.data == &tag_b);
    ASSERT_OK(poller_del(p, sv[0]));
    assert_sleeps(p, 50);
    t_close(sv[0]);
    t_close(keep);
    t_close(sv[1]);
    t_close(nw[1]);
    t_assert_clean(p);
  }
}

/* close before del with a live dup, del, then the same file comes back
 * on the number: add succeeds and works. */
TEST(del_after_close_then_readd_same_file) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag_a));
  ASSERT_OK(poller_flush(p));
  int fd = sv[0];
  int keep = dup(fd);
  ASSERT_SYS(keep);
  t_close(fd);
  ASSERT_OK(poller_del(p, fd));
  ASSERT_EQ(poller_count(p), 0);
  ASSERT_EQ(dup3(keep, fd, O_CLOEXEC), fd);
  ASSERT_OK(poller_add(p, fd, POLLER_IN, &tag_b));
  ASSERT_EQ(poller_count(p), 1);
  t_expect_none(p, fd, 30);
  t_write(sv[1], 1);
  poller_event ev;
  t_wait_for(p, fd, POLLER_IN, 2000, &ev);
  ASSERT_TRUE(ev.data == &tag_b);
  ASSERT_EQ(t_drain(fd), 1);
  ASSERT_OK(poller_del(p, fd));
  t_write(sv[1], 1);
  assert_sleeps(p, 50);
  t_close(fd);
  t_close(keep);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* Makes a ghost: registers a readable socket, closes its number while a
 * dup keeps the file open, deletes it, and makes the file readable, so
 * a kernel set that watches files (epoll) holds an entry the poller
 * cannot remove and reports it at every wait.  Returns the dup; *peer
 * gets the other end. */
static int make_ghost(poller *p, int *peer) {
  int sv[2];
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag_b));
  ASSERT_OK(poller_flush(p));
  int keep = dup(sv[0]);
  ASSERT_SYS(keep);
  t_close(sv[0]);
  ASSERT_OK(poller_del(p, sv[0]));
  t_write(sv[1], 1);
  *peer = sv[1];
  return keep;
}

/* A ghost (closed before del, a dup alive, readable) makes the core
 * rebuild the kernel set; a loop that nests poller_fd keeps hearing of
 * the poller afterwards, through the same number. */
TEST(ghost_rebuild_keeps_outer_loop) {
#ifdef __linux__
  poller *p;
  t_open(&p);
  int pfd = poller_fd(p);
  if (pfd < 0) {
    poller_close(p);
    SKIP("%s has no poller_fd", T_BACKEND_NAME);
  }
  int outer = epoll_create1(EPOLL_CLOEXEC);
  ASSERT_SYS(outer);
  struct epoll_event oev = {.events = EPOLLIN};
  ASSERT_SYS(epoll_ctl(outer, EPOLL_CTL_ADD, pfd, &oev));
  int sv[2], live[2];
  t_socketpair(sv);
  t_socketpair(live);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag_a));
  ASSERT_OK(poller_add(p, live[0], POLLER_IN, &tag_b));
  ASSERT_OK(poller_flush(p));
  int keep = dup(sv[0]);
  ASSERT_SYS(keep);
  int fd = sv[0];
  t_close(fd);
  ASSERT_OK(poller_del(p, fd));
  t_write(sv[1], 1); /* the ghost is readable */
  assert_sleeps(p, 50);
  ASSERT_EQ(poller_fd(p), pfd);
  /* Nothing pending: the outer loop sleeps... */
  struct epoll_event got;
  ASSERT_EQ(epoll_wait(outer, &got, 1, 30), 0);
  /* ...and wakes for the live registration. */
  t_write(live[1], 1);
  ASSERT_EQ(epoll_wait(outer, &got, 1, 5000), 1);
  t_wait_for(p, live[0], POLLER_IN, 2000, NULL);
  ASSERT_OK(poller_del(p, live[0]));
  t_close(outer);
  t_close(keep);
  t_close(sv[1]);
  t_close(live[0]);
  t_close(live[1]);
  t_assert_clean(p);
#else
  SKIP("needs epoll for the outer loop");
#endif
}

/* The same with the process out of descriptors: the wait still sleeps. */
TEST(ghost_out_of_fds_no_spin) {
  poller *p;
  t_open(&p);
  int peer;
  int keep = make_ghost(p, &peer);
  struct rlimit old, low;
  ASSERT_SYS(getrlimit(RLIMIT_NOFILE, &old));
  low = old;
  low.rlim_cur = (rlim_t)keep + 16;
  ASSERT_SYS(setrlimit(RLIMIT_NOFILE, &low));
  int fill[64], nfill = 0;
  for (;;) {
    int f = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (f < 0) {
      ASSERT_EQ(errno, EMFILE);
      break;
    }
    ASSERT_LT(nfill, 64);
    fill[nfill++] = f;
  }
  assert_sleeps(p, 200);
  assert_sleeps(p, 50);
  for (int i = 0; i < nfill; i++)
    t_close(fill[i]);
  ASSERT_SYS(setrlimit(RLIMIT_NOFILE, &old));
  t_close(keep);
  t_close(peer);
  t_assert_clean(p);
}

/* When the kernel set cannot be replaced at all (no memory), a wait with
 * a ghost and nothing to report still does not spin, and a wakeup still
 * ends it; once the set can be replaced, waits sleep again. */
TEST(ghost_rebuild_refused_no_spin) {
  poller *p;
  t_open(&p);
  int peer;
  int keep = make_ghost(p, &peer);
  poller__fault_set(POLLER__FAULT_REBUILD, -ENOMEM);
  unsigned long long before = syscalls_of(p);
  poller_event out[8];
  double t0 = t_now_ms();
  ASSERT_EQ(poller_wait(p, out, 8, 300), 0);
  ASSERT_GE(t_now_ms() - t0, 299);
  /* A spin makes tens of thousands of calls in 300 ms. */
  ASSERT_LE(syscalls_of(p) - before, 400);
  pthread_t th;
  t0 = t_now_ms(); /* before the thread starts, as above */
  ASSERT_EQ(pthread_create(&th, NULL, wake_later, p), 0);
  ASSERT_EQ(poller_wait(p, out, 8, -1), 0);
  ASSERT_GE(t_now_ms() - t0, 149);
  ASSERT_EQ(pthread_join(th, NULL), 0);
  poller__fault_set(POLLER__FAULT_REBUILD, 0);
  assert_sleeps(p, 100);
  assert_sleeps(p, 50);
  t_close(keep);
  t_close(peer);
  t_assert_clean(p);
}

struct nest_ctx {
  poller *p;
  int pfd;
  int sv[2];
};

static void nest_child(void *arg) {
  struct nest_ctx *c = arg;
  ASSERT_OK(poller_reinit(c->p));
  ASSERT_EQ(poller_fd(c->p), c->pfd);
  ASSERT_OK(poller_flush(c->p));
  struct pollfd pl = {c->pfd, POLLIN, 0};
  ASSERT_EQ(poll(&pl, 1, 0), 0);
  t_write(c->sv[1], 1);
  ASSERT_EQ(poll(&pl, 1, 5000), 1);
  t_wait_for(c->p, c->sv[0], POLLER_IN, 2000, NULL);
  ASSERT_EQ(t_drain(c->sv[0]), 1);
  ASSERT_OK(poller_del(c->p, c->sv[0]));
  poller_close(c->p);
}

/* poller_fd keeps its number and its meaning through poller_reinit in a
 * forked child, and the parent's stays its own. */
TEST(poller_fd_survives_fork_reinit) {
  struct nest_ctx c;
  t_open(&c.p);
  c.pfd = poller_fd(c.p);
  if (c.pfd < 0) {
    poller_close(c.p);
    SKIP("%s has no poller_fd", T_BACKEND_NAME);
  }
  t_socketpair(c.sv);
  ASSERT_OK(poller_add(c.p, c.sv[0], POLLER_IN, &tag_a));
  ASSERT_OK(poller_flush(c.p));
  t_in_child(nest_child, &c);
  ASSERT_EQ(poller_fd(c.p), c.pfd);
  struct pollfd pl = {c.pfd, POLLIN, 0};
  if (T_BACKEND == POLLER_URING && poll(&pl, 1, 0) == 1) {
    /* The parent's ring holds a completion for the data the child read
     * (poller.h: readable once for a file no longer ready at the wait);
     * the wait that finds nothing to report clears it. */
    poller_event ev;
    ASSERT_EQ(poller_wait(c.p, &ev, 1, 0), 0);
  }
  ASSERT_EQ(poll(&pl, 1, 0), 0);
  t_write(c.sv[1], 1);
  ASSERT_EQ(poll(&pl, 1, 5000), 1);
  t_wait_for(c.p, c.sv[0], POLLER_IN, 2000, NULL);
  ASSERT_OK(poller_del(c.p, c.sv[0]));
  t_close(c.sv[0]);
  t_close(c.sv[1]);
  t_assert_clean(c.p);
}

/* The wakeup channel's slot is given back without reporting any fd
 * twice: a regular file and a writable socket with room to spare are
 * reported once each, at every wait. */
TEST(wakeup_channel_topup_reports_once) {
  poller *p;
  int sv[2], sv2[2];
  t_open(&p);
  t_socketpair(sv);
  t_socketpair(sv2);
  int f = temp_file();
  ASSERT_OK(poller_add(p, f, POLLER_IN, &tag_a));
  ASSERT_OK(poller_add(p, sv[0], POLLER_OUT, &tag_b));
  ASSERT_OK(poller_add(p, sv2[0], POLLER_OUT, &tag_b));
  for (int max = 2; max <= 5; max++) {
    for (int i = 0; i < 10; i++) {
      poller_event out[5];
      int n = poller_wait(p, out, max, 0);
      ASSERT_EQ(n, max < 3 ? max : 3);
      for (int j = 0; j < n; j++)
        for (int k = j + 1; k < n; k++)
          ASSERT_NE(out[j].fd, out[k].fd);
    }
  }
  ASSERT_OK(poller_del(p, f));
  ASSERT_OK(poller_del(p, sv[0]));
  ASSERT_OK(poller_del(p, sv2[0]));
  t_close(f);
  for (int i = 0; i < 2; i++) {
    t_close(sv[i]);
    t_close(sv2[i]);
  }
  t_assert_clean(p);
}

/* The public bits are poll(2)'s (and the modes epoll's), so a mask built
 * from <poll.h> or <sys/epoll.h> constants means the same thing (issue 11:
 * POLLOUT used to mean PRI, and POLLPRI OUT). */
TEST(public_bits_are_poll_values) {
  ASSERT_EQ(POLLER_IN, (unsigned)POLLIN);
  ASSERT_EQ(POLLER_PRI, (unsigned)POLLPRI);
  ASSERT_EQ(POLLER_OUT, (unsigned)POLLOUT);
  ASSERT_EQ(POLLER_ERR, (unsigned)POLLERR);
  ASSERT_EQ(POLLER_HUP, (unsigned)POLLHUP);
  ASSERT_EQ(POLLER_NVAL, (unsigned)POLLNVAL);
#ifdef POLLRDHUP
  ASSERT_EQ(POLLER_RDHUP, (unsigned)POLLRDHUP);
#endif
#ifdef __linux__
  ASSERT_EQ(POLLER_ONESHOT, (unsigned)EPOLLONESHOT);
  ASSERT_EQ(POLLER_ET, (unsigned)EPOLLET);
#endif
  /* And they mean it: POLLOUT watches writability on every backend. */
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLOUT, &tag_a));
  ASSERT_EQ(t_wait_exactly_once(p, sv[0], 5000, NULL) &
                (POLLER_OUT | POLLER_PRI),
            POLLER_OUT);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* The modes, now at the top of the mask, are kept whole in a key and by
 * the kernel-side bookkeeping (16 bits per fd in the core's table): a key
 * reads back as given, and a mod that changes only a mode is applied. */
TEST(mode_bits_kept_in_key) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  const unsigned masks[] = {
      POLLER_IN | POLLER_ET,
      POLLER_IN | POLLER_ONESHOT,
      POLLER_IN | POLLER_OUT | POLLER_RDHUP | POLLER_ET | POLLER_ONESHOT,
      POLLER_IN | POLLER_RDHUP,
  };
  ASSERT_OK(poller_add(p, sv[0], masks[0], &tag_a));
  for (size_t i = 0; i < sizeof masks / sizeof masks[0]; i++) {
    ASSERT_OK(poller_mod(p, sv[0], masks[i], &tag_b));
    poller_event key;
    ASSERT_OK(poller_get(p, sv[0], &key));
    ASSERT_EQ(key.events, masks[i]);
  }
  /* Level again after ET: reported at every wait while readable. */
  ASSERT_OK(poller_mod(p, sv[0], POLLER_IN, &tag_b));
  ASSERT_EQ(send(sv[1], "x", 1, 0), 1);
  ASSERT_TRUE(t_wait_exactly_once(p, sv[0], 5000, NULL) & POLLER_IN);
  ASSERT_TRUE(t_wait_exactly_once(p, sv[0], 5000, NULL) & POLLER_IN);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* A stale report of a ghost never takes one of the caller's slots: a
 * zero-timeout wait with max 1 reports the registration that is ready
 * rather than return 0 because the ghost's report came first. */
TEST(stale_report_takes_no_slot) {
  poller *p;
  t_open(&p);
  int peer;
  int keep = make_ghost(p, &peer);
  int sv[2];
  t_socketpair(sv);
  t_write(sv[1], 1);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag_a));
  for (int i = 0; i < 3; i++) {
    poller_event out[1];
    int n = poller_wait(p, out, 1, 0);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(out[0].fd, sv[0]);
  }
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(keep);
  t_close(peer);
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* As above with several registrations ready and max equal to their
 * number: after the ghost's report the kernel may hand out again a report
 * the batch already has; the wait still fills max, one report per fd. */
TEST(stale_report_takes_no_slot_many_ready) {
  for (int nready = 2; nready <= 4; nready++) {
    poller *p;
    t_open(&p);
    int peer;
    int keep = make_ghost(p, &peer);
    int sv[4][2];
    for (int i = 0; i < nready; i++) {
      t_socketpair(sv[i]);
      t_write(sv[i][1], 1);
      ASSERT_OK(poller_add(p, sv[i][0], POLLER_IN, &tag_a));
    }
    poller_event out[4];
    int n = poller_wait(p, out, nready, 0);
    ASSERT_EQ(n, nready);
    for (int j = 0; j < n; j++)
      for (int k = j + 1; k < n; k++)
        ASSERT_NE(out[j].fd, out[k].fd);
    for (int i = 0; i < nready; i++) {
      ASSERT_OK(poller_del(p, sv[i][0]));
      t_close(sv[i][0]);
      t_close(sv[i][1]);
    }
    t_close(keep);
    t_close(peer);
    t_assert_clean(p);
  }
}

/* Replacing the kernel set to drop a ghost adds every registration
 * again; an edge-triggered registration that was reported and has not
 * changed since is not reported again, while a new edge after the
 * replacement (the file drained, then readable again) still is, once. */
TEST(edge_not_repeated_after_ghost_rebuild) {
  poller *p;
  t_open(&p);
  int sv[2];
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN | POLLER_ET, &tag_a));
  t_write(sv[1], 1);
  t_wait_exactly_once(p, sv[0], 2000, NULL);
  int peer;
  int keep = make_ghost(p, &peer);
  for (int i = 0; i < 4; i++)
    ASSERT_EQ(t_wait_once(p, sv[0], i < 3 ? 0 : 50), 0);
  ASSERT_EQ(t_drain(sv[0]), 1);
  ASSERT_EQ(t_wait_once(p, sv[0], 0), 0); /* emulated ET sees it drained */
  t_write(sv[1], 1);
  ASSERT_BITS(t_wait_exactly_once(p, sv[0], 2000, NULL), POLLER_IN);
  ASSERT_EQ(t_wait_once(p, sv[0], 50), 0);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(keep);
  t_close(peer);
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* Edge-triggered IN on a TCP socket: data is reported, the reader
 * drains it, then the peer closes: exactly one new report, with IN (and
 * RDHUP when asked for).  After a drain poll(2) shows a peer's FIN on TCP
 * as RDHUP alone until the next read, so emulated ET must see it. */
static void tcp_edge_close_after_drain(unsigned extra, int wait_between) {
  poller *p;
  t_open(&p);
  int a, b;
  t_tcp_pair(&a, &b);
  ASSERT_OK(poller_add(p, a, POLLER_IN | POLLER_ET | extra, &tag_a));
  t_write(b, 1);
  ASSERT_BITS(t_wait_exactly_once(p, a, 2000, NULL), POLLER_IN);
  ASSERT_EQ(t_drain(a), 1);
  if (wait_between)
    ASSERT_EQ(t_wait_once(p, a, 0), 0);
  t_close(b);
  unsigned got = t_wait_exactly_once(p, a, 2000, NULL);
  ASSERT_BITS(got, POLLER_IN);
  if ((extra & POLLER_RDHUP) && T_BACKEND != POLLER_SELECT)
    ASSERT_BITS(got, POLLER_RDHUP); /* select shows a hang-up as IN */
  t_expect_none(p, a, 100);
  ASSERT_OK(poller_del(p, a));
  t_close(a);
  t_assert_clean(p);
}

TEST(edge_tcp_peer_close_after_drain_reported) {
  tcp_edge_close_after_drain(0, 1);
}

TEST(edge_tcp_peer_close_after_drain_reported_rdhup) {
  tcp_edge_close_after_drain(POLLER_RDHUP, 1);
}

/* As above with no wait between the drain and the peer's close: the
 * emulation never sees the socket not readable, so only the hang-up (to
 * poll(2), RDHUP) tells the close from the data already reported. */
TEST(edge_tcp_peer_close_right_after_drain_reported) {
  tcp_edge_close_after_drain(0, 0);
}

TEST(edge_tcp_peer_close_right_after_drain_reported_rdhup) {
  tcp_edge_close_after_drain(POLLER_RDHUP, 0);
}
