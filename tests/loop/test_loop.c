/* SPDX-License-Identifier: MIT */
/*
 * test_loop.c - the loop: run(timeout, count), fd watchers, timers,
 * deferred work, signals, child processes, file changes, async wake-ups
 * and fork (issue 3; group I of the suite's case numbering).  Every test
 * runs on every backend.
 */
#include "harness.h"

#include "poller_loop.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#ifndef _WIN32 /* harness.h gives Windows its stand-ins */
#include <sys/socket.h>
#include <sys/wait.h>
#endif
#include <time.h>
#include <unistd.h>

static poller_loop *open_loop(void) {
  poller_loop *l = NULL;
  int r = poller_loop_open(&l, T_BACKEND);
  if (r == -ENOSYS || r == -EPERM)
    SKIP("backend %s not usable here: %s", T_BACKEND_NAME,
         poller_strerror(r));
  ASSERT_OK(r);
  return l;
}

static void close_loop(poller_loop *l) {
  ASSERT_EQ(poller_count(poller_loop_poller(l)), 0);
  poller_loop_close(l);
  t_assert_fds_clean();
}

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- run ---- */

/* Nothing alive: run returns at once with 0 iterations.  (With no timeout
 * a run that did not return would block forever; the bound only catches
 * that, with room for a loaded machine.) */
TEST(run_returns_when_nothing_alive) {
  poller_loop *l = open_loop();
  ASSERT_EQ(poller_loop_alive(l), 0);
  double t0 = t_now_ms();
  ASSERT_EQ(poller_loop_run(l, -1, -1), 0);
  ASSERT_LT(t_now_ms() - t0, 10000);
  ASSERT_ERR(poller_loop_run(l, -2, -1), -EINVAL);
  ASSERT_ERR(poller_loop_run(NULL, 0, 1), -EFAULT);
  close_loop(l);
}

static void io_count(poller_loop *l, int fd, unsigned ev, void *arg) {
  (void)l;
  (void)fd;
  (void)ev;
  (*(int *)arg)++;
}

/* run(timeout, count): count bounds the iterations, timeout the time. */
TEST(run_count_and_timeout) {
  poller_loop *l = open_loop();
  int sv[2], calls = 0;
  t_socketpair(sv);
  ASSERT_OK(poller_io_start(l, sv[0], POLLER_OUT, io_count, &calls));
  ASSERT_EQ(poller_loop_run(l, -1, 3), 3);
  ASSERT_EQ(calls, 3);
  ASSERT_OK(poller_io_modify(l, sv[0], POLLER_IN));
  double t0 = t_now_ms();
  int it = poller_loop_run(l, 150, -1);
  double el = t_now_ms() - t0;
  ASSERT_GE(it, 1);
  ASSERT_GE(el, 149);
  ASSERT_LT(el, 10000); /* ended by the timeout, with room for load */
  ASSERT_EQ(calls, 3);
  ASSERT_OK(poller_io_stop(l, sv[0]));
  ASSERT_ERR(poller_io_stop(l, sv[0]), -ENOENT);
  ASSERT_ERR(poller_io_modify(l, sv[0], POLLER_IN), -ENOENT);
  ASSERT_ERR(poller_io_start(l, -1, POLLER_IN, io_count, &calls), -EBADF);
  ASSERT_ERR(poller_io_start(l, sv[0], 0, io_count, &calls), -EINVAL);
  t_close(sv[0]);
  t_close(sv[1]);
  close_loop(l);
}

struct stopper {
  poller_loop *l;
  int delay_ms;
};

static void *stop_later(void *arg) {
  struct stopper *s = arg;
  t_sleep_ms(s->delay_ms);
  poller_loop_stop(s->l);
  return NULL;
}

/* stop from another thread ends a run that would block forever. */
TEST(stop_from_other_thread) {
  poller_loop *l = open_loop();
  int sv[2], calls = 0;
  t_socketpair(sv);
  ASSERT_OK(poller_io_start(l, sv[0], POLLER_IN, io_count, &calls));
  struct stopper s = {l, 100};
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, stop_later, &s), 0);
  double t0 = t_now_ms();
  ASSERT_GE(poller_loop_run(l, -1, -1), 1);
  ASSERT_LT(t_now_ms() - t0, 5000);
  pthread_join(th, NULL);
  ASSERT_EQ(calls, 0);
  ASSERT_OK(poller_io_stop(l, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  close_loop(l);
}

/* A callback that stops another watcher of the same batch: that watcher's
 * callback never runs (swift-nio#341). */
struct pairctx {
  int fds[2];
  int calls[2];
  poller_loop *l;
};

static void stop_other(poller_loop *l, int fd, unsigned ev, void *arg) {
  struct pairctx *c = arg;
  (void)ev;
  int me = fd == c->fds[0] ? 0 : 1;
  c->calls[me]++;
  poller_io_stop(l, c->fds[1 - me]);
  poller_io_stop(l, fd);
}

TEST(io_stop_other_in_same_batch) {
  poller_loop *l = open_loop();
  int a[2], b[2];
  t_socketpair(a);
  t_socketpair(b);
  struct pairctx c = {{a[0], b[0]}, {0, 0}, l};
  ASSERT_OK(poller_io_start(l, a[0], POLLER_IN, stop_other, &c));
  ASSERT_OK(poller_io_start(l, b[0], POLLER_IN, stop_other, &c));
  /* AF_UNIX delivers within write(2): both are readable before the wait,
   * so both are in one batch. */
  t_write(a[1], 1);
  t_write(b[1], 1);
  ASSERT_EQ(poller_loop_run(l, 1000, 1), 1);
  ASSERT_EQ(c.calls[0] + c.calls[1], 1);
  ASSERT_EQ(poller_loop_alive(l), 0);
  t_close(a[0]);
  t_close(a[1]);
  t_close(b[0]);
  t_close(b[1]);
  close_loop(l);
}

/* ---- timers ---- */

struct fired {
  uint64_t due_ns;
  uint64_t at_ns;
  int order[8];
  int n;
  int id;
  int *log;
};

static int timer_log[16];
static int timer_nlog;

static void on_timer_log(poller_timer *t, void *arg) {
  (void)t;
  timer_log[timer_nlog++] = (int)(intptr_t)arg;
}

/* I51: deadline order, equal deadlines in start order.  A deadline is
 * measured from its own start call, so on a loaded machine the starts may
 * be far apart: each timer's deadline is known only to lie between
 * (time before its start + delay) and (time after its start + delay).
 * The firing order must agree with those bounds: a timer never fires
 * before one whose deadline is surely earlier. */
TEST(timers_fire_in_order) {
  poller_loop *l = open_loop();
  poller_timer t[6];
  int delays[6] = {30, 10, 20, 20, 20, 0};
  uint64_t lo[6], hi[6];
  timer_nlog = 0;
  for (int i = 0; i < 6; i++) {
    poller_timer_init(&t[i], on_timer_log, (void *)(intptr_t)i);
    lo[i] = mono_ns() + (uint64_t)delays[i] * 1000000u;
    ASSERT_OK(poller_timer_start(l, &t[i], (uint64_t)delays[i], 0));
    hi[i] = mono_ns() + (uint64_t)delays[i] * 1000000u;
  }
  ASSERT_EQ(poller_loop_alive(l), 6);
  ASSERT_GE(poller_loop_run(l, 5000, -1), 1);
  ASSERT_EQ(timer_nlog, 6);
  for (int i = 0; i < 6; i++)
    for (int j = i + 1; j < 6; j++) {
      int a = timer_log[i], b = timer_log[j]; /* a fired before b */
      if (hi[b] < lo[a])
        FAIL("timer %d fired before timer %d, whose deadline was earlier",
             a, b);
    }
  /* Equal delays (2, 3, 4) fire in start order, whatever the load: a
   * later start never has an earlier deadline. */
  int pos[6];
  for (int i = 0; i < 6; i++)
    pos[timer_log[i]] = i;
  ASSERT_LT(pos[2], pos[3]);
  ASSERT_LT(pos[3], pos[4]);
  /* On an idle machine this is the exact order {5, 1, 2, 3, 4, 0}. */
  close_loop(l);
}

static uint64_t early_due[20];
static uint64_t early_at[20];
static int early_n;

static void on_timer_time(poller_timer *t, void *arg) {
  (void)t;
  early_at[(intptr_t)arg] = mono_ns();
  early_n++;
}

/* I51: never before the deadline by CLOCK_MONOTONIC (libevent#958). */
TEST(timers_never_early) {
  poller_loop *l = open_loop();
  poller_timer t[20];
  early_n = 0;
  for (int i = 0; i < 20; i++) {
    poller_timer_init(&t[i], on_timer_time, (void *)(intptr_t)i);
    uint64_t now = mono_ns();
    ASSERT_OK(poller_timer_start(l, &t[i], (uint64_t)(i % 7) + 1, 0));
    early_due[i] = now + ((uint64_t)(i % 7) + 1) * 1000000u;
  }
  ASSERT_GE(poller_loop_run(l, 5000, -1), 1);
  ASSERT_EQ(early_n, 20);
  for (int i = 0; i < 20; i++)
    ASSERT_GE(early_at[i], early_due[i]);
  close_loop(l);
}

static int rep_count;
static void on_repeat(poller_timer *t, void *arg) {
  (void)arg;
  if (++rep_count == 3)
    poller_timer_stop(t);
}

/* A repeating timer repeats until stopped from its own callback. */
TEST(timer_repeat_and_stop_in_callback) {
  poller_loop *l = open_loop();
  poller_timer t;
  rep_count = 0;
  poller_timer_init(&t, on_repeat, NULL);
  ASSERT_OK(poller_timer_start(l, &t, 5, 5));
  ASSERT_TRUE(poller_timer_active(&t));
  ASSERT_GE(poller_loop_run(l, 5000, -1), 1);
  ASSERT_EQ(rep_count, 3);
  ASSERT_FALSE(poller_timer_active(&t));
  ASSERT_OK(poller_timer_stop(&t)); /* stopping twice is harmless */
  ASSERT_ERR(poller_timer_stop(NULL), -EFAULT);
  close_loop(l);
}

static int huge_fired;
static void on_huge(poller_timer *t, void *arg) {
  (void)t;
  (void)arg;
  huge_fired++;
}

/* I53 / F10: timeouts and repeats near UINT64_MAX neither fire nor wrap. */
TEST(huge_timer_never_fires) {
  poller_loop *l = open_loop();
  poller_timer t1, t2, t3;
  huge_fired = 0;
  poller_timer_init(&t1, on_huge, NULL);
  poller_timer_init(&t2, on_huge, NULL);
  poller_timer_init(&t3, on_huge, NULL);
  ASSERT_OK(poller_timer_start(l, &t1, UINT64_MAX, 0));
  ASSERT_OK(poller_timer_start(l, &t2, UINT64_MAX - 1, UINT64_MAX));
  ASSERT_OK(poller_timer_start(l, &t3, (uint64_t)INT32_MAX + 5, 0));
  ASSERT_GE(poller_loop_run(l, 100, -1), 1);
  ASSERT_EQ(huge_fired, 0);
  ASSERT_TRUE(poller_timer_active(&t1));
  poller_timer_stop(&t1);
  poller_timer_stop(&t2);
  poller_timer_stop(&t3);
  close_loop(l);
}

struct starve {
  poller_loop *l;
  int timer_calls;
  int io_calls;
};

static void on_zero(poller_timer *t, void *arg) {
  struct starve *s = arg;
  s->timer_calls++;
  poller_timer_start(s->l, t, 0, 0);
}

static void on_starve_io(poller_loop *l, int fd, unsigned ev, void *arg) {
  struct starve *s = arg;
  (void)ev;
  s->io_calls++;
  if (s->io_calls == 5)
    poller_io_stop(l, fd);
}

/* I52: a 0 ms timer re-armed from its own callback lets I/O run every
 * iteration (libuv#4245). */
TEST(zero_timer_rearm_no_starvation) {
  poller_loop *l = open_loop();
  struct starve s = {l, 0, 0};
  int sv[2];
  t_socketpair(sv);
  poller_timer t;
  poller_timer_init(&t, on_zero, &s);
  ASSERT_OK(poller_timer_start(l, &t, 0, 0));
  ASSERT_OK(poller_io_start(l, sv[0], POLLER_OUT, on_starve_io, &s));
  ASSERT_EQ(poller_loop_run(l, -1, 5), 5);
  ASSERT_EQ(s.io_calls, 5);
  ASSERT_GE(s.timer_calls, 4);
  ASSERT_LE(s.timer_calls, 6);
  poller_timer_stop(&t);
  t_close(sv[0]);
  t_close(sv[1]);
  close_loop(l);
}

/* ---- deferred work ---- */

static void on_defer(void *arg) { (*(int *)arg)++; }

TEST(defer_runs_once_at_iteration_end) {
  poller_loop *l = open_loop();
  int n = 0;
  ASSERT_OK(poller_loop_defer(l, on_defer, &n));
  ASSERT_OK(poller_loop_defer(l, on_defer, &n));
  ASSERT_ERR(poller_loop_defer(l, NULL, &n), -EFAULT);
  ASSERT_EQ(poller_loop_run(l, 1000, 1), 1);
  ASSERT_EQ(n, 2);
  ASSERT_EQ(poller_loop_run(l, 0, 1), 0);
  ASSERT_EQ(n, 2);
  close_loop(l);
}

/* ---- signals ---- */

static unsigned sig_total;
static int sig_calls;

static void on_sig(poller_signal *s, int signum, unsigned count, void *arg) {
  (void)signum;
  (void)arg;
  sig_total += count;
  sig_calls++;
  if (sig_total >= 1)
    poller_loop_stop(s->loop);
}

/* I54: a burst of N signals: at least one callback, count in 1..N. */
TEST(signal_burst_not_lost) {
  T_POSIX_ONLY("signal watchers are -ENOSYS");
  poller_loop *l = open_loop();
  poller_signal s;
  sig_total = 0;
  sig_calls = 0;
  ASSERT_OK(poller_signal_start(l, &s, SIGUSR1, on_sig, NULL));
  for (int i = 0; i < 50; i++)
    kill(getpid(), SIGUSR1);
  ASSERT_GE(poller_loop_run(l, 3000, -1), 1);
  ASSERT_GE(sig_calls, 1);
  ASSERT_GE(sig_total, 1);
  ASSERT_LE(sig_total, 50);
  ASSERT_ERR(poller_signal_start(l, &s, SIGUSR1, on_sig, NULL), -EBUSY);
  ASSERT_OK(poller_signal_stop(&s));
  ASSERT_OK(poller_signal_stop(&s)); /* twice is harmless */
  ASSERT_ERR(poller_signal_start(l, &s, 0, on_sig, NULL), -EINVAL);
  ASSERT_ERR(poller_signal_start(l, &s, SIGKILL, on_sig, NULL), -EINVAL);
  close_loop(l);
}

static void plain_handler(int signum) { (void)signum; }

/* The previous disposition comes back when the last watcher stops. */
TEST(signal_restores_disposition) {
  T_POSIX_ONLY("signal watchers are -ENOSYS");
  poller_loop *l = open_loop();
  struct sigaction sa, cur;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = plain_handler;
  ASSERT_SYS(sigaction(SIGUSR2, &sa, NULL));
  poller_signal s1, s2;
  ASSERT_OK(poller_signal_start(l, &s1, SIGUSR2, on_sig, NULL));
  ASSERT_OK(poller_signal_start(l, &s2, SIGUSR2, on_sig, NULL));
  ASSERT_SYS(sigaction(SIGUSR2, NULL, &cur));
  ASSERT_TRUE(cur.sa_handler != plain_handler);
  ASSERT_OK(poller_signal_stop(&s1));
  ASSERT_SYS(sigaction(SIGUSR2, NULL, &cur));
  ASSERT_TRUE(cur.sa_handler != plain_handler);
  ASSERT_OK(poller_signal_stop(&s2));
  ASSERT_SYS(sigaction(SIGUSR2, NULL, &cur));
  ASSERT_TRUE(cur.sa_handler == plain_handler);
  close_loop(l);
}

static int two_calls[2];
static void on_sig_two(poller_signal *s, int signum, unsigned count,
                       void *arg) {
  (void)signum;
  (void)count;
  two_calls[(intptr_t)arg]++;
  poller_loop_stop(s->loop);
}

/* Two watchers of one signal in one loop both get it. */
TEST(signal_two_watchers_one_loop) {
  T_POSIX_ONLY("signal watchers are -ENOSYS");
  poller_loop *l = open_loop();
  poller_signal s1, s2;
  two_calls[0] = two_calls[1] = 0;
  ASSERT_OK(poller_signal_start(l, &s1, SIGUSR1, on_sig_two, (void *)0));
  ASSERT_OK(poller_signal_start(l, &s2, SIGUSR1, on_sig_two, (void *)1));
  kill(getpid(), SIGUSR1);
  ASSERT_GE(poller_loop_run(l, 3000, -1), 1);
  ASSERT_EQ(two_calls[0], 1);
  ASSERT_EQ(two_calls[1], 1);
  poller_signal_stop(&s1);
  poller_signal_stop(&s2);
  close_loop(l);
}

struct sigthread {
  poller_loop *l;
  poller_signal s;
  int got;
  atomic_int ready;
};

static void on_sig_thread(poller_signal *s, int signum, unsigned count,
                          void *arg) {
  struct sigthread *st = arg;
  (void)signum;
  (void)count;
  st->got++;
  poller_loop_stop(s->loop);
}

static void *sig_thread_run(void *arg) {
  struct sigthread *st = arg;
  atomic_store(&st->ready, 1);
  poller_loop_run(st->l, 5000, -1);
  return NULL;
}

/* I55: a signal watched by two loops in two threads reaches both. */
TEST(signal_multiple_loops) {
  T_POSIX_ONLY("signal watchers are -ENOSYS");
  struct sigthread a = {0}, b = {0};
  a.l = open_loop();
  b.l = open_loop();
  ASSERT_OK(poller_signal_start(a.l, &a.s, SIGUSR1, on_sig_thread, &a));
  ASSERT_OK(poller_signal_start(b.l, &b.s, SIGUSR1, on_sig_thread, &b));
  pthread_t ta, tb;
  ASSERT_EQ(pthread_create(&ta, NULL, sig_thread_run, &a), 0);
  ASSERT_EQ(pthread_create(&tb, NULL, sig_thread_run, &b), 0);
  while (!atomic_load(&a.ready) || !atomic_load(&b.ready))
    t_sleep_ms(1);
  t_sleep_ms(20);
  kill(getpid(), SIGUSR1);
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  ASSERT_EQ(a.got, 1);
  ASSERT_EQ(b.got, 1);
  poller_signal_stop(&a.s);
  poller_signal_stop(&b.s);
  poller_loop_close(a.l);
  close_loop(b.l);
}

/* ---- child processes ---- */

static int child_status = -2;
static pid_t child_pid;

static void on_child(poller_child *c, pid_t pid, int status, void *arg) {
  (void)c;
  (void)arg;
  child_pid = pid;
  child_status = status;
}

/* A child's exit status is reported once. */
TEST(child_exit_status) {
  T_POSIX_ONLY("fork, and child watchers are -ENOSYS");
  poller_loop *l = open_loop();
  pid_t pid = fork();
  ASSERT_SYS(pid);
  if (pid == 0) {
    usleep(50000);
    _exit(7);
  }
  poller_child c;
  child_status = -2;
  ASSERT_OK(poller_child_start(l, &c, pid, on_child, NULL));
  ASSERT_GE(poller_loop_run(l, 5000, -1), 1);
  ASSERT_EQ(child_pid, pid);
  ASSERT_TRUE(WIFEXITED(child_status));
  ASSERT_EQ(WEXITSTATUS(child_status), 7);
  ASSERT_EQ(poller_loop_alive(l), 0);
  ASSERT_ERR(poller_child_start(l, &c, 0, on_child, NULL), -EINVAL);
  close_loop(l);
}

/* ---- file changes ---- */

static unsigned fs_bits;
static void on_fs(poller_fswatch *w, unsigned events, void *arg) {
  (void)w;
  (void)arg;
  fs_bits |= events;
}

/* A watched file's write, rename and delete are reported. */
TEST(fswatch_write_rename_delete) {
  poller_loop *l = open_loop();
  char path[] = "/tmp/poller-fs-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_SYS(fd);
  poller_fswatch w;
  int r = poller_fswatch_start(l, &w, path, 0x7f, on_fs, NULL);
  if (r == -ENOSYS) {
    close(fd);
    unlink(path);
    SKIP("no file watching on this platform");
  }
  ASSERT_OK(r);
  fs_bits = 0;
  ASSERT_EQ(write(fd, "hello", 5), 5);
  while (!(fs_bits & POLLER_FS_WRITE))
    ASSERT_GE(poller_loop_run(l, 1000, 1), 0);
  ASSERT_BITS(fs_bits, POLLER_FS_WRITE | POLLER_FS_EXTEND);
  char moved[sizeof path + 4];
  snprintf(moved, sizeof moved, "%s.mv", path);
  ASSERT_SYS(rename(path, moved));
  double end = t_now_ms() + 3000;
  while (!(fs_bits & POLLER_FS_RENAME) && t_now_ms() < end)
    ASSERT_GE(poller_loop_run(l, 100, 1), 0);
  ASSERT_BITS(fs_bits, POLLER_FS_RENAME);
  close(fd);
  ASSERT_SYS(unlink(moved));
  end = t_now_ms() + 3000;
  while (!(fs_bits & POLLER_FS_DELETE) && t_now_ms() < end)
    ASSERT_GE(poller_loop_run(l, 100, 1), 0);
  ASSERT_BITS(fs_bits, POLLER_FS_DELETE);
  ASSERT_OK(poller_fswatch_stop(&w));
  ASSERT_ERR(poller_fswatch_start(l, &w, "/nonexistent/x", 0x7f, on_fs, NULL),
             -ENOENT);
  ASSERT_ERR(poller_fswatch_start(l, &w, path, 0, on_fs, NULL), -EINVAL);
  close_loop(l);
}

/* ---- async ---- */

#define ASYNC_THREADS 4
#define ASYNC_SENDS 100000

struct asyncctx {
  poller_async a;
  atomic_int sent_done;
  atomic_long last_seen;
  atomic_long produced;
  long consumed;
  int calls;
};

static void on_async(poller_async *a, void *arg) {
  struct asyncctx *c = arg;
  c->calls++;
  c->consumed = atomic_load(&c->produced);
  if (atomic_load(&c->sent_done) == ASYNC_THREADS &&
      c->consumed == (long)ASYNC_THREADS * ASYNC_SENDS)
    poller_loop_stop(a->loop);
}

static void *async_sender(void *arg) {
  struct asyncctx *c = arg;
  for (int i = 0; i < ASYNC_SENDS; i++) {
    atomic_fetch_add(&c->produced, 1);
    poller_async_send(&c->a);
  }
  atomic_fetch_add(&c->sent_done, 1);
  poller_async_send(&c->a);
  return NULL;
}

/* I56: sends from 4 threads, 100,000 each: the loop sees the last one
 * (no lost final wake-up), coalesced into far fewer callbacks. */
TEST_TIMEOUT(async_from_threads_no_lost_wakeup, 60) {
  poller_loop *l = open_loop();
  struct asyncctx c;
  memset(&c, 0, sizeof c);
  ASSERT_OK(poller_async_start(l, &c.a, on_async, &c));
  pthread_t th[ASYNC_THREADS];
  for (int i = 0; i < ASYNC_THREADS; i++)
    ASSERT_EQ(pthread_create(&th[i], NULL, async_sender, &c), 0);
  ASSERT_GE(poller_loop_run(l, 30000, -1), 1);
  for (int i = 0; i < ASYNC_THREADS; i++)
    pthread_join(th[i], NULL);
  ASSERT_EQ(c.consumed, (long)ASYNC_THREADS * ASYNC_SENDS);
  ASSERT_GE(c.calls, 1);
  t_note("%d callbacks for %d sends", c.calls, ASYNC_THREADS * ASYNC_SENDS);
  ASSERT_OK(poller_async_stop(&c.a));
  ASSERT_ERR(poller_async_send(NULL), -EFAULT);
  close_loop(l);
}

/* ---- fork ---- */

/* After fork, the child's reinit gives it its own kernel object: its loop
 * works, and the parent's keeps working. */
TEST(fork_reinit_loop) {
  T_POSIX_ONLY("fork");
  poller_loop *l = open_loop();
  int sv[2], calls = 0;
  t_socketpair(sv);
  ASSERT_OK(poller_io_start(l, sv[0], POLLER_IN, io_count, &calls));
  pid_t pid = fork();
  ASSERT_SYS(pid);
  if (pid == 0) {
    if (poller_loop_reinit(l) < 0)
      _exit(2);
    int c2 = 0;
    poller_io_stop(l, sv[0]);
    int p2[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, p2) < 0)
      _exit(3);
    poller_io_start(l, p2[0], POLLER_IN, io_count, &c2);
    if (write(p2[1], "x", 1) != 1)
      _exit(4);
    poller_loop_run(l, 1000, 1);
    _exit(c2 == 1 ? 0 : 5);
  }
  int status;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  /* The child's io_stop did not remove the parent's registration. */
  t_write(sv[1], 1);
  ASSERT_EQ(poller_loop_run(l, 2000, 1), 1);
  ASSERT_EQ(calls, 1);
  ASSERT_OK(poller_io_stop(l, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  close_loop(l);
}
