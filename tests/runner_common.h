/* SPDX-License-Identifier: MIT */
/*
 * runner_common.h - the seam between the shared part of the test runner
 * (runner_common.c: main(), the TAP output, the portable helpers) and the
 * part each platform writes for itself (runner.c on Unix, runner_win32.c on
 * Windows: how a test is isolated and timed out, how its message reaches
 * the parent, and the descriptor helpers).
 *
 * Only the two runners and runner_common.c include this header; tests use
 * harness.h.
 */
#ifndef POLLER_TESTS_RUNNER_COMMON_H
#define POLLER_TESTS_RUNNER_COMMON_H

#include "harness.h"

/* Exit codes of a child, and of "--backend B --run T". */
#define T_EXIT_PASS 0
#define T_EXIT_FAIL 1
#define T_EXIT_SKIP 77

/* The size of the buffer that carries a skip reason or failure message. */
#define T_MSG_SIZE 4096

/* The registered tests, in the order of their definition (t_register of
 * each platform keeps that order). */
extern struct t_test *t_head, *t_tail;

/* The timeout of t in seconds, with POLLER_TEST_TIMEOUT_SCALE applied. */
int t_timeout_secs(const struct t_test *t);

/* ---- written by each platform's runner ---- */

/* Called once by main() after the options are read and before any test
 * runs; returns 0, or nonzero after printing why the runner cannot go on
 * (main then exits with 2). */
int t_platform_prepare(void);
/* Nonzero when this process was started by the runner to run one test in
 * itself (Windows has no fork); then main() runs the body directly. */
int t_platform_in_child(void);
/* Runs the test body in this process on backend b; returns only on a pass
 * (a failure or skip leaves the process). */
void t_platform_body(const struct t_test *t, enum poller_backend b);
/* Runs t on backend b in a separate process with the test's timeout;
 * returns T_EXIT_PASS, T_EXIT_FAIL or T_EXIT_SKIP and leaves the skip
 * reason or failure message in msg. */
int t_platform_run(const struct t_test *t, enum poller_backend b, char *msg,
                   size_t msgsize);

#endif /* POLLER_TESTS_RUNNER_COMMON_H */
