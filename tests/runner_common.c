/* SPDX-License-Identifier: MIT */
/*
 * runner_common.c - main() of every test binary and the harness helpers
 * that do not depend on the platform: the option parsing, the choice of
 * backends, the TAP output and its closing line, the skip and failure
 * reporting, and the tolerant waits.  runner.c (Unix) and runner_win32.c
 * (Windows) supply the rest (runner_common.h lists it), so both platforms
 * print the same output and count the same way.
 */
#include "runner_common.h"

#include <stdarg.h>
#include <stdlib.h>

enum poller_backend t_backend = POLLER_AUTO;

struct t_test *t_head, *t_tail;

void t_note(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("# ");
  vprintf(fmt, ap);
  printf("\n");
  fflush(stdout);
  va_end(ap);
}

/* ---- helpers ---- */

void t_open(poller **p) {
  int r = poller_open(p, T_BACKEND);
  if (r == 0) {
    ASSERT_TRUE(*p != NULL);
    ASSERT_EQ(poller_backend(*p), T_BACKEND);
    return;
  }
  ASSERT_TRUE(*p == NULL);
  if (!(poller_available() & (1u << T_BACKEND)))
    SKIP("backend %s not available here: poller_open returned %d (%s)",
         T_BACKEND_NAME, r, poller_strerror(r));
  FAIL("poller_open(%s) = %d (%s), but poller_available() lists it",
       T_BACKEND_NAME, r, poller_strerror(r));
}

void t_assert_clean_(poller *p, const char *file, int line) {
  poller_event key;
  size_t count = poller_count(p);
  /* %lu with a cast: the older Windows C runtime does not know %zu. */
  if (count != 0)
    t_fail(file, line, "t_assert_clean: %lu registrations left",
           (unsigned long)count);
  int r = poller_next(p, -1, &key);
  if (r != -ENOENT)
    t_fail(file, line, "t_assert_clean: poller_next(-1) = %d (fd %d)", r,
           r == 0 ? key.fd : -1);
  poller_close(p);
  t_assert_fds_clean_(file, line);
}

unsigned t_wait_for(poller *p, int fd, unsigned bits, int timeout_ms,
                    poller_event *ev) {
  double deadline = t_now_ms() + timeout_ms;
  poller_event out[64];
  for (;;) {
    double left = deadline - t_now_ms();
    int tmo = left > 0 ? (int)left + 1 : 0;
    int n = poller_wait(p, out, 64, tmo);
    if (n < 0)
      FAIL("poller_wait: %d (%s)", n, poller_strerror(n));
    for (int i = 0; i < n; i++)
      if (out[i].fd == fd && (out[i].events & bits) == bits) {
        if (ev)
          *ev = out[i];
        return out[i].events;
      }
    if (t_now_ms() >= deadline)
      FAIL("no report with bits 0x%x for fd %d within %d ms (%s)", bits, fd,
           timeout_ms, T_BACKEND_NAME);
  }
}

unsigned t_wait_once(poller *p, int fd, int timeout_ms) {
  poller_event out[64];
  int n = poller_wait(p, out, 64, timeout_ms);
  if (n < 0)
    FAIL("poller_wait: %d (%s)", n, poller_strerror(n));
  unsigned got = 0;
  int seen = 0;
  for (int i = 0; i < n; i++)
    if (out[i].fd == fd) {
      if (seen++)
        FAIL("fd %d reported twice in one wait", fd);
      got = out[i].events;
      if (!got)
        FAIL("fd %d reported with no bits", fd);
    }
  return got;
}

unsigned t_wait_exactly_once(poller *p, int fd, int timeout_ms,
                             poller_event *ev) {
  double deadline = t_now_ms() + timeout_ms;
  poller_event out[64];
  for (;;) {
    double left = deadline - t_now_ms();
    int n = poller_wait(p, out, 64, left > 0 ? (int)left + 1 : 0);
    if (n < 0)
      FAIL("poller_wait: %d (%s)", n, poller_strerror(n));
    int seen = 0;
    unsigned got = 0;
    for (int i = 0; i < n; i++)
      if (out[i].fd == fd) {
        if (seen++)
          FAIL("fd %d reported twice in one wait (%s)", fd, T_BACKEND_NAME);
        got = out[i].events;
        if (!got)
          FAIL("fd %d reported with no bits (%s)", fd, T_BACKEND_NAME);
        if (ev)
          *ev = out[i];
      }
    if (seen)
      return got;
    if (t_now_ms() >= deadline)
      FAIL("no report for fd %d within %d ms (%s)", fd, timeout_ms,
           T_BACKEND_NAME);
  }
}

void t_wait_each_once(poller *p, const poller_event *want, int n, int max,
                      int timeout_ms) {
  poller_event out[64];
  if (max < 1 || max > 64)
    FAIL("t_wait_each_once: max %d is not 1..64", max);
  char *seen = calloc((size_t)n + 1, 1);
  ASSERT_TRUE(seen != NULL);
  double deadline = t_now_ms() + timeout_ms;
  int total = 0;
  while (total < n) {
    double left = deadline - t_now_ms();
    int got = poller_wait(p, out, max, left > 0 ? (int)left + 1 : 0);
    if (got < 0)
      FAIL("poller_wait: %d (%s)", got, poller_strerror(got));
    if (got > max)
      FAIL("poller_wait returned %d reports, max %d", got, max);
    for (int i = 0; i < got; i++) {
      int k = 0;
      while (k < n && want[k].fd != out[i].fd)
        k++;
      if (k == n)
        FAIL("report for fd %d, not one of the %d expected (%s)", out[i].fd, n,
             T_BACKEND_NAME);
      if (seen[k])
        FAIL("fd %d reported a second time (%s)", out[i].fd, T_BACKEND_NAME);
      seen[k] = 1;
      total++;
      ASSERT_BITS(out[i].events, want[k].events);
      ASSERT_TRUE(out[i].data == want[k].data);
    }
    if (total < n && t_now_ms() >= deadline)
      FAIL("%d of %d fds reported within %d ms (%s)", total, n, timeout_ms,
           T_BACKEND_NAME);
  }
  free(seen);
}

void t_expect_none(poller *p, int fd, int timeout_ms) {
  double deadline = t_now_ms() + timeout_ms;
  poller_event out[64];
  do {
    double left = deadline - t_now_ms();
    int tmo = left > 0 ? (int)left + 1 : 0;
    int n = poller_wait(p, out, 64, tmo);
    if (n < 0)
      FAIL("poller_wait: %d (%s)", n, poller_strerror(n));
    for (int i = 0; i < n; i++)
      if (out[i].fd == fd)
        FAIL("unexpected report for fd %d: events 0x%x (%s)", fd,
             out[i].events, T_BACKEND_NAME);
  } while (t_now_ms() < deadline);
}

/* ---- the runner ---- */

int t_timeout_secs(const struct t_test *t) {
  const char *s = getenv("POLLER_TEST_TIMEOUT_SCALE");
  int k = s ? atoi(s) : 1;
  if (k < 1)
    k = 1;
  return (t->timeout_s > 0 ? t->timeout_s : T_DEFAULT_TIMEOUT) * k;
}

static struct t_test *t_find(const char *name) {
  for (struct t_test *t = t_head; t; t = t->next)
    if (strcmp(t->name, name) == 0)
      return t;
  return NULL;
}

static void t_usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s [--list] [--backend NAME] [--run TEST] [--nofork]\n",
          argv0);
}

int main(int argc, char **argv) {
  const char *backend_name = NULL, *test_name = NULL;
  int list = 0, nofork = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--list") == 0)
      list = 1;
    else if (strcmp(argv[i], "--nofork") == 0)
      nofork = 1;
    else if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc)
      backend_name = argv[++i];
    else if (strcmp(argv[i], "--run") == 0 && i + 1 < argc)
      test_name = argv[++i];
    else {
      t_usage(argv[0]);
      return 2;
    }
  }
  if (list) {
    for (struct t_test *t = t_head; t; t = t->next)
      printf("%s\n", t->name);
    return 0;
  }
  if (t_platform_prepare() != 0)
    return 2;

  /* The backends to run: the one named, or every one available here. */
  enum poller_backend backends[8];
  int nb = 0;
  if (backend_name) {
    int b = poller_backend_from_name(backend_name);
    if (b <= 0) {
      fprintf(stderr, "unknown backend '%s'\n", backend_name);
      return 2;
    }
    backends[nb++] = (enum poller_backend)b;
  } else {
    unsigned avail = poller_available();
    for (int b = POLLER_SELECT; b <= POLLER_AFD && nb < 8; b++)
      if (avail & (1u << b))
        backends[nb++] = (enum poller_backend)b;
  }
  struct t_test *only = NULL;
  if (test_name && !(only = t_find(test_name))) {
    fprintf(stderr, "unknown test '%s'\n", test_name);
    return 2;
  }

  /* One test on one backend: the CTest form.  The exit code says it all. */
  char msg[T_MSG_SIZE];
  if (only && backend_name) {
    if (nofork || t_platform_in_child()) {
      t_platform_body(only, backends[0]);
      fflush(stdout);
      return T_EXIT_PASS;
    }
    int code = t_platform_run(only, backends[0], msg, sizeof msg);
    if (code == T_EXIT_FAIL)
      fprintf(stderr, "FAIL %s [%s]: %s\n", only->name, backend_name, msg);
    else if (code == T_EXIT_SKIP)
      printf("SKIP %s [%s]: %s\n", only->name, backend_name, msg);
    else
      printf("PASS %s [%s]\n", only->name, backend_name);
    return code;
  }

  int ntests = 0;
  for (struct t_test *t = t_head; t; t = t->next)
    if (!only || t == only)
      ntests++;
  printf("1..%d\n", ntests * nb);
  int k = 0, passed = 0, failed = 0, skipped = 0;
  for (int i = 0; i < nb; i++)
    for (struct t_test *t = t_head; t; t = t->next) {
      if (only && t != only)
        continue;
      const char *bn = poller_backend_name(backends[i]);
      int code = t_platform_run(t, backends[i], msg, sizeof msg);
      k++;
      if (code == T_EXIT_PASS) {
        passed++;
        printf("ok %d - %s [%s]\n", k, t->name, bn);
      } else if (code == T_EXIT_SKIP) {
        skipped++;
        printf("ok %d - %s [%s] # SKIP %s\n", k, t->name, bn, msg);
      } else {
        failed++;
        printf("not ok %d - %s [%s]\n# %s\n", k, t->name, bn, msg);
      }
      fflush(stdout);
    }
  printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
  return failed ? 1 : 0;
}
