/* SPDX-License-Identifier: MIT */
/*
 * harness.h - the test harness shared by every test binary of poller.
 *
 * A test binary is one or more sources of TEST(name) { ... } blocks linked
 * with tests/runner_common.c, which holds main(), and tests/runner.c (or
 * runner_win32.c on Windows).  Each test runs in its own forked
 * process with a timeout, once per backend; inside a test T_BACKEND is the
 * backend under test.
 *
 *   ./bin --list                      the test names, one a line
 *   ./bin --backend NAME --run TEST   one test on one backend (exit 0 pass,
 *                                     1 fail, 77 skipped)
 *   ./bin [--backend NAME] [--run TEST]
 *                                     every selected test on every selected
 *                                     available backend, TAP output, closing
 *                                     line "N passed, N failed, N skipped"
 *   --nofork                          run in-process (for a debugger)
 *
 * The environment variable POLLER_TEST_TIMEOUT_SCALE (an integer >= 1)
 * multiplies every timeout, for slow machines and sanitizer builds.
 *
 * Assertions end the test at the first failure with file:line, the
 * expression and both values.  SKIP("reason") ends it as skipped: a test
 * that cannot apply to a backend says why instead of passing silently.
 */
#ifndef POLLER_TESTS_HARNESS_H
#define POLLER_TESTS_HARNESS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "poller.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* T_POSIX_ONLY("reason") first in a test that cannot apply on Windows
 * (pipes, fork, signals, choosing a descriptor's number): it skips there
 * with the reason, and does nothing elsewhere. */
#ifdef _WIN32
#include "compat_win32.h"
#else
#define T_POSIX_ONLY(...) ((void)0)
#endif

/* ---- registration ---- */

struct t_test {
  const char *name;
  void (*fn)(void);
  int timeout_s; /* 0: the default (T_DEFAULT_TIMEOUT) */
  struct t_test *next;
};

#define T_DEFAULT_TIMEOUT 20

void t_register(struct t_test *t);

/* TEST_TIMEOUT(name, seconds) { ... } defines a test with its own timeout;
 * TEST(name) { ... } one with the default.  tests/CMakeLists.txt finds both
 * forms by a regular expression at configure time, so each must start a
 * line. */
#define TEST_TIMEOUT(name, secs)                                               \
  static void t_fn_##name(void);                                               \
  static struct t_test t_desc_##name = {#name, t_fn_##name, (secs), NULL};     \
  __attribute__((constructor)) static void t_reg_##name(void) {                \
    t_register(&t_desc_##name);                                                \
  }                                                                            \
  static void t_fn_##name(void)
#define TEST(name) TEST_TIMEOUT(name, 0)

/* The backend under test. */
extern enum poller_backend t_backend;
#define T_BACKEND t_backend

/* ---- outcomes ---- */

/* The printf dialect the runner's vfprintf speaks: mingw-w64 names it
 * (the C99 one with __USE_MINGW_ANSI_STDIO, msvcrt's without), so the
 * compiler checks the tests' formats against the printf that prints them. */
#ifdef __MINGW_PRINTF_FORMAT
#define T_PRINTF_FORMAT __MINGW_PRINTF_FORMAT
#else
#define T_PRINTF_FORMAT printf
#endif

/* Report a failure (printf-style message) and end the test. */
void t_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(T_PRINTF_FORMAT, 3, 4), noreturn));
/* End the test as skipped, with the reason. */
void t_skip(const char *fmt, ...)
    __attribute__((format(T_PRINTF_FORMAT, 1, 2), noreturn));
/* A diagnostic line ("# ...") on stdout, kept in the TAP output. */
void t_note(const char *fmt, ...)
    __attribute__((format(T_PRINTF_FORMAT, 1, 2)));

#define SKIP(...) t_skip(__VA_ARGS__)
#define FAIL(...) t_fail(__FILE__, __LINE__, __VA_ARGS__)

#define T_CMP_(a, op, b)                                                       \
  do {                                                                         \
    long long t_a_ = (long long)(a), t_b_ = (long long)(b);                    \
    if (!(t_a_ op t_b_))                                                       \
      t_fail(__FILE__, __LINE__, "ASSERT(%s %s %s): %lld (0x%llx) vs %lld (0x%llx)", \
             #a, #op, #b, t_a_, (unsigned long long)t_a_, t_b_,               \
             (unsigned long long)t_b_);                                        \
  } while (0)

#define ASSERT_EQ(a, b) T_CMP_(a, ==, b)
#define ASSERT_NE(a, b) T_CMP_(a, !=, b)
#define ASSERT_GE(a, b) T_CMP_(a, >=, b)
#define ASSERT_LE(a, b) T_CMP_(a, <=, b)
#define ASSERT_GT(a, b) T_CMP_(a, >, b)
#define ASSERT_LT(a, b) T_CMP_(a, <, b)
#define ASSERT_TRUE(x)                                                         \
  do {                                                                         \
    if (!(x))                                                                  \
      t_fail(__FILE__, __LINE__, "ASSERT_TRUE(%s) is false", #x);              \
  } while (0)
#define ASSERT_FALSE(x)                                                        \
  do {                                                                         \
    if (x)                                                                     \
      t_fail(__FILE__, __LINE__, "ASSERT_FALSE(%s) is true", #x);              \
  } while (0)
/* expr must be 0; a negative value is shown as an errno. */
#define ASSERT_OK(expr)                                                        \
  do {                                                                         \
    long long t_r_ = (long long)(expr);                                        \
    if (t_r_ != 0)                                                             \
      t_fail(__FILE__, __LINE__, "ASSERT_OK(%s): %lld (%s)", #expr, t_r_,      \
             t_r_ < 0 && t_r_ > -4096 ? strerror((int)-t_r_) : "not 0");      \
  } while (0)
/* expr must be a negative errno equal to err (e.g. -EBADF). */
#define ASSERT_ERR(expr, err)                                                  \
  do {                                                                         \
    long long t_r_ = (long long)(expr), t_e_ = (long long)(err);               \
    if (t_r_ != t_e_)                                                          \
      t_fail(__FILE__, __LINE__, "ASSERT_ERR(%s, %s): got %lld (%s), want %lld", \
             #expr, #err, t_r_,                                                \
             t_r_ < 0 && t_r_ > -4096 ? strerror((int)-t_r_) : "not an errno", \
             t_e_);                                                            \
  } while (0)
/* A system call returning -1 on failure must succeed (shows errno). */
#define ASSERT_SYS(expr)                                                       \
  do {                                                                         \
    if ((expr) == -1)                                                          \
      t_fail(__FILE__, __LINE__, "%s: %s", #expr, strerror(errno));            \
  } while (0)
/* Bits: every bit of `bits` is set in `v`, or none of them is. */
#define ASSERT_BITS(v, bits)                                                   \
  do {                                                                         \
    unsigned t_v_ = (unsigned)(v), t_m_ = (unsigned)(bits);                    \
    if ((t_v_ & t_m_) != t_m_)                                                 \
      t_fail(__FILE__, __LINE__, "ASSERT_BITS(%s, %s): 0x%x lacks 0x%x", #v,   \
             #bits, t_v_, t_m_ & ~t_v_);                                       \
  } while (0)
#define ASSERT_NOBITS(v, bits)                                                 \
  do {                                                                         \
    unsigned t_v_ = (unsigned)(v), t_m_ = (unsigned)(bits);                    \
    if (t_v_ & t_m_)                                                           \
      t_fail(__FILE__, __LINE__, "ASSERT_NOBITS(%s, %s): 0x%x has 0x%x", #v,   \
             #bits, t_v_, t_v_ & t_m_);                                        \
  } while (0)

/* ---- helpers ---- */

/* Opens a poller on T_BACKEND into *p.  When the backend is not usable
 * here (not built, or refused by the kernel), the test is SKIPPED with the
 * error; any other failure fails the test. */
void t_open(poller **p);
/* A connected, non-blocking, close-on-exec AF_UNIX stream pair. */
void t_socketpair(int sv[2]);
/* A connected, non-blocking TCP pair on 127.0.0.1 (a: client, b: server). */
void t_tcp_pair(int *a, int *b);
/* A non-blocking, close-on-exec pipe. */
void t_pipe(int fds[2]);
/* Runs fn(arg) in a forked child of the test and fails the test unless
 * the child exits with status 0 (fn returns, or fails with its own
 * message).  Windows has no fork: there the test is skipped. */
void t_in_child(void (*fn)(void *), void *arg);
/* The number of open descriptors of this process. */
int t_fd_count(void);
/* Asserts that p has no registration, closes it, and asserts that the
 * process holds the same number of descriptors as when the test began. */
void t_assert_clean_(poller *p, const char *file, int line);
#define t_assert_clean(p) t_assert_clean_((p), __FILE__, __LINE__)
/* Asserts only the descriptor count (for tests that own no poller, such
 * as loop tests after closing their loop). */
void t_assert_fds_clean_(const char *file, int line);
#define t_assert_fds_clean() t_assert_fds_clean_(__FILE__, __LINE__)
/* Closes fd if >= 0, asserting success. */
void t_close(int fd);
/* Writes n bytes ('x') to fd, asserting they all went. */
void t_write(int fd, size_t n);
/* Reads (and discards) everything readable now; returns the byte count. */
size_t t_drain(int fd);
/* Monotonic time in milliseconds (fractional). */
double t_now_ms(void);
/* Sleeps ms milliseconds. */
void t_sleep_ms(int ms);

/* Waits (repeatedly, at most timeout_ms in total) until a report for fd
 * carrying every bit of `bits` arrives; returns its events and stores the
 * report in *ev when ev is not NULL.  Other fds' reports and extra bits are
 * tolerated (the kernel may add bits legitimately).  Fails the test on a
 * wait error or on timeout. */
unsigned t_wait_for(poller *p, int fd, unsigned bits, int timeout_ms,
                    poller_event *ev);
/* One wait of timeout_ms; returns the events reported for fd (0 if none)
 * and fails when fd is reported more than once in the batch. */
unsigned t_wait_once(poller *p, int fd, int timeout_ms);
/* Waits (repeatedly, at most timeout_ms in total: give a generous one)
 * until fd is reported; returns its events and stores the report in *ev
 * when ev is not NULL.  Fails the test when the wait that reports fd
 * reports it twice or with no bits, on a wait error, or when no report for
 * fd comes in time.  Reports of other fds are ignored. */
unsigned t_wait_exactly_once(poller *p, int fd, int timeout_ms,
                             poller_event *ev);
/* Waits, with at most max (<= 64) reports a wait and timeout_ms in all
 * (give a generous one), until each of the n reports described by want[]
 * has come exactly once: the report for want[k].fd carries every bit of
 * want[k].events, and want[k].data.  Fails the test when a report names
 * no fd of want[], when an fd is reported a second time, when a wait
 * returns more than max, on a wait error, or when the time runs out. */
void t_wait_each_once(poller *p, const poller_event *want, int n, int max,
                      int timeout_ms);
/* Asserts that no report for fd arrives within timeout_ms (one or more
 * waits; reports of other fds are ignored). */
void t_expect_none(poller *p, int fd, int timeout_ms);

/* The name of T_BACKEND. */
#define T_BACKEND_NAME poller_backend_name(T_BACKEND)

#endif /* POLLER_TESTS_HARNESS_H */
