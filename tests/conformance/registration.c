/* SPDX-License-Identifier: MIT */
/*
 * registration.c - conformance group A: add, mod, del, get, next, count,
 * push and pop (issue 2's poller_add, poller_mod,
 * poller_del, get/next/count and push/pop lines).
 */
#include "harness.h"
#include "internal.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

static int tag_a, tag_b, tag_c;

/* A1: add returns a key with the fd, events and data given; get finds it. */
TEST(reg_returns_key) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN | POLLER_OUT, &tag_a));
  ASSERT_EQ(poller_count(p), 1);
  poller_event key;
  ASSERT_OK(poller_get(p, sv[0], &key));
  ASSERT_EQ(key.fd, sv[0]);
  ASSERT_EQ(key.events, POLLER_IN | POLLER_OUT);
  ASSERT_TRUE(key.data == &tag_a);
  ASSERT_NE(key.gen, 0);
  ASSERT_EQ(poller_depth(p, sv[0]), 1);
  ASSERT_ERR(poller_get(p, sv[1], &key), -ENOENT);
  ASSERT_EQ(poller_depth(p, sv[1]), 0);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* A2: a second add of the same fd is -EEXIST and the first key stays. */
TEST(reg_duplicate_rejected) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag_a));
  ASSERT_OK(poller_flush(p));
  ASSERT_ERR(poller_add(p, sv[0], POLLER_OUT, &tag_b), -EEXIST);
  poller_event key;
  ASSERT_OK(poller_get(p, sv[0], &key));
  ASSERT_EQ(key.events, POLLER_IN);
  ASSERT_TRUE(key.data == &tag_a);
  ASSERT_EQ(poller_count(p), 1);
  /* The first registration still works: OUT is not reported, IN is. */
  ASSERT_EQ(t_wait_once(p, sv[0], 50), 0);
  t_write(sv[1], 1);
  poller_event ev;
  t_wait_for(p, sv[0], POLLER_IN, 2000, &ev);
  ASSERT_NOBITS(ev.events, POLLER_OUT);
  ASSERT_TRUE(ev.data == &tag_a);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* A3 / H49: an empty mask, a mode without a readiness bit, report-only or
 * unknown bits are -EINVAL and create no key (never truncated into a valid
 * mask). */
TEST(reg_bad_mask_rejected) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  static const unsigned bad[] = {
      0,
      POLLER_ET,
      POLLER_ONESHOT,
      POLLER_ET | POLLER_ONESHOT,
      POLLER_NVAL,
      POLLER_IN | POLLER_NVAL,
      POLLER_IN | 0x80u,
      POLLER_IN | 0x400u,
      POLLER_IN | 0x10000u,
      POLLER_IN | 1u << 29,
      0x10000u | 0x1u << 20,
      ~0u,
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ASSERT_ERR(poller_add(p, sv[0], bad[i], NULL), -EINVAL);
    ASSERT_ERR(poller_push(p, sv[0], bad[i], NULL), -EINVAL);
    ASSERT_EQ(poller_count(p), 0);
    ASSERT_EQ(poller_depth(p, sv[0]), 0);
  }
  /* mod with a bad mask leaves the key as it was. */
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag_a));
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    ASSERT_ERR(poller_mod(p, sv[0], bad[i], &tag_b), -EINVAL);
  poller_event key;
  ASSERT_OK(poller_get(p, sv[0], &key));
  ASSERT_EQ(key.events, POLLER_IN);
  ASSERT_TRUE(key.data == &tag_a);
  /* Every single valid bit is accepted, each mode with a readiness bit. */
  ASSERT_OK(poller_mod(p, sv[0], POLLER_INTEREST_MASK, NULL));
  ASSERT_OK(poller_mod(p, sv[0], POLLER_HUP, NULL));
  ASSERT_OK(poller_mod(p, sv[0], POLLER_ERR, NULL));
  ASSERT_OK(poller_flush(p));
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* A4: del, mod, get, pop of an unknown fd, and a second del, are -ENOENT
 * and change nothing. */
TEST(unreg_unknown_and_twice) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  poller_event key;
  ASSERT_ERR(poller_del(p, sv[0]), -ENOENT);
  ASSERT_ERR(poller_mod(p, sv[0], POLLER_IN, NULL), -ENOENT);
  ASSERT_ERR(poller_pop(p, sv[0]), -ENOENT);
  ASSERT_ERR(poller_get(p, sv[0], &key), -ENOENT);
  ASSERT_ERR(poller_del(p, 100000), -ENOENT);
  ASSERT_ERR(poller_mod(p, 100000, POLLER_IN, NULL), -ENOENT);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag_a));
  ASSERT_OK(poller_add(p, sv[1], POLLER_IN, &tag_b));
  ASSERT_OK(poller_del(p, sv[0]));
  ASSERT_ERR(poller_del(p, sv[0]), -ENOENT);
  ASSERT_ERR(poller_pop(p, sv[0]), -ENOENT);
  ASSERT_EQ(poller_count(p), 1);
  ASSERT_OK(poller_get(p, sv[1], &key));
  ASSERT_TRUE(key.data == &tag_b);
  ASSERT_OK(poller_del(p, sv[1]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* A5: mod changes events (honoured at the next wait) and data. */
TEST(modify_events_and_data) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag_a));
  ASSERT_EQ(t_wait_once(p, sv[0], 20), 0);
  ASSERT_OK(poller_mod(p, sv[0], POLLER_OUT, &tag_b));
  poller_event ev;
  t_wait_for(p, sv[0], POLLER_OUT, 2000, &ev);
  ASSERT_TRUE(ev.data == &tag_b);
  ASSERT_OK(poller_mod(p, sv[0], POLLER_IN, &tag_c));
  ASSERT_EQ(t_wait_once(p, sv[0], 20), 0);
  t_write(sv[1], 1);
  t_wait_for(p, sv[0], POLLER_IN, 2000, &ev);
  ASSERT_TRUE(ev.data == &tag_c);
  ASSERT_NOBITS(ev.events, POLLER_OUT);
  poller_event key;
  ASSERT_OK(poller_get(p, sv[0], &key));
  ASSERT_EQ(key.events, POLLER_IN);
  ASSERT_TRUE(key.data == &tag_c);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* A5: a change of data alone costs no system call and no kernel change,
 * and the next report carries the new data. */
TEST(modify_data_only_no_syscall) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag_a));
  ASSERT_OK(poller_flush(p));
  poller_stats before, after;
  ASSERT_OK(poller_stats_get(p, &before));
  for (int i = 0; i < 100; i++)
    ASSERT_OK(poller_mod(p, sv[0], POLLER_IN, i % 2 ? &tag_b : &tag_c));
  ASSERT_OK(poller_flush(p));
  ASSERT_OK(poller_stats_get(p, &after));
  ASSERT_EQ(after.syscalls, before.syscalls);
  ASSERT_EQ(after.changes, before.changes);
  t_write(sv[1], 1);
  poller_event ev;
  t_wait_for(p, sv[0], POLLER_IN, 2000, &ev);
  ASSERT_TRUE(ev.data == &tag_b); /* the last mod (i = 99) */
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* Lazy changes: a mod (or push) undone before the next flush costs neither
 * a system call nor a kernel change. */
TEST(lazy_change_undone_costs_nothing) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag_a));
  ASSERT_OK(poller_flush(p));
  poller_stats before, after;
  ASSERT_OK(poller_stats_get(p, &before));
  ASSERT_OK(poller_mod(p, sv[0], POLLER_OUT, &tag_b));
  ASSERT_OK(poller_mod(p, sv[0], POLLER_IN | POLLER_OUT, &tag_b));
  ASSERT_OK(poller_mod(p, sv[0], POLLER_IN, &tag_a));
  ASSERT_OK(poller_push(p, sv[0], POLLER_OUT, &tag_c));
  ASSERT_OK(poller_pop(p, sv[0]));
  ASSERT_OK(poller_flush(p));
  ASSERT_OK(poller_stats_get(p, &after));
  ASSERT_EQ(after.syscalls, before.syscalls);
  ASSERT_EQ(after.changes, before.changes);
  /* A change that is not undone does reach the kernel, once. */
  ASSERT_OK(poller_mod(p, sv[0], POLLER_OUT, &tag_b));
  ASSERT_OK(poller_mod(p, sv[0], POLLER_IN | POLLER_OUT, &tag_b));
  ASSERT_OK(poller_flush(p));
  ASSERT_OK(poller_stats_get(p, &after));
  ASSERT_EQ(after.changes, before.changes + 1);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* A6 / G43: when the kernel refuses an interest change, poller_flush
 * returns the error and the registration stays in the table, disarmed
 * (never half registered: nothing is armed in the kernel); it is
 * reported once as ERR|NVAL, poller_del then succeeds, and the poller
 * keeps working. */
TEST(modify_failure_disarms_key) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag_a));
  ASSERT_OK(poller_add(p, sv[1], POLLER_IN, &tag_b));
  ASSERT_OK(poller_flush(p));
  poller__fault_set(POLLER__FAULT_CTL, -ENOMEM);
  ASSERT_OK(poller_mod(p, sv[0], POLLER_IN | POLLER_OUT, &tag_c));
  int r = poller_flush(p);
  poller__fault_set(POLLER__FAULT_CTL, 0);
  ASSERT_ERR(r, -ENOMEM);
  poller_event key;
  ASSERT_OK(poller_get(p, sv[0], &key));
  ASSERT_EQ(key.events, POLLER_IN | POLLER_OUT);
  ASSERT_TRUE(key.data == &tag_c);
  ASSERT_EQ(poller_depth(p, sv[0]), 1);
  ASSERT_EQ(poller_count(p), 2);
  /* The flush error is not returned again; the refusal is reported once
   * (NVAL), and never as readiness: nothing is armed. */
  ASSERT_OK(poller_flush(p));
  t_write(sv[0], 1);
  poller_event ev;
  t_wait_for(p, sv[0], POLLER_NVAL, 2000, &ev);
  ASSERT_EQ(ev.events, POLLER_ERR | POLLER_NVAL);
  ASSERT_TRUE(ev.data == &tag_c);
  t_write(sv[1], 1);
  t_expect_none(p, sv[0], 50);
  ASSERT_OK(poller_del(p, sv[0]));
  ASSERT_EQ(poller_count(p), 1);
  /* The other registration works, and the fd can be added again. */
  t_wait_for(p, sv[1], POLLER_IN, 2000, NULL);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag_a));
  t_wait_for(p, sv[0], POLLER_IN, 2000, &ev);
  ASSERT_TRUE(ev.data == &tag_a);
  ASSERT_OK(poller_del(p, sv[0]));
  ASSERT_OK(poller_del(p, sv[1]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* A6, the wait path: a refused change found by poller_wait is reported
 * once as ERR|NVAL with the registration's data; the key stays (disarmed)
 * until poller_del, which succeeds. */
TEST(modify_failure_wait_reports_nval) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &tag_a));
  ASSERT_OK(poller_flush(p));
  ASSERT_OK(poller_mod(p, sv[0], POLLER_OUT, &tag_b));
  poller__fault_set(POLLER__FAULT_CTL, -ENOSPC);
  poller_event out[8];
  int n = poller_wait(p, out, 8, 1000);
  poller__fault_set(POLLER__FAULT_CTL, 0);
  ASSERT_EQ(n, 1);
  ASSERT_EQ(out[0].fd, sv[0]);
  ASSERT_EQ(out[0].events, POLLER_ERR | POLLER_NVAL);
  ASSERT_TRUE(out[0].data == &tag_b);
  ASSERT_EQ(poller_current(p, &out[0]), 1);
  poller_event key;
  ASSERT_OK(poller_get(p, sv[0], &key));
  ASSERT_TRUE(key.data == &tag_b);
  ASSERT_EQ(poller_count(p), 1);
  /* Reported once: the next waits say nothing about it. */
  t_expect_none(p, sv[0], 50);
  ASSERT_OK(poller_del(p, sv[0]));
  ASSERT_EQ(poller_current(p, &out[0]), 0);
  ASSERT_ERR(poller_del(p, sv[0]), -ENOENT);
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* A6 for add: a refused add is either refused by poller_add itself (epoll
 * refuses at add: no key) or, where the add is deferred (select, poll),
 * by the next flush: the add succeeded, so the key stays, disarmed and
 * reported once as NVAL, until poller_del. */
TEST(add_failure_key_follows_add) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  poller__fault_set(POLLER__FAULT_CTL, -ENOMEM);
  int r = poller_add(p, sv[0], POLLER_IN, &tag_a);
  int f = poller_flush(p);
  poller__fault_set(POLLER__FAULT_CTL, 0);
  /* Either the add itself or the flush after it reports the error. */
  ASSERT_TRUE((r == -ENOMEM && f == 0) || (r == 0 && f == -ENOMEM));
  poller_event key;
  if (r < 0) {
    ASSERT_ERR(poller_get(p, sv[0], &key), -ENOENT);
    ASSERT_EQ(poller_count(p), 0);
  } else {
    ASSERT_OK(poller_get(p, sv[0], &key));
    ASSERT_EQ(poller_count(p), 1);
    poller_event ev;
    t_wait_for(p, sv[0], POLLER_NVAL, 2000, &ev);
    ASSERT_TRUE(ev.data == &tag_a);
    t_expect_none(p, sv[0], 50);
    ASSERT_OK(poller_del(p, sv[0]));
  }
  ASSERT_OK(poller_add(p, sv[0], POLLER_OUT, &tag_b));
  t_wait_for(p, sv[0], POLLER_OUT, 2000, NULL);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* A7: count, get and next agree after any mix of add, mod and del. */
TEST(map_view_consistency) {
  poller *p;
  enum { N = 40 };
  int sv[N][2];
  int on[N] = {0};
  t_open(&p);
  for (int i = 0; i < N; i++)
    t_socketpair(sv[i]);
  unsigned seed = 12345;
  for (int step = 0; step < 2000; step++) {
    seed = seed * 1103515245u + 12345u;
    int i = (int)((seed >> 16) % N);
    int fd = sv[i][0];
    switch ((seed >> 4) % 3) {
    case 0:
      ASSERT_ERR(poller_add(p, fd, POLLER_IN, &sv[i]), on[i] ? -EEXIST : 0);
      on[i] = 1;
      break;
    case 1:
      ASSERT_ERR(poller_mod(p, fd, POLLER_OUT, &sv[i][1]),
                 on[i] ? 0 : -ENOENT);
      break;
    default:
      ASSERT_ERR(poller_del(p, fd), on[i] ? 0 : -ENOENT);
      on[i] = 0;
      break;
    }
    if (step % 97 == 0)
      (void)t_wait_once(p, -1, 0);
  }
  /* Check the view: count, next in ascending fd order, get. */
  size_t expect = 0;
  for (int i = 0; i < N; i++)
    expect += (size_t)on[i];
  ASSERT_EQ(poller_count(p), expect);
  size_t seen = 0;
  int last = -1;
  poller_event key;
  while (poller_next(p, last, &key) == 0) {
    ASSERT_GT(key.fd, last);
    last = key.fd;
    int idx = -1;
    for (int i = 0; i < N; i++)
      if (sv[i][0] == key.fd)
        idx = i;
    ASSERT_GE(idx, 0);
    ASSERT_TRUE(on[idx]);
    ASSERT_TRUE(key.data == &sv[idx] || key.data == &sv[idx][1]);
    poller_event k2;
    ASSERT_OK(poller_get(p, key.fd, &k2));
    ASSERT_EQ(k2.events, key.events);
    ASSERT_EQ(k2.gen, key.gen);
    seen++;
  }
  ASSERT_EQ(seen, expect);
  ASSERT_ERR(poller_next(p, last, &key), -ENOENT);
  /* Deleting while iterating (after the current key) is safe. */
  last = -1;
  while (poller_next(p, last, &key) == 0) {
    last = key.fd;
    ASSERT_OK(poller_del(p, key.fd));
  }
  ASSERT_EQ(poller_count(p), 0);
  for (int i = 0; i < N; i++) {
    t_close(sv[i][0]);
    t_close(sv[i][1]);
  }
  t_assert_clean(p);
}

/* push/pop: greenhouse's registration stack. */
TEST(push_pop_stack) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  poller_event key, ev;
  /* push on an unregistered fd registers it, as add. */
  ASSERT_OK(poller_push(p, sv[0], POLLER_IN, &tag_a));
  ASSERT_EQ(poller_depth(p, sv[0]), 1);
  ASSERT_EQ(poller_count(p), 1);
  ASSERT_OK(poller_get(p, sv[0], &key));
  unsigned gen = key.gen;
  /* push on a registered fd saves the top and installs the new entry. */
  ASSERT_OK(poller_push(p, sv[0], POLLER_OUT, &tag_b));
  ASSERT_EQ(poller_depth(p, sv[0]), 2);
  ASSERT_EQ(poller_count(p), 1);
  ASSERT_OK(poller_get(p, sv[0], &key));
  ASSERT_EQ(key.events, POLLER_OUT);
  ASSERT_TRUE(key.data == &tag_b);
  ASSERT_EQ(key.gen, gen); /* the same registration */
  t_wait_for(p, sv[0], POLLER_OUT, 2000, &ev);
  ASSERT_TRUE(ev.data == &tag_b);
  /* mod changes the top only. */
  ASSERT_OK(poller_mod(p, sv[0], POLLER_OUT, &tag_c));
  ASSERT_OK(poller_push(p, sv[0], POLLER_IN | POLLER_PRI, &tag_a));
  ASSERT_EQ(poller_depth(p, sv[0]), 3);
  /* pop restores the entry below. */
  ASSERT_OK(poller_pop(p, sv[0]));
  ASSERT_OK(poller_get(p, sv[0], &key));
  ASSERT_EQ(key.events, POLLER_OUT);
  ASSERT_TRUE(key.data == &tag_c);
  t_wait_for(p, sv[0], POLLER_OUT, 2000, &ev);
  ASSERT_TRUE(ev.data == &tag_c);
  ASSERT_OK(poller_pop(p, sv[0]));
  ASSERT_OK(poller_get(p, sv[0], &key));
  ASSERT_EQ(key.events, POLLER_IN);
  ASSERT_TRUE(key.data == &tag_a);
  ASSERT_EQ(poller_depth(p, sv[0]), 1);
  /* The restored interest is the one in force: IN, not OUT. */
  ASSERT_EQ(t_wait_once(p, sv[0], 30), 0);
  t_write(sv[1], 1);
  t_wait_for(p, sv[0], POLLER_IN, 2000, &ev);
  ASSERT_TRUE(ev.data == &tag_a);
  ASSERT_NOBITS(ev.events, POLLER_OUT);
  /* pop of the last entry unregisters. */
  ASSERT_OK(poller_pop(p, sv[0]));
  ASSERT_EQ(poller_depth(p, sv[0]), 0);
  ASSERT_EQ(poller_count(p), 0);
  ASSERT_ERR(poller_get(p, sv[0], &key), -ENOENT);
  ASSERT_ERR(poller_pop(p, sv[0]), -ENOENT);
  t_expect_none(p, sv[0], 30);
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* del drops the whole stack at once; a new push starts a new registration
 * with a new generation. */
TEST(del_drops_whole_stack) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_push(p, sv[0], POLLER_IN, &tag_a));
  poller_event key;
  ASSERT_OK(poller_get(p, sv[0], &key));
  unsigned gen = key.gen;
  for (int i = 0; i < 20; i++)
    ASSERT_OK(poller_push(p, sv[0], i % 2 ? POLLER_IN : POLLER_OUT, &tag_b));
  ASSERT_EQ(poller_depth(p, sv[0]), 21);
  ASSERT_OK(poller_del(p, sv[0]));
  ASSERT_EQ(poller_depth(p, sv[0]), 0);
  ASSERT_EQ(poller_count(p), 0);
  t_expect_none(p, sv[0], 30);
  ASSERT_OK(poller_push(p, sv[0], POLLER_OUT, &tag_c));
  ASSERT_EQ(poller_depth(p, sv[0]), 1);
  ASSERT_OK(poller_get(p, sv[0], &key));
  ASSERT_NE(key.gen, gen);
  poller_event ev;
  t_wait_for(p, sv[0], POLLER_OUT, 2000, &ev);
  ASSERT_TRUE(ev.data == &tag_c);
  ASSERT_EQ(ev.gen, key.gen);
  ASSERT_OK(poller_pop(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* A9 / issue 2: a regular file is accepted by add on every backend (epoll
 * refuses it with EPERM, asio#111) and reported always ready, as select
 * and poll report it: IN and OUT at every wait, level-triggered. */
TEST(register_regular_file) {
  T_POSIX_ONLY("regular files are not sockets (refused with ENOTSOCK, test win_non_socket_refused)");
  poller *p;
  t_open(&p);
  char path[] = "/tmp/poller-test-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_SYS(fd);
  ASSERT_SYS(unlink(path));
  ASSERT_OK(poller_add(p, fd, POLLER_IN | POLLER_OUT, &tag_a));
  poller_event key;
  ASSERT_OK(poller_get(p, fd, &key));
  ASSERT_EQ(key.events, POLLER_IN | POLLER_OUT);
  for (int i = 0; i < 3; i++) {
    poller_event ev;
    t_wait_for(p, fd, POLLER_IN | POLLER_OUT, 1000, &ev);
    ASSERT_TRUE(ev.data == &tag_a);
  }
  /* mod to OUT only: IN no longer reported. */
  ASSERT_OK(poller_mod(p, fd, POLLER_OUT, &tag_b));
  unsigned got = t_wait_for(p, fd, POLLER_OUT, 1000, NULL);
  ASSERT_NOBITS(got, POLLER_IN);
  /* ONESHOT: once, then nothing until mod. */
  ASSERT_OK(poller_mod(p, fd, POLLER_IN | POLLER_ONESHOT, &tag_c));
  t_wait_for(p, fd, POLLER_IN, 1000, NULL);
  t_expect_none(p, fd, 30);
  ASSERT_OK(poller_mod(p, fd, POLLER_IN | POLLER_ONESHOT, &tag_c));
  t_wait_for(p, fd, POLLER_IN, 1000, NULL);
  /* ET: a file never changes, so one report. */
  ASSERT_OK(poller_mod(p, fd, POLLER_IN | POLLER_ET, &tag_c));
  t_wait_for(p, fd, POLLER_IN, 1000, NULL);
  t_expect_none(p, fd, 30);
  ASSERT_OK(poller_del(p, fd));
  t_expect_none(p, fd, 30);
  t_close(fd);
  t_assert_clean(p);
}

/* /dev/null (refused by epoll like a regular file): readable at once. */
TEST(register_dev_null) {
  T_POSIX_ONLY("no /dev/null; non-sockets are refused with ENOTSOCK (test win_non_socket_refused)");
  poller *p;
  t_open(&p);
  int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  ASSERT_SYS(fd);
  ASSERT_OK(poller_add(p, fd, POLLER_IN, &tag_a));
  poller_event ev;
  t_wait_for(p, fd, POLLER_IN, 1000, &ev);
  ASSERT_TRUE(ev.data == &tag_a);
  ASSERT_OK(poller_del(p, fd));
  t_close(fd);
  t_assert_clean(p);
}

/* A11: while handling fd A of a batch, deleting fd B (ready in the same
 * batch) makes B's report not current; changing B's interest so that it no
 * longer wants the reported bits does too. */
TEST(unregister_other_fd_in_batch) {
  poller *p;
  int a[2], b[2], c[2];
  t_open(&p);
  t_socketpair(a);
  t_socketpair(b);
  t_socketpair(c);
  ASSERT_OK(poller_add(p, a[0], POLLER_IN, &tag_a));
  ASSERT_OK(poller_add(p, b[0], POLLER_IN, &tag_b));
  ASSERT_OK(poller_add(p, c[0], POLLER_IN, &tag_c));
  t_write(a[1], 1);
  t_write(b[1], 1);
  t_write(c[1], 1);
  poller_event out[8];
  int n = 0;
  /* Collect one batch holding all three (level: they stay ready). */
  for (int tries = 0; tries < 100 && n < 3; tries++)
    n = poller_wait(p, out, 8, 100);
  ASSERT_EQ(n, 3);
  int ib = -1, ic = -1;
  for (int i = 0; i < n; i++) {
    ASSERT_EQ(poller_current(p, &out[i]), 1);
    if (out[i].fd == b[0])
      ib = i;
    if (out[i].fd == c[0])
      ic = i;
  }
  ASSERT_GE(ib, 0);
  ASSERT_GE(ic, 0);
  ASSERT_OK(poller_del(p, b[0]));
  ASSERT_EQ(poller_current(p, &out[ib]), 0);
  ASSERT_OK(poller_mod(p, c[0], POLLER_OUT, &tag_c));
  ASSERT_EQ(poller_current(p, &out[ic]), 0);
  /* Re-adding B gives a new registration: the old report stays stale. */
  ASSERT_OK(poller_add(p, b[0], POLLER_IN, &tag_b));
  ASSERT_EQ(poller_current(p, &out[ib]), 0);
  ASSERT_OK(poller_del(p, a[0]));
  ASSERT_OK(poller_del(p, b[0]));
  ASSERT_OK(poller_del(p, c[0]));
  for (int i = 0; i < 2; i++) {
    t_close(a[i]);
    t_close(b[i]);
    t_close(c[i]);
  }
  t_assert_clean(p);
}
