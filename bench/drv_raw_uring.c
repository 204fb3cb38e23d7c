/* SPDX-License-Identifier: MIT */
/* drv_raw_uring.c - the io_uring floor: a hand-written liburing loop with
 * one multishot poll request (IORING_POLL_ADD_MULTI) per watcher, the
 * index in user_data and no bookkeeping.  A completion is dispatched as it
 * comes: no check that the fd is still ready, no stale-report filter, so
 * its notifications are edge-like (one per wake-up of the file), which is
 * what the pipes benchmark needs (one byte per write, one read per
 * completion).  Its "setup" step cancels and re-adds every request, what a
 * program without a change queue does. */
#include "driver.h"

#include <liburing.h>
#include <poll.h>
#include <stdint.h>
#include <unistd.h>

/* user_data of the cancel requests; watchers use their index. */
#define CANCEL_UD UINT64_MAX

static struct io_uring ring;
static int ring_ok;
static int nfds;
static const int *fdv;
static long long calls;
/* Bumped by every rewatch: the upper half of user_data, so that a cancel
 * names the old request and not its replacement. */
static uint64_t round_no;

static int drv_init(const char *arg) {
  (void)arg;
  struct io_uring_params params = {0};
  /* Room for every watcher's completions between two waits. */
  params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN;
  params.cq_entries = 32768;
  if (io_uring_queue_init_params(4096, &ring, &params) < 0) {
    params.flags &= ~IORING_SETUP_COOP_TASKRUN;
    if (io_uring_queue_init_params(4096, &ring, &params) < 0)
      return -1;
  }
  ring_ok = 1;
  return 0;
}

/* Returns a free SQE, submitting the full queue first when needed. */
static struct io_uring_sqe *sqe_get(void) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
  if (!sqe) {
    calls++;
    io_uring_submit(&ring);
    sqe = io_uring_get_sqe(&ring);
  }
  return sqe;
}

static int arm(int i) {
  struct io_uring_sqe *sqe = sqe_get();
  if (!sqe)
    return -1;
  io_uring_prep_poll_multishot(sqe, fdv[i], POLLIN);
  io_uring_sqe_set_data64(sqe, round_no << 32 | (uint64_t)i);
  return 0;
}

static int drv_watch(int n, const int *fds) {
  nfds = n;
  fdv = fds;
  for (int i = 0; i < n; i++)
    if (arm(i) < 0)
      return -1;
  calls++;
  return io_uring_submit(&ring) < 0 ? -1 : 0;
}

static void drv_rewatch(void) {
  uint64_t old = round_no++ << 32;
  for (int i = 0; i < nfds; i++) {
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_cancel64(sqe, old | (uint64_t)i, 0);
    io_uring_sqe_set_data64(sqe, CANCEL_UD);
    arm(i);
  }
  /* Submitted now, not with the next wait: a new request armed on a file
   * that is already readable completes at once, so with the benchmark's
   * writes already made the old request and the new one would both
   * report the same byte. */
  calls++;
  io_uring_submit(&ring);
}

static void drv_run_once(void) {
  calls++;
  io_uring_submit_and_wait(&ring, 1);
  struct io_uring_cqe *cqe;
  unsigned head, seen = 0;
  io_uring_for_each_cqe(&ring, head, cqe) {
    seen++;
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    if (ud == CANCEL_UD || cqe->res < 0)
      continue; /* a cancel's own completion, or a cancelled request's */
    if (!(cqe->flags & IORING_CQE_F_MORE))
      arm((int)(uint32_t)ud); /* the kernel ended the request: renew it */
    bench_on_read((int)(uint32_t)ud);
  }
  io_uring_cq_advance(&ring, seen);
}

static long long drv_syscalls(void) { return calls; }

static void drv_fini(void) {
  if (ring_ok)
    io_uring_queue_exit(&ring);
  ring_ok = 0;
  calls = 0;
}

const struct bench_driver bench_raw_uring = {"raw-uring",  drv_init,
                                             drv_watch,    drv_rewatch,
                                             drv_run_once, drv_syscalls,
                                             drv_fini};
