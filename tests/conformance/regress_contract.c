/* SPDX-License-Identifier: MIT */
/*
 * regress_contract.c - the registration lifecycle, identical on every
 * backend (issue 8: "one contract that holds identically on every
 * backend").  poller never removes a registration by itself: a
 * registration exists from a successful poller_add or poller_push until the
 * caller's poller_del or poller_pop (or poller_close).  A change the kernel
 * refuses, or an fd found closed (select, poll), disarms the registration
 * and reports it once as ERR|NVAL; the table (count, get, next, depth)
 * does not change, poller_del then succeeds, and poller_mod re-arms it.
 */
#include "harness.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

static int tag_a, tag_b, tag_c;

/* Waits once (timeout_ms) and returns the number of reports for fd,
 * storing the last in *ev. */
static int reports_for(poller *p, int fd, int timeout_ms, poller_event *ev) {
  poller_event out[8];
  int n = poller_wait(p, out, 8, timeout_ms);
  ASSERT_GE(n, 0);
  int got = 0;
  for (int i = 0; i < n; i++)
    if (out[i].fd == fd) {
      got++;
      if (ev)
        *ev = out[i];
    }
  return got;
}

/* Asserts that fd is registered with `events` and `data` at depth `depth`,
 * seen through every view of the table. */
static void assert_key(poller *p, int fd, unsigned events, void *data,
                       int depth, size_t count) {
  poller_event key;
  ASSERT_OK(poller_get(p, fd, &key));
  ASSERT_EQ(key.fd, fd);
  ASSERT_EQ(key.events, events);
  ASSERT_TRUE(key.data == data);
  ASSERT_EQ(poller_depth(p, fd), depth);
  ASSERT_EQ(poller_count(p), count);
  ASSERT_OK(poller_next(p, fd - 1, &key));
  ASSERT_EQ(key.fd, fd);
}

/* After the NVAL report of fd: a wait reports nothing more for it and
 * sleeps (a few system calls, not a spin until the deadline). */
static void assert_quiet(poller *p, int fd) {
  poller_stats before, after;
  ASSERT_OK(poller_stats_get(p, &before));
  ASSERT_EQ(reports_for(p, fd, 100, NULL), 0);
  ASSERT_OK(poller_stats_get(p, &after));
  ASSERT_LE(after.syscalls - before.syscalls, 4);
  ASSERT_EQ(after.events, before.events);
}

/* A change the kernel refuses at a wait (the test fault point): the
 * registration is reported once as ERR|NVAL with its data, stays in the
 * table disarmed (count, get, next, depth unchanged), a second wait
 * sleeps, poller_mod re-arms it, and poller_del then returns 0. */
TEST(contract_refused_change_keeps_key) {
  poller *p;
  int sv[2], other[2];
  t_open(&p);
  t_socketpair(sv);
  t_socketpair(other);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag_a));
  ASSERT_OK(poller_add(p, other[0], POLLER_IN, &tag_c));
  ASSERT_OK(poller_flush(p));
  ASSERT_OK(poller_mod(p, sv[0], POLLER_OUT, &tag_b));
  poller__fault_set(POLLER__FAULT_CTL, -ENOSPC);
  poller_event ev;
  int got = reports_for(p, sv[0], 2000, &ev);
  poller__fault_set(POLLER__FAULT_CTL, 0);
  ASSERT_EQ(got, 1);
  ASSERT_EQ(ev.events, POLLER_ERR | POLLER_NVAL);
  ASSERT_TRUE(ev.data == &tag_b);
  ASSERT_EQ(poller_current(p, &ev), 1);
  assert_key(p, sv[0], POLLER_OUT, &tag_b, 1, 2);
  assert_quiet(p, sv[0]);
  ASSERT_EQ(poller_current(p, &ev), 1);
  /* The other registration kept working throughout. */
  t_write(other[1], 1);
  t_wait_for(p, other[0], POLLER_IN, 2000, NULL);
  /* poller_mod re-arms it: the kernel is asked again, and accepts. */
  ASSERT_OK(poller_mod(p, sv[0], POLLER_OUT, &tag_b));
  poller_event again;
  t_wait_for(p, sv[0], POLLER_OUT, 2000, &again);
  ASSERT_TRUE(again.data == &tag_b);
  ASSERT_OK(poller_del(p, sv[0]));
  ASSERT_EQ(poller_current(p, &ev), 0);
  ASSERT_EQ(poller_count(p), 1);
  ASSERT_OK(poller_del(p, other[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_close(other[0]);
  t_close(other[1]);
  t_assert_clean(p);
}

/* The same refusal, then poller_del at once: del returns 0, the key is
 * gone, and nothing more is reported for it. */
TEST(contract_refused_change_then_del) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag_a));
  ASSERT_OK(poller_flush(p));
  ASSERT_OK(poller_mod(p, sv[0], POLLER_IN | POLLER_OUT, &tag_b));
  poller__fault_set(POLLER__FAULT_CTL, -ENOMEM);
  poller_event ev;
  int got = reports_for(p, sv[0], 2000, &ev);
  poller__fault_set(POLLER__FAULT_CTL, 0);
  ASSERT_EQ(got, 1);
  ASSERT_EQ(ev.events, POLLER_ERR | POLLER_NVAL);
  ASSERT_EQ(poller_count(p), 1);
  ASSERT_OK(poller_del(p, sv[0]));
  ASSERT_EQ(poller_current(p, &ev), 0);
  ASSERT_EQ(poller_count(p), 0);
  ASSERT_ERR(poller_del(p, sv[0]), -ENOENT);
  t_write(sv[1], 1);
  t_expect_none(p, sv[0], 50);
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* poller_flush returns the refusal; the registration stays (disarmed),
 * is reported once as ERR|NVAL at the next wait (the caller learns which
 * fd failed), and a push or a pop re-arms it. */
TEST(contract_refused_flush_keeps_key) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag_a));
  ASSERT_OK(poller_flush(p));
  ASSERT_OK(poller_push(p, sv[0], POLLER_OUT, &tag_b));
  poller__fault_set(POLLER__FAULT_CTL, -ENOMEM);
  int r = poller_flush(p);
  poller__fault_set(POLLER__FAULT_CTL, 0);
  ASSERT_ERR(r, -ENOMEM);
  assert_key(p, sv[0], POLLER_OUT, &tag_b, 2, 1);
  /* The error is not returned twice. */
  ASSERT_OK(poller_flush(p));
  poller_event ev;
  ASSERT_EQ(reports_for(p, sv[0], 2000, &ev), 1);
  ASSERT_EQ(ev.events, POLLER_ERR | POLLER_NVAL);
  ASSERT_TRUE(ev.data == &tag_b);
  assert_quiet(p, sv[0]);
  assert_key(p, sv[0], POLLER_OUT, &tag_b, 2, 1);
  /* A push re-arms (the new top is in force)... */
  ASSERT_OK(poller_push(p, sv[0], POLLER_OUT, &tag_c));
  poller_event got;
  t_wait_for(p, sv[0], POLLER_OUT, 2000, &got);
  ASSERT_TRUE(got.data == &tag_c);
  /* ...and so does a pop, down to the first entry. */
  ASSERT_OK(poller_pop(p, sv[0]));
  ASSERT_OK(poller_pop(p, sv[0]));
  assert_key(p, sv[0], POLLER_IN, &tag_a, 1, 1);
  t_write(sv[1], 1);
  t_wait_for(p, sv[0], POLLER_IN, 2000, &got);
  ASSERT_TRUE(got.data == &tag_a);
  ASSERT_OK(poller_pop(p, sv[0]));
  ASSERT_EQ(poller_count(p), 0);
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* Puts a fresh socket on number fd (closed); its peer goes in *peer. */
static void refill_number(int fd, int *peer) {
  int sv[2];
  t_socketpair(sv);
  if (sv[0] != fd) {
    ASSERT_EQ(dup2(sv[0], fd), fd);
    t_close(sv[0]);
  }
  *peer = sv[1];
}

/* A real refusal: the fd is closed behind the poller, then its interest
 * changes, so every backend asks the kernel about the closed number (epoll
 * and kqueue refuse the change with EBADF, io_uring completes the new poll
 * request with it, select and poll find the fd closed).  Reported once,
 * kept in the table until poller_del; a fresh file put on the number and a
 * poller_mod make it work again. */
TEST(contract_closed_then_mod_keeps_key) {
  poller *p;
  int sv[2], peer;
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag_a));
  ASSERT_OK(poller_flush(p));
  int fd = sv[0];
  t_close(fd);
  ASSERT_OK(poller_mod(p, fd, POLLER_IN | POLLER_OUT, &tag_b));
  poller_event ev;
  unsigned bits = t_wait_for(p, fd, POLLER_NVAL, 2000, &ev);
  ASSERT_EQ(bits, POLLER_ERR | POLLER_NVAL);
  ASSERT_TRUE(ev.data == &tag_b);
  ASSERT_EQ(poller_current(p, &ev), 1);
  assert_key(p, fd, POLLER_IN | POLLER_OUT, &tag_b, 1, 1);
  assert_quiet(p, fd);
  /* While the number is still closed, a mod tries again: another NVAL. */
  ASSERT_OK(poller_mod(p, fd, POLLER_IN | POLLER_OUT, &tag_b));
  bits = t_wait_for(p, fd, POLLER_NVAL, 2000, &ev);
  ASSERT_EQ(bits, POLLER_ERR | POLLER_NVAL);
  assert_quiet(p, fd);
  /* A fresh file on the number, and a mod: it is watched again. */
  refill_number(fd, &peer);
  ASSERT_OK(poller_mod(p, fd, POLLER_IN, &tag_c));
  t_write(peer, 1);
  poller_event got;
  t_wait_for(p, fd, POLLER_IN, 2000, &got);
  ASSERT_TRUE(got.data == &tag_c);
  ASSERT_OK(poller_del(p, fd));
  ASSERT_EQ(poller_count(p), 0);
  t_close(fd);
  t_close(peer);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* The same lifecycle while a dup keeps the closed file alive: epoll then
 * still holds the old (file, number) entry, tagged with the registration's
 * generation, and neither the refused change nor its removal can reach it
 * through the closed number.  When a fresh file on the number is re-armed
 * under that generation and the old file becomes ready afterwards, its
 * entry must not report too: one report per fd and wait, for the file now
 * on the number (found by the differential tester: the fd was reported
 * twice, OUT from each file). */
TEST(contract_closed_with_dup_then_rearm_reports_once) {
  poller *p;
  int pp[2], peer;
  t_open(&p);
  t_pipe(pp);
  int fd = pp[1];
  int keep = dup(fd); /* the old file lives on */
  ASSERT_GE(keep, 0);
  ASSERT_OK(poller_add(p, fd, POLLER_OUT, &tag_a));
  t_wait_for(p, fd, POLLER_OUT, 2000, NULL);
  /* The old file stops being writable, so it reports nothing for now. */
  char buf[4096] = {0};
  while (write(keep, buf, sizeof buf) > 0) {
  }
  ASSERT_EQ(errno, EAGAIN);
  t_close(fd);
  ASSERT_OK(poller_mod(p, fd, POLLER_IN | POLLER_OUT, &tag_b));
  poller_event ev;
  unsigned bits = t_wait_for(p, fd, POLLER_NVAL, 2000, &ev);
  ASSERT_EQ(bits, POLLER_ERR | POLLER_NVAL);
  assert_key(p, fd, POLLER_IN | POLLER_OUT, &tag_b, 1, 1);
  /* A fresh, writable file on the number, re-armed by a mod; then the old
   * file becomes writable again. */
  refill_number(fd, &peer);
  ASSERT_OK(poller_mod(p, fd, POLLER_OUT, &tag_c));
  ASSERT_OK(poller_flush(p));
  t_drain(pp[0]);
  for (int round = 0; round < 3; round++) {
    ASSERT_EQ(t_wait_exactly_once(p, fd, 5000, &ev), POLLER_OUT);
    ASSERT_TRUE(ev.data == &tag_c);
  }
  ASSERT_OK(poller_del(p, fd));
  t_close(fd);
  t_close(peer);
  t_close(keep);
  t_close(pp[0]);
  t_assert_clean(p);
}

/* A poller_del made after the registered file left its number cannot
 * remove epoll's entry for that file when a dup keeps it alive: the
 * removal fails with EBADF when the number was closed, with ENOENT when
 * another file was put on it (dup2).  When the file comes back on the
 * number later, under a new registration made for another file, a
 * poller_mod must not reach the old entry instead of the registration's
 * own: one report per fd and wait, with the bits of the file now on the
 * number and of the interest only (found by the differential tester:
 * epoll reported the fd twice, IN from the file the number held at the
 * add and OUT from the old one; the dup2 case by seed 4000003230).  The
 * newer file lives on in pp[0] meanwhile. */
static void mod_after_left_before_del(int replace) {
  poller *p;
  int pp[2], other[2];
  t_open(&p);
  t_pipe(pp);
  t_pipe(other);
  int num = dup(pp[1]); /* the write end under a number of its own */
  ASSERT_GE(num, 0);
  ASSERT_OK(poller_add(p, num, POLLER_PRI, &tag_a));
  ASSERT_OK(poller_flush(p));
  if (replace)
    ASSERT_EQ(dup2(other[0], num), num); /* the write end lives in pp[1] */
  else
    t_close(num);
  ASSERT_OK(poller_del(p, num)); /* the kernel may keep the old entry */
  /* The number gets the read end and a new registration... */
  ASSERT_EQ(dup2(pp[0], num), num);
  ASSERT_OK(poller_add(p, num, POLLER_IN | POLLER_OUT, &tag_b));
  ASSERT_OK(poller_flush(p));
  /* ...then the write end again, and the interest changes.  IN too: the
   * read end's report then passes the interest check, so only the
   * rebuild the marked number asks for drops its entry. */
  ASSERT_EQ(dup2(pp[1], num), num);
  ASSERT_OK(
      poller_mod(p, num, POLLER_IN | POLLER_OUT | POLLER_PRI, &tag_c));
  t_write(pp[1], 1); /* the read end, no longer on the number, is ready */
  for (int round = 0; round < 3; round++) {
    poller_event ev;
    ASSERT_EQ(t_wait_exactly_once(p, num, 5000, &ev), POLLER_OUT);
    ASSERT_TRUE(ev.data == &tag_c);
  }
  ASSERT_OK(poller_del(p, num));
  t_close(num);
  for (int i = 0; i < 2; i++) {
    t_close(pp[i]);
    t_close(other[i]);
  }
  t_assert_clean(p);
}

TEST(mod_after_close_before_del_reports_once) {
  mod_after_left_before_del(0);
}

TEST(mod_after_replaced_before_del_reports_once) {
  mod_after_left_before_del(1);
}

/* select and poll find a registered fd closed behind the poller without
 * any change: the same lifecycle (reported once, kept until poller_del,
 * re-armed by poller_mod once the number is valid again). */
TEST(contract_closed_behind_keeps_key) {
  if (T_BACKEND != POLLER_SELECT && T_BACKEND != POLLER_POLL)
    SKIP("%s watches open files: a closed fd is not reported without a "
         "change (see contract_closed_then_mod_keeps_key)",
         T_BACKEND_NAME);
  poller *p;
  int sv[2], peer;
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag_a));
  ASSERT_OK(poller_flush(p));
  int fd = sv[0];
  t_close(fd);
  poller_event ev;
  unsigned bits = t_wait_for(p, fd, POLLER_NVAL, 2000, &ev);
  ASSERT_EQ(bits, POLLER_ERR | POLLER_NVAL);
  ASSERT_TRUE(ev.data == &tag_a);
  ASSERT_EQ(poller_current(p, &ev), 1);
  assert_key(p, fd, POLLER_IN, &tag_a, 1, 1);
  assert_quiet(p, fd);
  refill_number(fd, &peer);
  ASSERT_OK(poller_mod(p, fd, POLLER_IN, &tag_b));
  t_write(peer, 1);
  poller_event got;
  t_wait_for(p, fd, POLLER_IN, 2000, &got);
  ASSERT_TRUE(got.data == &tag_b);
  ASSERT_OK(poller_del(p, fd));
  ASSERT_EQ(poller_current(p, &ev), 0);
  ASSERT_EQ(poller_count(p), 0);
  t_close(fd);
  t_close(peer);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* A refusal found by the flush inside a wait, for an fd the same wait
 * already reported (emulated ET: the special scan's probe saw a new bit),
 * is reported at the next wait: one report per fd and wait, and the NVAL
 * is neither lost nor repeated. */
TEST(contract_refusal_after_scan_report_once_per_wait) {
  poller *p;
  t_open(&p);
  if (poller_caps(p) & POLLER_ET) {
    poller_close(p);
    SKIP("%s has native ET: no special scan reports", T_BACKEND_NAME);
  }
  int sv[2];
  t_socketpair(sv);
  ASSERT_OK(poller_add(
      p, sv[0], POLLER_IN | POLLER_OUT | POLLER_RDHUP | POLLER_ET, &tag_a));
  t_wait_for(p, sv[0], POLLER_OUT, 2000, NULL);
  /* IN becomes ready: the next wait's probe reports it, and the change it
   * queues (watch RDHUP alone) is refused by the flush of that wait. */
  t_write(sv[1], 1);
  poller__fault_set(POLLER__FAULT_CTL, -ENOMEM);
  poller_event out[8];
  int n = poller_wait(p, out, 8, 2000);
  poller__fault_set(POLLER__FAULT_CTL, 0);
  ASSERT_GE(n, 1);
  int mine = 0;
  unsigned bits = 0;
  for (int i = 0; i < n; i++)
    if (out[i].fd == sv[0]) {
      mine++;
      bits |= out[i].events;
    }
  ASSERT_EQ(mine, 1);
  poller_event ev;
  if (!(bits & POLLER_NVAL)) {
    ASSERT_BITS(bits, POLLER_IN);
    ASSERT_EQ(reports_for(p, sv[0], 2000, &ev), 1);
    ASSERT_EQ(ev.events, POLLER_ERR | POLLER_NVAL);
  }
  assert_quiet(p, sv[0]);
  assert_key(p, sv[0], POLLER_IN | POLLER_OUT | POLLER_RDHUP | POLLER_ET,
             &tag_a, 1, 1);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}
