/* SPDX-License-Identifier: MIT */
/*
 * test_loop_contract.c - promises of poller_loop.h that callbacks can
 * break: closing the loop or running it again from inside a callback, the
 * iteration count, the inotify descriptor going away under its own
 * callback.  Every test runs on every backend.
 */
#include "harness.h"

#include "poller_loop.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static poller_loop *open_loop(void) {
  poller_loop *l = NULL;
  int r = poller_loop_open(&l, T_BACKEND);
  if (r == -ENOSYS || r == -EPERM)
    SKIP("backend %s not usable here: %s", T_BACKEND_NAME, poller_strerror(r));
  ASSERT_OK(r);
  return l;
}

static void close_loop(poller_loop *l) {
  ASSERT_EQ(poller_count(poller_loop_poller(l)), 0);
  poller_loop_close(l);
  t_assert_fds_clean();
}

/* ---- the iteration count ---- */

static int timer_calls;
static void on_timer(poller_timer *t, void *arg) {
  (void)t;
  (void)arg;
  timer_calls++;
}

/* A run in which only timers ran, all of them already due when the run
 * began, still ran one iteration (it used to return 0: the cause of the
 * occasional timers_never_early failure on a loaded machine). */
TEST(run_counts_timer_only_iteration) {
  poller_loop *l = open_loop();
  poller_timer t[3];
  timer_calls = 0;
  for (int i = 0; i < 3; i++) {
    poller_timer_init(&t[i], on_timer, NULL);
    ASSERT_OK(poller_timer_start(l, &t[i], (uint64_t)i, 0));
  }
  /* Every deadline passes before the run starts: the loaded-machine case,
   * made certain. */
  t_sleep_ms(10);
  ASSERT_EQ(poller_loop_run(l, 5000, -1), 1);
  ASSERT_EQ(timer_calls, 3);
  /* The same with a count: one iteration asked, one run. */
  ASSERT_OK(poller_timer_start(l, &t[0], 0, 0));
  t_sleep_ms(2);
  ASSERT_EQ(poller_loop_run(l, -1, 1), 1);
  ASSERT_EQ(timer_calls, 4);
  /* Nothing alive and nothing due: no iteration. */
  ASSERT_EQ(poller_loop_run(l, -1, -1), 0);
  close_loop(l);
}

/* ---- closing the loop from a callback ---- */

struct closer {
  poller_loop *l;
  int calls;
  int fds[2][2];
  int defer_ran;
};

static void on_defer_mark(void *arg) { ((struct closer *)arg)->defer_ran++; }

static void io_close_loop(poller_loop *l, int fd, unsigned ev, void *arg) {
  struct closer *c = arg;
  (void)fd;
  (void)ev;
  c->calls++;
  ASSERT_OK(poller_loop_defer(l, on_defer_mark, c));
  /* Both watchers stop themselves first, as a careful application does;
   * the second one must not run at all once the loop is closing. */
  poller_loop_close(l);
}

/* poller_loop_close from inside a callback is deferred to the end of the
 * run: no other callback of the batch runs, the run returns normally,
 * deferred work still runs (it usually frees), and the loop is gone (no
 * descriptor left; under ASan no use after free). */
TEST(loop_close_from_callback_deferred) {
  struct closer c = {0};
  c.l = open_loop();
  t_socketpair(c.fds[0]);
  t_socketpair(c.fds[1]);
  ASSERT_OK(poller_io_start(c.l, c.fds[0][0], POLLER_OUT, io_close_loop, &c));
  ASSERT_OK(poller_io_start(c.l, c.fds[1][0], POLLER_OUT, io_close_loop, &c));
  int r = poller_loop_run(c.l, 5000, -1);
  ASSERT_EQ(r, 1);
  ASSERT_EQ(c.calls, 1);
  ASSERT_EQ(c.defer_ran, 1);
  for (int i = 0; i < 2; i++) {
    t_close(c.fds[i][0]);
    t_close(c.fds[i][1]);
  }
  t_assert_fds_clean();
}

static void timer_close_loop(poller_timer *t, void *arg) {
  (void)t;
  struct closer *c = arg;
  c->calls++;
  poller_loop_close(c->l);
}

/* The same from a timer callback, with another timer due in the same
 * phase: it does not run. */
TEST(loop_close_from_timer_deferred) {
  struct closer c = {0};
  c.l = open_loop();
  poller_timer t1, t2;
  poller_timer_init(&t1, timer_close_loop, &c);
  poller_timer_init(&t2, timer_close_loop, &c);
  ASSERT_OK(poller_timer_start(c.l, &t1, 0, 0));
  ASSERT_OK(poller_timer_start(c.l, &t2, 0, 0));
  t_sleep_ms(2);
  ASSERT_GE(poller_loop_run(c.l, 5000, -1), 0);
  ASSERT_EQ(c.calls, 1);
  t_assert_fds_clean();
}

/* ---- nested run ---- */

struct nest {
  int calls;
  int nested_rc;
};

static void io_nested(poller_loop *l, int fd, unsigned ev, void *arg) {
  struct nest *n = arg;
  (void)ev;
  n->calls++;
  n->nested_rc = poller_loop_run(l, 0, 1);
  ASSERT_OK(poller_io_stop(l, fd));
}

/* poller_loop_run from inside a callback of the same loop is refused with
 * -EBUSY (asyncio: "This event loop is already running"): a nested run
 * would reuse the report buffer and dispatch reports twice, ONESHOT ones
 * included.  The outer run goes on normally. */
TEST(loop_nested_run_refused) {
  poller_loop *l = open_loop();
  int sv[2];
  t_socketpair(sv);
  struct nest n = {0, 0};
  ASSERT_OK(
      poller_io_start(l, sv[0], POLLER_OUT | POLLER_ONESHOT, io_nested, &n));
  ASSERT_EQ(poller_loop_run(l, 5000, -1), 1);
  ASSERT_EQ(n.calls, 1);
  ASSERT_ERR(n.nested_rc, -EBUSY);
  /* Not running any more: a run works again. */
  ASSERT_EQ(poller_loop_run(l, 0, 1), 0);
  t_close(sv[0]);
  t_close(sv[1]);
  close_loop(l);
}

/* ---- the inotify descriptor closed by its own callback ---- */

/* The loop's inotify descriptor, found in /proc/self/fd. */
static int find_inotify_fd(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d)
    return -1;
  struct dirent *de;
  int found = -1;
  while ((de = readdir(d)) != NULL) {
    char path[PATH_MAX], target[256];
    snprintf(path, sizeof path, "/proc/self/fd/%s", de->d_name);
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n <= 0)
      continue;
    target[n] = '\0';
    if (strstr(target, "inotify"))
      found = atoi(de->d_name);
  }
  closedir(d);
  return found;
}

struct fsreuse {
  poller_fswatch w;
  int inotify_fd;
  int app_pipe[2];
  size_t app_bytes;
  int calls;
};

/* Stops the only watch (the loop closes its inotify fd), then gives that
 * very number to the application's pipe, full of data the application
 * owns (and that looks like nothing inotify would write). */
static void on_fs_reuse(poller_fswatch *w, unsigned events, void *arg) {
  struct fsreuse *f = arg;
  (void)events;
  f->calls++;
  ASSERT_OK(poller_fswatch_stop(w));
  int p[2];
  ASSERT_SYS(pipe2(p, O_NONBLOCK | O_CLOEXEC));
  if (p[0] != f->inotify_fd) {
    ASSERT_SYS(dup3(p[0], f->inotify_fd, O_CLOEXEC));
    close(p[0]);
  }
  f->app_pipe[0] = f->inotify_fd;
  f->app_pipe[1] = p[1];
  char junk[4096];
  memset(junk, 0xff, sizeof junk);
  ssize_t n = write(p[1], junk, sizeof junk);
  ASSERT_EQ(n, (ssize_t)sizeof junk);
  f->app_bytes = sizeof junk;
}

/* A file-watch callback that stops the last watch closes the loop's
 * inotify descriptor; the loop must not read that number again, since it
 * may already be the application's (it used to read the application's
 * data and, parsing it as inotify events, overflow its stack buffer). */
TEST(fswatch_stop_last_then_fd_reused) {
  poller_loop *l = open_loop();
  char path[] = "/tmp/poller-fsreuse-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_SYS(fd);
  struct fsreuse f;
  memset(&f, 0, sizeof f);
  int r = poller_fswatch_start(l, &f.w, path, 0x7f, on_fs_reuse, &f);
  if (r == -ENOSYS) {
    close(fd);
    unlink(path);
    SKIP("no file watching on this platform");
  }
  ASSERT_OK(r);
  f.inotify_fd = find_inotify_fd();
  if (f.inotify_fd < 0)
    SKIP("cannot find the inotify descriptor in /proc/self/fd");
  /* Two changes, so more than one event waits in the inotify queue. */
  ASSERT_EQ(write(fd, "a", 1), 1);
  ASSERT_SYS(fchmod(fd, 0640));
  double end = t_now_ms() + 5000;
  while (f.calls == 0 && t_now_ms() < end)
    ASSERT_GE(poller_loop_run(l, 100, 1), 0);
  ASSERT_EQ(f.calls, 1);
  /* The application's data is all still there. */
  char buf[8192];
  ssize_t n = read(f.app_pipe[0], buf, sizeof buf);
  ASSERT_EQ(n, (ssize_t)f.app_bytes);
  close(f.app_pipe[0]);
  close(f.app_pipe[1]);
  close(fd);
  unlink(path);
  close_loop(l);
}

/* ---- close hooks ---- */

struct hooklog {
  int order[4];
  int n;
  poller_timer timer; /* stopped by a hook: handles still work then */
  int timer_stopped;
  poller_loop *loop;
};

static struct hooklog *g_log;
static void hook_b(poller_loop_hook *h, void *arg);
static void hook_a(poller_loop_hook *h, void *arg) {
  /* Removed before the call, so the hook may free its own memory. */
  for (poller_loop_hook *it = poller_loop_hook_find(g_log->loop, hook_a); it;
       it = NULL)
    ASSERT_TRUE(it != h);
  ASSERT_TRUE(poller_loop_hook_find(g_log->loop, hook_b) != h);
  g_log->order[g_log->n++] = (int)(intptr_t)arg;
  /* The loop's handles still work from a hook. */
  if (poller_timer_active(&g_log->timer)) {
    ASSERT_OK(poller_timer_stop(&g_log->timer));
    g_log->timer_stopped = 1;
  }
}
static void hook_b(poller_loop_hook *h, void *arg) { hook_a(h, arg); }

/* Close hooks: run once at poller_loop_close, newest first, with the
 * loop's handles still usable; a removed hook does not run; adding one
 * twice is -EBUSY; find returns the newest hook of a callback. */
TEST(loop_close_hooks) {
  poller_loop *l = open_loop();
  struct hooklog log;
  memset(&log, 0, sizeof log);
  g_log = &log;
  log.loop = l;
  poller_loop_hook h1, h2, h3;
  ASSERT_ERR(poller_loop_hook_add(NULL, &h1, hook_a, NULL), -EFAULT);
  ASSERT_ERR(poller_loop_hook_add(l, NULL, hook_a, NULL), -EFAULT);
  ASSERT_ERR(poller_loop_hook_add(l, &h1, NULL, NULL), -EFAULT);
  ASSERT_TRUE(poller_loop_hook_find(l, hook_a) == NULL);
  ASSERT_OK(poller_loop_hook_add(l, &h1, hook_a, (void *)1));
  ASSERT_OK(poller_loop_hook_add(l, &h2, hook_b, (void *)2));
  ASSERT_OK(poller_loop_hook_add(l, &h3, hook_a, (void *)3));
  ASSERT_ERR(poller_loop_hook_add(l, &h2, hook_b, (void *)2), -EBUSY);
  ASSERT_TRUE(poller_loop_hook_find(l, hook_a) == &h3);
  ASSERT_TRUE(poller_loop_hook_find(l, hook_b) == &h2);
  ASSERT_OK(poller_loop_hook_remove(&h3));
  ASSERT_OK(poller_loop_hook_remove(&h3)); /* twice is harmless */
  ASSERT_ERR(poller_loop_hook_remove(NULL), -EFAULT);
  ASSERT_TRUE(poller_loop_hook_find(l, hook_a) == &h1);
  poller_timer_init(&log.timer, on_timer, NULL);
  ASSERT_OK(poller_timer_start(l, &log.timer, 100000, 0));
  /* Hooks do not run at a run, only at the close. */
  ASSERT_EQ(poller_loop_run(l, 0, 1), 1);
  ASSERT_EQ(log.n, 0);
  poller_loop_close(l);
  ASSERT_EQ(log.n, 2);
  ASSERT_EQ(log.order[0], 2);
  ASSERT_EQ(log.order[1], 1);
  ASSERT_EQ(log.timer_stopped, 1);
  t_assert_fds_clean();
}

/* ---- registrations the core drops ---- */

#include "internal.h" /* poller__fault_set: make the kernel refuse a change */

struct nvalrec {
  int calls;
  unsigned events;
};

static void io_nval(poller_loop *l, int fd, unsigned ev, void *arg) {
  struct nvalrec *r = arg;
  (void)l;
  (void)fd;
  r->calls++;
  r->events |= ev;
}

/* A change the kernel refuses makes the core drop the registration and
 * report it once as ERR|NVAL: the loop stops the watcher (it no longer
 * keeps the run alive, poller_io_stop says -ENOENT) and hands the report
 * to the watcher's callback; the fd can be watched again afterwards. */
TEST(io_dropped_registration_stops_watcher) {
  poller_loop *l = open_loop();
  int sv[2];
  t_socketpair(sv);
  struct nvalrec r = {0, 0};
  ASSERT_OK(poller_io_start(l, sv[0], POLLER_IN, io_nval, &r));
  ASSERT_EQ(poller_loop_alive(l), 1);
  poller__fault_set(POLLER__FAULT_CTL, -ENOMEM);
  ASSERT_OK(poller_io_modify(l, sv[0], POLLER_IN | POLLER_OUT));
  int it = poller_loop_run(l, 2000, 1);
  poller__fault_set(POLLER__FAULT_CTL, 0);
  ASSERT_EQ(it, 1);
  ASSERT_EQ(r.calls, 1);
  ASSERT_BITS(r.events, POLLER_NVAL | POLLER_ERR);
  ASSERT_EQ(poller_loop_alive(l), 0);
  ASSERT_ERR(poller_io_stop(l, sv[0]), -ENOENT);
  /* Nothing left: the run returns at once, the callback does not run. */
  ASSERT_EQ(poller_loop_run(l, 1000, -1), 0);
  ASSERT_EQ(r.calls, 1);
  r.events = 0;
  ASSERT_OK(poller_io_start(l, sv[0], POLLER_OUT, io_nval, &r));
  ASSERT_EQ(poller_loop_run(l, 2000, 1), 1);
  ASSERT_EQ(r.calls, 2);
  ASSERT_BITS(r.events, POLLER_OUT);
  ASSERT_NOBITS(r.events, POLLER_NVAL);
  ASSERT_OK(poller_io_stop(l, sv[0]));
  t_close(sv[0]);
  t_close(sv[1]);
  close_loop(l);
}

/* ---- child watchers: statuses that are not a child's exit ---- */

#include <signal.h>
#ifndef _WIN32 /* harness.h gives Windows its stand-ins */
#include <sys/wait.h>
#endif

struct childrec {
  int calls;
  pid_t pid;
  int status;
};

static void on_child_rec(poller_child *c, pid_t pid, int status, void *arg) {
  struct childrec *r = arg;
  (void)c;
  r->calls++;
  r->pid = pid;
  r->status = status;
}

/* A pid that is not a child of this process (our parent, init) cannot be
 * waited for: poller_child_start says -ECHILD at once instead of a watch
 * that never completes (without pidfd) or completes with a made-up
 * status. */
TEST(child_not_ours_refused) {
  T_POSIX_ONLY("child watchers are -ENOSYS");
  poller_loop *l = open_loop();
  poller_child c;
  struct childrec r = {0, 0, 0};
  ASSERT_ERR(poller_child_start(l, &c, getppid(), on_child_rec, &r), -ECHILD);
  ASSERT_ERR(poller_child_start(l, &c, 1, on_child_rec, &r), -ECHILD);
  ASSERT_EQ(poller_loop_alive(l), 0);
  ASSERT_EQ(r.calls, 0);
  close_loop(l);
}

/* A child reaped by someone else (here a plain waitpid) while watched:
 * the callback runs once with status -ECHILD, which no W* macro can take
 * for an exit (-1 used to read as "killed by signal 127"). */
TEST(child_reaped_elsewhere_status) {
  T_POSIX_ONLY("fork, and child watchers are -ENOSYS");
  poller_loop *l = open_loop();
  int go[2];
  ASSERT_SYS(pipe2(go, O_CLOEXEC));
  pid_t pid = fork();
  ASSERT_SYS(pid);
  if (pid == 0) {
    char ch;
    close(go[1]);
    (void)!read(go[0], &ch, 1); /* exits when the parent says so */
    _exit(3);
  }
  close(go[0]);
  poller_child c;
  struct childrec r = {0, 0, 0};
  ASSERT_OK(poller_child_start(l, &c, pid, on_child_rec, &r));
  close(go[1]); /* the child exits */
  int status;
  ASSERT_EQ(waitpid(pid, &status, 0), pid); /* reaped behind the loop */
  ASSERT_TRUE(WIFEXITED(status));
  double end = t_now_ms() + 10000;
  while (r.calls == 0 && t_now_ms() < end)
    ASSERT_GE(poller_loop_run(l, 100, 1), 0);
  ASSERT_EQ(r.calls, 1);
  ASSERT_EQ(r.pid, pid);
  ASSERT_ERR(r.status, -ECHILD);
  ASSERT_EQ(poller_loop_alive(l), 0);
  close_loop(l);
}

/* ---- file watch: the last link removed while the file is open ---- */

struct fsdel {
  unsigned bits;
  int deletes;
};

static void on_fs_del(poller_fswatch *w, unsigned events, void *arg) {
  struct fsdel *d = arg;
  (void)w;
  d->bits |= events;
  if (events & POLLER_FS_DELETE)
    d->deletes++;
}

/* Unlinking the only link of a file that is still open is its deletion,
 * as docs/loop.md promises (inotify gives only IN_ATTRIB then; its
 * IN_DELETE_SELF waits for the last close).  DELETE comes once: not again
 * when the last descriptor closes. */
TEST(fswatch_delete_while_open) {
  poller_loop *l = open_loop();
  char path[] = "/tmp/poller-fsdel-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_SYS(fd);
  poller_fswatch w;
  struct fsdel d = {0, 0};
  int r = poller_fswatch_start(l, &w, path, 0x7f, on_fs_del, &d);
  if (r == -ENOSYS) {
    close(fd);
    unlink(path);
    SKIP("no file watching on this platform");
  }
  ASSERT_OK(r);
  ASSERT_SYS(unlink(path)); /* fd stays open */
  double end = t_now_ms() + 5000;
  while (!(d.bits & POLLER_FS_DELETE) && t_now_ms() < end)
    ASSERT_GE(poller_loop_run(l, 100, 1), 0);
  ASSERT_BITS(d.bits, POLLER_FS_DELETE);
  ASSERT_EQ(d.deletes, 1);
  close(fd); /* the inode goes now: the kernel's IN_DELETE_SELF */
  ASSERT_GE(poller_loop_run(l, 200, -1), 0);
  ASSERT_EQ(d.deletes, 1);
  ASSERT_OK(poller_fswatch_stop(&w));
  close_loop(l);
}

/* A file with a second hard link: removing one link is LINK, not DELETE
 * (the path is gone, the file is not). */
TEST(fswatch_unlink_one_of_two_links) {
  T_POSIX_ONLY("file watching is -ENOSYS");
  poller_loop *l = open_loop();
  char path[] = "/tmp/poller-fslink-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_SYS(fd);
  close(fd);
  char other[sizeof path + 4];
  snprintf(other, sizeof other, "%s.ln", path);
  ASSERT_SYS(link(path, other));
  poller_fswatch w;
  struct fsdel d = {0, 0};
  int r = poller_fswatch_start(l, &w, path, 0x7f, on_fs_del, &d);
  if (r == -ENOSYS) {
    unlink(path);
    unlink(other);
    SKIP("no file watching on this platform");
  }
  ASSERT_OK(r);
  ASSERT_SYS(unlink(path));
  double end = t_now_ms() + 5000;
  while (!(d.bits & POLLER_FS_LINK) && t_now_ms() < end)
    ASSERT_GE(poller_loop_run(l, 100, 1), 0);
  ASSERT_BITS(d.bits, POLLER_FS_LINK);
  ASSERT_EQ(d.deletes, 0);
  ASSERT_SYS(unlink(other));
  end = t_now_ms() + 5000;
  while (!(d.bits & POLLER_FS_DELETE) && t_now_ms() < end)
    ASSERT_GE(poller_loop_run(l, 100, 1), 0);
  ASSERT_EQ(d.deletes, 1);
  ASSERT_OK(poller_fswatch_stop(&w));
  close_loop(l);
}

/* ---- transient errors of the wait ---- */

#include <pthread.h>
#include <stdatomic.h>

static atomic_int eintr_handled;
static void on_usr2(int signum) {
  (void)signum;
  atomic_fetch_add(&eintr_handled, 1);
}

struct interrupter {
  pthread_t target;
  atomic_int done;
};

/* Interrupts the loop's thread every 5 ms until the test is done. */
static void *interrupt_loop(void *arg) {
  struct interrupter *in = arg;
  while (!atomic_load(&in->done)) {
    pthread_kill(in->target, SIGUSR2);
    t_sleep_ms(5);
  }
  return NULL;
}

/* Every 100 ms: ends the run once several signals came (on a loaded
 * machine the interrupting thread may start late; the run waits for it
 * rather than assuming it ran within some time). */
static void on_timer_done(poller_timer *t, void *arg) {
  if (atomic_load(&eintr_handled) >= 5) {
    atomic_store(&((struct interrupter *)arg)->done, 1);
    ASSERT_OK(poller_timer_stop(t));
  }
}

/* A wait interrupted by a signal returns -EINTR when the loop's poller
 * reports EINTR (POLLER_OPT_REPORT_EINTR); the run takes it as transient
 * and goes on until its timer fires, instead of ending with -EINTR (the
 * same path as io_uring's -EAGAIN/-EBUSY and -ENOMEM). */
TEST(run_survives_transient_wait_errors) {
  T_POSIX_ONLY("a Unix signal (SIGUSR2) interrupts the wait");
  poller_loop *l = open_loop();
  ASSERT_OK(poller_option(poller_loop_poller(l), POLLER_OPT_REPORT_EINTR, 1));
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr2; /* no SA_RESTART: the wait sees EINTR */
  ASSERT_SYS(sigaction(SIGUSR2, &sa, &old));
  atomic_store(&eintr_handled, 0);
  struct interrupter in;
  in.target = pthread_self();
  atomic_init(&in.done, 0);
  poller_timer t;
  poller_timer_init(&t, on_timer_done, &in);
  ASSERT_OK(poller_timer_start(l, &t, 100, 100));
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, interrupt_loop, &in), 0);
  int r = poller_loop_run(l, -1, -1);
  atomic_store(&in.done, 1);
  pthread_join(th, NULL);
  ASSERT_SYS(sigaction(SIGUSR2, &old, NULL));
  t_note("%d signals during the run", atomic_load(&eintr_handled));
  ASSERT_GE(r, 1);
  ASSERT_FALSE(poller_timer_active(&t)); /* the run lasted until then */
  ASSERT_GE(atomic_load(&eintr_handled), 5);
  close_loop(l);
}

/* ---- transient wait errors: the run backs off and goes on ---- */

static unsigned long long waits_of(poller_loop *l) {
  poller_stats st;
  ASSERT_OK(poller_stats_get(poller_loop_poller(l), &st));
  return st.waits;
}

/* Every 5 ms: counts, and stops at its second tick after the injected
 * failures are used up, so that a wait that works came between (no
 * assumption on how long the back-off takes on a loaded machine). */
static void on_timer_until_faults_gone(poller_timer *t, void *arg) {
  int *ticks = arg; /* [0]: ticks, [1]: ticks with no failure left */
  ticks[0]++;
  if (poller__fault_left(POLLER__FAULT_WAIT) == 0 && ++ticks[1] == 2)
    ASSERT_OK(poller_timer_stop(t));
}

/* A run whose waits fail with -EAGAIN, -EBUSY or -ENOMEM a few times in a
 * row takes each failure as transient: it goes on, every failed wait is
 * retried, and the run ends normally when its last watcher stops. */
TEST(run_survives_injected_wait_errors) {
  static const int errs[] = {-EAGAIN, -EBUSY, -ENOMEM};
  for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
    poller_loop *l = open_loop();
    int fired[2] = {0, 0};
    poller_timer t;
    poller_timer_init(&t, on_timer_until_faults_gone, fired);
    ASSERT_OK(poller_timer_start(l, &t, 5, 5));
    unsigned long long w0 = waits_of(l);
    poller__fault_set_times(POLLER__FAULT_WAIT, errs[i], 8);
    int r = poller_loop_run(l, -1, -1);
    int left = poller__fault_left(POLLER__FAULT_WAIT);
    poller__fault_set(POLLER__FAULT_WAIT, 0);
    ASSERT_GE(r, 1);
    ASSERT_EQ(left, 0);
    ASSERT_EQ(fired[1], 2);
    ASSERT_FALSE(poller_timer_active(&t));
    /* The 8 failed waits, and at least one that succeeded after them. */
    ASSERT_GE(waits_of(l) - w0, 9);
    close_loop(l);
  }
}

/* While every wait fails, the run backs off instead of spinning: a run of
 * 300 ms makes a bounded number of waits (the back-off doubles from 1 ms
 * up to 64 ms: about ten waits; a spin makes thousands), and it still
 * ends at its time limit with no error. */
TEST(run_backs_off_on_lasting_wait_errors) {
  static const int errs[] = {-EAGAIN, -ENOMEM};
  for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
    poller_loop *l = open_loop();
    int fired[2] = {0, 0};
    poller_timer t; /* keeps the loop alive; never fires in the run */
    poller_timer_init(&t, on_timer_until_faults_gone, fired);
    ASSERT_OK(poller_timer_start(l, &t, 600000, 0));
    unsigned long long w0 = waits_of(l);
    poller__fault_set(POLLER__FAULT_WAIT, errs[i]);
    int r = poller_loop_run(l, 300, -1);
    poller__fault_set(POLLER__FAULT_WAIT, 0);
    unsigned long long waits = waits_of(l) - w0;
    t_note("%s: %llu waits in a 300 ms run", strerror(-errs[i]), waits);
    ASSERT_GE(r, 1);
    ASSERT_GE(waits, 2);
    ASSERT_LE(waits, 40);
    ASSERT_EQ(fired[0], 0);
    /* The loop works again once the waits do. */
    ASSERT_GE(poller_loop_run(l, 0, 1), 0);
    ASSERT_OK(poller_timer_stop(&t));
    close_loop(l);
  }
}

/* ---- fork while another thread starts and stops signal watchers ---- */

#if defined(__SANITIZE_ADDRESS__)
#define T_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_ASAN 1
#endif
#endif

static void on_sig_nothing(poller_signal *s, int signum, unsigned count,
                           void *arg) {
  (void)s;
  (void)signum;
  (void)count;
  (void)arg;
}

struct sigchurn {
  atomic_int stop;
  atomic_int rounds;
  poller_loop *loop;
};

/* Starts and stops a watcher of a signal nobody else watches, so every
 * start and stop changes the process-wide disposition under the signal
 * table's lock. */
static void *sig_churn(void *arg) {
  struct sigchurn *c = arg;
  poller_signal s;
  while (!atomic_load(&c->stop)) {
    if (poller_signal_start(c->loop, &s, SIGWINCH, on_sig_nothing, NULL) == 0)
      poller_signal_stop(&s);
    atomic_fetch_add(&c->rounds, 1);
  }
  return NULL;
}

/* A child forked while another thread starts and stops signal watchers
 * can watch signals itself: the process-wide signal table's lock is not
 * left held in the child (it is taken around fork). */
TEST_TIMEOUT(signal_fork_while_thread_watches, 60) {
  T_POSIX_ONLY("fork, and signal watchers are -ENOSYS");
#ifdef T_ASAN
  SKIP("AddressSanitizer's allocator can deadlock a child forked while "
       "another thread allocates");
#endif
  struct sigchurn c;
  atomic_init(&c.stop, 0);
  atomic_init(&c.rounds, 0);
  c.loop = open_loop();
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, sig_churn, &c), 0);
  while (atomic_load(&c.rounds) < 100)
    t_sleep_ms(1);
  int hung = 0, failed = 0, forks = 200;
  for (int i = 0; i < forks && !hung; i++) {
    pid_t pid = fork();
    ASSERT_SYS(pid);
    if (pid == 0) {
      alarm(5);
      poller_signal s;
      /* The child's copy of the loop: starting a watcher takes the
       * signal table's lock. */
      if (poller_signal_start(c.loop, &s, SIGUSR1, on_sig_nothing, NULL) < 0)
        _exit(2);
      _exit(0);
    }
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
      hung++;
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      failed++;
  }
  atomic_store(&c.stop, 1);
  pthread_join(th, NULL);
  t_note("%d forks: %d children deadlocked, %d failed", forks, hung, failed);
  ASSERT_EQ(hung, 0);
  ASSERT_EQ(failed, 0);
  close_loop(c.loop);
}

/* ---- Windows: the sources that are not there ---- */

#ifdef _WIN32
static void on_sig_never(poller_signal *s, int signum, unsigned n, void *a) {
  (void)s, (void)signum, (void)n, (void)a;
}
static void on_child_never(poller_child *c, pid_t pid, int st, void *a) {
  (void)c, (void)pid, (void)st, (void)a;
}
static void on_fs_never(poller_fswatch *w, unsigned events, void *a) {
  (void)w, (void)events, (void)a;
}
#endif

/* On Windows, file watchers and the signal watchers of signals other
 * than SIGINT and SIGBREAK (the console control events) check their
 * arguments and then say -ENOSYS (poller_loop.h), as does
 * poller_loop_reinit; the handles stop as no-ops, and the loop stays
 * usable (a timer runs).  Child watchers and console signals work there:
 * tests/loop/win32_sources.c. */
TEST(windows_sources_enosys) {
#ifndef _WIN32
  SKIP("Windows only: Unix has signal, child and file watchers");
#else
  poller_loop *l = open_loop();
  poller_signal s;
  poller_child c;
  poller_fswatch w;
  ASSERT_ERR(poller_signal_start(l, &s, SIGINT, NULL, NULL), -EFAULT);
  ASSERT_ERR(poller_signal_start(l, &s, 0, on_sig_never, NULL), -EINVAL);
  ASSERT_ERR(poller_signal_start(l, &s, SIGTERM, on_sig_never, NULL), -ENOSYS);
  ASSERT_ERR(poller_signal_start(l, &s, SIGUSR1, on_sig_never, NULL), -ENOSYS);
  /* Stopping reads the handle, as on Unix: one that never started is
   * zeroed memory. */
  memset(&s, 0, sizeof s);
  ASSERT_OK(poller_signal_stop(&s));
  ASSERT_ERR(poller_child_start(l, &c, 0, on_child_never, NULL), -EINVAL);
  memset(&c, 0, sizeof c);
  ASSERT_OK(poller_child_stop(&c)); /* never started */
  ASSERT_ERR(poller_fswatch_start(l, &w, "x", 0, on_fs_never, NULL), -EINVAL);
  ASSERT_ERR(
      poller_fswatch_start(l, &w, "x", POLLER_FS_WRITE, on_fs_never, NULL),
      -ENOSYS);
  ASSERT_OK(poller_fswatch_stop(&w));
  ASSERT_EQ(poller_loop_alive(l), 0);
  ASSERT_ERR(poller_loop_reinit(l), -ENOSYS); /* no fork on Windows */
  poller_timer t;
  timer_calls = 0;
  poller_timer_init(&t, on_timer, NULL);
  ASSERT_OK(poller_timer_start(l, &t, 1, 0));
  ASSERT_EQ(poller_loop_run(l, 5000, -1) >= 1, 1);
  ASSERT_EQ(timer_calls, 1);
  close_loop(l);
#endif
}
