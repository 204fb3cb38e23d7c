/* SPDX-License-Identifier: MIT */
/*
 * scale.c - conformance group F: many fds, high fd numbers, churn
 * (issue 2's select and scale lines).  Sizes
 * come from RLIMIT_NOFILE, never from this machine's value.
 */
#include "harness.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

/* F38: as many socket pairs as the open-file limit allows (about 50 fds
 * of headroom), every peer writable, one end of each registered for IN;
 * every 7th pair gets data, and the waits report exactly those. */
TEST_TIMEOUT(many_fds_one_wait, 120) {
  struct rlimit rl;
  ASSERT_SYS(getrlimit(RLIMIT_NOFILE, &rl));
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < rl.rlim_max) {
    /* Raise the soft limit to the hard one where allowed (a child). */
    struct rlimit up = {rl.rlim_max, rl.rlim_max};
    if (up.rlim_cur > 1000000)
      up.rlim_cur = up.rlim_max = 1000000;
    if (setrlimit(RLIMIT_NOFILE, &up) == 0)
      rl = up;
  }
  long limit = rl.rlim_cur == RLIM_INFINITY ? 1000000 : (long)rl.rlim_cur;
  if (limit > 200000)
    limit = 200000; /* 100k pairs at most, as the case asks */
  poller *p;
  t_open(&p);
  long npairs = (limit - t_fd_count() - 50) / 2;
  if (npairs < 100)
    SKIP("open-file limit %ld leaves room for %ld pairs only", limit, npairs);
  t_note("open-file limit %ld: %ld socket pairs (%ld fds) on %s", limit,
         npairs, 2 * npairs, T_BACKEND_NAME);
  int(*sv)[2] = calloc((size_t)npairs, sizeof *sv);
  char *active = calloc((size_t)npairs, 1);
  char *seen = calloc((size_t)npairs, 1);
  int maxfd = 0;
  ASSERT_TRUE(sv && active && seen);
  for (long i = 0; i < npairs; i++) {
    t_socketpair(sv[i]);
    ASSERT_OK(poller_add(p, sv[i][0], POLLER_IN, (void *)(intptr_t)i));
    if (sv[i][0] > maxfd)
      maxfd = sv[i][0];
  }
  ASSERT_EQ(poller_count(p), (size_t)npairs);
  /* Nothing is ready yet. */
  int cap = 4096;
  poller_event *out = calloc((size_t)cap, sizeof *out);
  ASSERT_TRUE(out != NULL);
  ASSERT_EQ(poller_wait(p, out, cap, 0), 0);
  long nactive = 0;
  for (long i = 0; i < npairs; i += 7) {
    t_write(sv[i][1], 1);
    active[i] = 1;
    nactive++;
  }
  long distinct = 0;
  int waits = 0;
  while (distinct < nactive && waits < 50) {
    int n = poller_wait(p, out, cap, 2000);
    waits++;
    ASSERT_GT(n, 0);
    for (int k = 0; k < n; k++) {
      long i = (long)(intptr_t)out[k].data;
      ASSERT_GE(i, 0);
      ASSERT_LT(i, npairs);
      ASSERT_EQ(out[k].fd, sv[i][0]);
      ASSERT_EQ(out[k].events, POLLER_IN);
      if (!active[i])
        FAIL("inactive pair %ld (fd %d) reported", i, out[k].fd);
      if (!seen[i]) {
        seen[i] = 1;
        distinct++;
      }
    }
  }
  t_note("%ld active of %ld reported in %d waits (highest fd %d)", distinct,
         npairs, waits, maxfd);
  ASSERT_EQ(distinct, nactive);
  /* Drained, the set is quiet again. */
  for (long i = 0; i < npairs; i += 7)
    ASSERT_EQ(t_drain(sv[i][0]), 1);
  ASSERT_EQ(poller_wait(p, out, cap, 0), 0);
  for (long i = 0; i < npairs; i++) {
    ASSERT_OK(poller_del(p, sv[i][0]));
    t_close(sv[i][0]);
    t_close(sv[i][1]);
  }
  free(out);
  free(sv);
  free(active);
  free(seen);
  t_assert_clean(p);
}

/* F39: fds far above FD_SETSIZE (4097 and 4500, and near the limit) work
 * on every backend; for select this proves the sets grow (run it under
 * ASan: writing past a fixed fd_set is caught there). */
TEST(select_high_fd) {
  struct rlimit rl;
  ASSERT_SYS(getrlimit(RLIMIT_NOFILE, &rl));
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur <= 4600)
    SKIP("open-file limit %ld is too low for an fd above 4500",
         (long)rl.rlim_cur);
  poller *p;
  t_open(&p);
  int nums[3] = {4097, 4500, 0};
  nums[2] = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 20000
                ? 19999
                : (int)rl.rlim_cur - 1;
  int sv[3][2];
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(fcntl(nums[i], F_GETFD), -1); /* free */
    t_socketpair(sv[i]);
    ASSERT_EQ(dup3(sv[i][0], nums[i], O_CLOEXEC), nums[i]);
    t_close(sv[i][0]);
    sv[i][0] = nums[i];
    ASSERT_OK(poller_add(p, nums[i], POLLER_IN | POLLER_PRI, &sv[i]));
  }
  /* Also a low fd, so the sets span the whole range. */
  int lo[2];
  t_socketpair(lo);
  ASSERT_OK(poller_add(p, lo[0], POLLER_OUT, NULL));
  t_wait_for(p, lo[0], POLLER_OUT, 2000, NULL);
  for (int i = 0; i < 3; i++) {
    t_expect_none(p, nums[i], 10);
    t_write(sv[i][1], 1);
    poller_event ev;
    t_wait_for(p, nums[i], POLLER_IN, 2000, &ev);
    ASSERT_TRUE(ev.data == &sv[i]);
    ASSERT_EQ(t_drain(nums[i]), 1);
    ASSERT_OK(poller_mod(p, nums[i], POLLER_OUT, &sv[i]));
    t_wait_for(p, nums[i], POLLER_OUT, 2000, NULL);
    ASSERT_OK(poller_mod(p, nums[i], POLLER_IN, &sv[i]));
  }
  for (int i = 0; i < 3; i++) {
    ASSERT_OK(poller_del(p, nums[i]));
    t_close(sv[i][0]);
    t_close(sv[i][1]);
  }
  ASSERT_OK(poller_del(p, lo[0]));
  t_close(lo[0]);
  t_close(lo[1]);
  t_assert_clean(p);
}

/* F40: 100,000 add/del cycles with fd-number reuse (and some mods, some
 * waits, some stacks): the map returns to empty, no fd leaks, and
 * (under ASan) no memory leaks. */
TEST_TIMEOUT(churn_register_unregister, 60) {
  poller *p;
  t_open(&p);
  int keep[2];
  t_socketpair(keep);
  ASSERT_OK(poller_add(p, keep[0], POLLER_IN, NULL));
  int first = -1;
  poller_event out[8];
  for (int i = 0; i < 100000; i++) {
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ASSERT_SYS(fd);
    if (first < 0)
      first = fd;
    ASSERT_EQ(fd, first); /* the number is reused every time */
    ASSERT_OK(poller_add(p, fd, POLLER_IN, (void *)(intptr_t)i));
    if (i % 3 == 0)
      ASSERT_OK(poller_mod(p, fd, POLLER_OUT, (void *)(intptr_t)i));
    if (i % 5 == 0)
      ASSERT_OK(poller_push(p, fd, POLLER_IN, NULL));
    if (i % 1000 == 0) {
      int n = poller_wait(p, out, 8, 0);
      ASSERT_GE(n, 0);
      for (int k = 0; k < n; k++)
        if (out[k].fd == fd)
          ASSERT_EQ(poller_current(p, &out[k]), 1);
    }
    ASSERT_OK(poller_del(p, fd));
    t_close(fd);
  }
  ASSERT_EQ(poller_count(p), 1);
  /* A last wait sees no trace of the churned registrations. */
  ASSERT_EQ(poller_wait(p, out, 8, 0), 0);
  ASSERT_OK(poller_del(p, keep[0]));
  t_close(keep[0]);
  t_close(keep[1]);
  t_assert_clean(p);
}

/* Several pollers in one thread, the same fd in two of them: each sees
 * its own registration; del in one leaves the other alone. */
TEST(several_pollers_one_thread) {
  poller *p, *q;
  int sv[2];
  t_open(&p);
  t_open(&q);
  t_socketpair(sv);
  ASSERT_OK(poller_add(p, sv[0], POLLER_IN, &p));
  ASSERT_OK(poller_add(q, sv[0], POLLER_IN | POLLER_OUT, &q));
  t_write(sv[1], 1);
  poller_event ev;
  t_wait_for(p, sv[0], POLLER_IN, 2000, &ev);
  ASSERT_TRUE(ev.data == &p);
  ASSERT_NOBITS(ev.events, POLLER_OUT);
  t_wait_for(q, sv[0], POLLER_IN | POLLER_OUT, 2000, &ev);
  ASSERT_TRUE(ev.data == &q);
  ASSERT_OK(poller_del(p, sv[0]));
  t_expect_none(p, sv[0], 20);
  t_wait_for(q, sv[0], POLLER_IN, 2000, NULL);
  ASSERT_OK(poller_del(q, sv[0]));
  poller_close(q);
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}
