/* SPDX-License-Identifier: MIT */
/*
 * modes.c - conformance group D: edge-triggered, oneshot and level modes
 * (issue 2's modes line).  ET is native on
 * epoll, kqueue and io_uring and emulated on select and poll by reporting
 * readiness transitions only; poller_caps says which.
 */
#include "harness.h"

#include <unistd.h>

/* D29: edge mode reports a new arrival once, not again while the data
 * sits unread. */
TEST(edge_reported_once) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN | POLLER_ET, &sv[0]));
  t_expect_none(p, sv[0], 30);
  t_write(sv[1], 10);
  poller_event ev;
  t_wait_for(p, sv[0], POLLER_IN, 2000, &ev);
  ASSERT_TRUE(ev.data == &sv[0]);
  t_expect_none(p, sv[0], 100);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* D30: after draining to EAGAIN, new data is reported again. */
TEST(edge_rearm_after_drain) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN | POLLER_ET, NULL));
  for (int round = 0; round < 5; round++) {
    t_write(sv[1], 7);
    t_wait_for(p, sv[0], POLLER_IN, 2000, NULL);
    t_expect_none(p, sv[0], 20);
    ASSERT_EQ(t_drain(sv[0]), 7);
    t_expect_none(p, sv[0], 20);
  }
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* D30, the usual ET loop: read until EAGAIN, and new data arrives before
 * the next wait.  It must be reported (natively it is).  The emulation on
 * select and poll cannot see a read: to it, a drain refilled before the
 * next wait looks like a partial drain, so it is skipped there. */
TEST(edge_drain_then_data_before_wait) {
  poller *p;
  int sv[2];
  t_open(&p);
  if (!(poller_caps(p) & POLLER_ET)) {
    poller_close(p);
    SKIP("emulated ET reports transitions only (a drain refilled before "
         "the next wait is not one)");
  }
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN | POLLER_ET, NULL));
  for (int round = 0; round < 5; round++) {
    t_write(sv[1], 3);
    t_wait_for(p, sv[0], POLLER_IN, 2000, NULL);
    ASSERT_EQ(t_drain(sv[0]), 3);
  }
  t_write(sv[1], 1);
  t_wait_for(p, sv[0], POLLER_IN, 2000, NULL);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* D30: a partial drain followed by new data reports again (native ET
 * only: the emulation reports transitions from not-ready to ready, and a
 * partly drained fd never stopped being ready). */
TEST(edge_partial_drain_new_data) {
  poller *p;
  int sv[2];
  t_open(&p);
  if (!(poller_caps(p) & POLLER_ET)) {
    poller_close(p);
    SKIP("emulated ET reports transitions only");
  }
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN | POLLER_ET, NULL));
  t_write(sv[1], 10);
  t_wait_for(p, sv[0], POLLER_IN, 2000, NULL);
  char c;
  ASSERT_EQ(read(sv[0], &c, 1), 1);
  t_expect_none(p, sv[0], 30);
  t_write(sv[1], 10);
  t_wait_for(p, sv[0], POLLER_IN, 2000, NULL);
  ASSERT_EQ(t_drain(sv[0]), 19);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* ET on OUT: writable reported once; after the buffer filled and the peer
 * drained it, writable again. */
TEST(edge_out_transitions) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_OUT | POLLER_ET, NULL));
  t_wait_for(p, sv[0], POLLER_OUT, 2000, NULL);
  t_expect_none(p, sv[0], 50);
  char buf[65536];
  memset(buf, 'z', sizeof buf);
  while (write(sv[0], buf, sizeof buf) > 0) {
  }
  ASSERT_EQ(errno, EAGAIN);
  t_expect_none(p, sv[0], 50);
  t_drain(sv[1]);
  t_wait_for(p, sv[0], POLLER_OUT, 2000, NULL);
  t_expect_none(p, sv[0], 50);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* ET with IN and OUT: OUT is reported at once; data arriving later is a
 * new readiness (IN) and is reported although OUT held all along. */
TEST(edge_in_after_out) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN | POLLER_OUT | POLLER_ET, NULL));
  unsigned got = t_wait_for(p, sv[0], POLLER_OUT, 2000, NULL);
  ASSERT_NOBITS(got, POLLER_IN);
  t_expect_none(p, sv[0], 50);
  t_write(sv[1], 1);
  t_wait_for(p, sv[0], POLLER_IN, 2000, NULL);
  t_expect_none(p, sv[0], 50);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* ET: a peer close after the last report is a new readiness (HUP or, on
 * select, IN after a drain). */
TEST(edge_reports_peer_close) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN | POLLER_ET, NULL));
  t_write(sv[1], 1);
  t_wait_for(p, sv[0], POLLER_IN, 2000, NULL);
  ASSERT_EQ(t_drain(sv[0]), 1);
  t_close(sv[1]);
  t_wait_for(p, sv[0], POLLER_IN, 2000, NULL);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_assert_clean(p);
}

/* D31: oneshot delivers once, then nothing until mod re-arms it; the key
 * stays registered while disarmed. */
TEST(oneshot_disarms_and_rearms) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN | POLLER_ONESHOT, &sv[0]));
  t_write(sv[1], 1);
  poller_event ev;
  t_wait_for(p, sv[0], POLLER_IN, 2000, &ev);
  ASSERT_TRUE(ev.data == &sv[0]);
  t_expect_none(p, sv[0], 50);
  ASSERT_EQ(t_drain(sv[0]), 1);
  t_write(sv[1], 1);
  t_expect_none(p, sv[0], 50);
  poller_event key;
  ASSERT_OK(poller_get(p, sv[0], &key));
  ASSERT_EQ(key.events, POLLER_IN | POLLER_ONESHOT);
  ASSERT_EQ(poller_count(p), 1);
  /* Re-armed with data pending: reported at once, with the new data. */
  ASSERT_OK(poller_mod(p, sv[0], POLLER_IN | POLLER_ONESHOT, &sv[1]));
  t_wait_for(p, sv[0], POLLER_IN, 2000, &ev);
  ASSERT_TRUE(ev.data == &sv[1]);
  t_expect_none(p, sv[0], 50);
  /* Re-armed to level mode: reported at every wait. */
  ASSERT_OK(poller_mod(p, sv[0], POLLER_IN, NULL));
  t_wait_for(p, sv[0], POLLER_IN, 2000, NULL);
  t_wait_for(p, sv[0], POLLER_IN, 2000, NULL);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* D31: re-arm with the same mask and data works too (a mod that changes
 * nothing but the armed state), several times over. */
TEST(oneshot_rearm_same_mask) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_OUT | POLLER_ONESHOT, NULL));
  for (int i = 0; i < 5; i++) {
    t_wait_for(p, sv[0], POLLER_OUT, 2000, NULL);
    t_expect_none(p, sv[0], 20);
    ASSERT_OK(poller_mod(p, sv[0], POLLER_OUT | POLLER_ONESHOT, NULL));
  }
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* ONESHOT through a stack: push re-arms, pop restores the entry below. */
TEST(oneshot_with_push_pop) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_OUT | POLLER_ONESHOT, NULL));
  t_wait_for(p, sv[0], POLLER_OUT, 2000, NULL);
  t_expect_none(p, sv[0], 20);
  ASSERT_OK(poller_push(p, sv[0], POLLER_OUT, NULL));
  t_wait_for(p, sv[0], POLLER_OUT, 2000, NULL);
  t_wait_for(p, sv[0], POLLER_OUT, 2000, NULL);
  ASSERT_OK(poller_pop(p, sv[0]));
  /* The restored ONESHOT entry is armed again, fires once. */
  t_wait_for(p, sv[0], POLLER_OUT, 2000, NULL);
  t_expect_none(p, sv[0], 20);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* ET | ONESHOT: one report, then nothing until mod. */
TEST(edge_oneshot_combined) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(
      poller_add(p, sv[0], POLLER_IN | POLLER_ET | POLLER_ONESHOT, NULL));
  t_write(sv[1], 1);
  t_wait_for(p, sv[0], POLLER_IN, 2000, NULL);
  ASSERT_EQ(t_drain(sv[0]), 1);
  t_write(sv[1], 1);
  t_expect_none(p, sv[0], 50);
  ASSERT_OK(
      poller_mod(p, sv[0], POLLER_IN | POLLER_ET | POLLER_ONESHOT, NULL));
  t_wait_for(p, sv[0], POLLER_IN, 2000, NULL);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* D32: level mode reports at every wait while data remains. */
TEST(level_repeats_until_drained) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, NULL));
  t_write(sv[1], 100);
  for (int i = 0; i < 5; i++) {
    ASSERT_EQ(t_wait_once(p, sv[0], 2000), POLLER_IN);
    char c;
    ASSERT_EQ(read(sv[0], &c, 1), 1);
  }
  ASSERT_EQ(t_drain(sv[0]), 95);
  t_expect_none(p, sv[0], 50);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* Switching modes with mod: ET to level reports the pending data again. */
TEST(mode_switch_edge_to_level) {
  poller *p;
  int sv[2];
  t_open(&p);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN | POLLER_ET, NULL));
  t_write(sv[1], 3);
  t_wait_for(p, sv[0], POLLER_IN, 2000, NULL);
  t_expect_none(p, sv[0], 30);
  ASSERT_OK(poller_mod(p, sv[0], POLLER_IN, NULL));
  t_wait_for(p, sv[0], POLLER_IN, 2000, NULL);
  t_wait_for(p, sv[0], POLLER_IN, 2000, NULL);
  ASSERT_OK(poller_mod(p, sv[0], POLLER_IN | POLLER_ET, NULL));
  t_wait_for(p, sv[0], POLLER_IN, 2000, NULL);
  t_expect_none(p, sv[0], 30);
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}

/* poller_caps says what is native: ONESHOT and ET on epoll, kqueue and
 * io_uring, nothing on select and poll; never other bits. */
TEST(caps_match_backend) {
  poller *p;
  t_open(&p);
  unsigned caps = poller_caps(p);
  ASSERT_NOBITS(caps, ~(POLLER_ET | POLLER_ONESHOT));
  if (T_BACKEND == POLLER_SELECT || T_BACKEND == POLLER_POLL)
    ASSERT_EQ(caps, 0);
  if (T_BACKEND == POLLER_EPOLL || T_BACKEND == POLLER_KQUEUE)
    ASSERT_EQ(caps, POLLER_ET | POLLER_ONESHOT);
  ASSERT_EQ(poller_caps(NULL), 0);
  t_assert_clean(p);
}
