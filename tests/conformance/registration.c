/*
 * registration.c - conformance group A: add, mod, del, get, next, count,
 * push and pop (conformance-cases.md 1-11).
 */
#include "harness.h"
#include "internal.h"

#include <fcntl.h>
#include <unistd.h>

static int tag_a, tag_b, tag_c;
/* Keeps the tags referenced while some tests use only one of them. */
static void *const tags[] __attribute__((unused)) = {&tag_a, &tag_b, &tag_c};

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
  ASSERT_OK(poller_del(p, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  t_assert_clean(p);
}
