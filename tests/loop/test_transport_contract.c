/* SPDX-License-Identifier: MIT */
/*
 * test_transport_contract.c - promises of poller_transport.h around the
 * edges: fork while another thread creates transports, SIGPIPE on every
 * kind of fd, connect refused with EAGAIN, registrations the core drops.
 * Every test runs on every backend.
 */
#include "harness.h"

#include "poller_transport.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static poller_loop *open_loop(void) {
  poller_loop *loop = NULL;
  int rc = poller_loop_open(&loop, T_BACKEND);
  if (rc == -ENOSYS || rc == -EPERM || rc == -EINVAL)
    SKIP("backend %s not usable here: %s", T_BACKEND_NAME, poller_strerror(rc));
  ASSERT_OK(rc);
  /* A SIGPIPE must kill the test (default disposition), so a transport
   * that raised one fails visibly. */
  signal(SIGPIPE, SIG_DFL);
  return loop;
}

static void finish(poller_loop *loop) {
  ASSERT_GE(poller_loop_run(loop, 200, -1), 0);
  poller_loop_close(loop);
  t_assert_fds_clean();
}

struct rec {
  int connects, errors, closes;
  int last_err;
  size_t nread;
  int done;
};

static void rec_connect(poller_transport *t) {
  struct rec *r = poller_transport_data(t);
  r->connects++;
  r->done = 1;
}
static void rec_error(poller_transport *t, int err) {
  struct rec *r = poller_transport_data(t);
  r->errors++;
  r->last_err = err;
  r->done = 1;
}
static void rec_read(poller_transport *t, const void *buf, size_t len) {
  struct rec *r = poller_transport_data(t);
  (void)buf;
  r->nread += len;
}
static void rec_close(poller_transport *t) {
  struct rec *r = poller_transport_data(t);
  r->closes++;
  r->done = 1;
}

static const poller_transport_cbs rec_cbs = {
    .on_connect = rec_connect,
    .on_read = rec_read,
    .on_close = rec_close,
    .on_error = rec_error,
};

/* ---- fork while another thread creates transports ---- */

struct churn {
  atomic_int stop;
  atomic_int rounds;
  enum poller_backend backend;
};

/* Opens a loop, gives it many transports and closes it, over and over:
 * with a process-wide registry behind a lock, closing a loop walks the
 * registry with the lock held (closing each descriptor), so the lock is
 * held a good part of the time. */
#define CHURN_TRANSPORTS 500
static void *churn_thread(void *arg) {
  struct churn *c = arg;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
    return NULL;
  while (!atomic_load(&c->stop)) {
    poller_loop *loop;
    if (poller_loop_open(&loop, c->backend) < 0)
      break;
    for (int i = 0; i < CHURN_TRANSPORTS; i++) {
      int fd = fcntl(sv[0], F_DUPFD_CLOEXEC, 0);
      poller_transport *t;
      if (fd < 0)
        break;
      if (poller_transport_adopt(loop, &t, fd, &rec_cbs, NULL) < 0)
        close(fd);
    }
    poller_loop_close(loop);
    atomic_fetch_add(&c->rounds, 1);
  }
  close(sv[0]);
  close(sv[1]);
  return NULL;
}

/* A child forked while another thread creates and frees transports can
 * open a loop and a transport of its own: nothing process-wide was left
 * locked by the thread that does not exist in the child.  Each child has
 * an alarm, so a deadlock shows as a killed child, not a hung test. */
#if defined(__SANITIZE_ADDRESS__)
#define T_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_ASAN 1
#endif
#endif

TEST_TIMEOUT(transport_fork_while_thread_creates, 60) {
#ifdef T_ASAN
  /* The sanitizer's own allocator is not fork-safe: a child forked while
   * another thread is inside malloc can deadlock in its first malloc,
   * whatever poller does (seen with gcc 12's libasan on a 20-line program
   * of plain malloc and fork). */
  SKIP("AddressSanitizer's allocator can deadlock a child forked while "
       "another thread allocates");
#endif
  poller_loop *probe = open_loop();
  poller_loop_close(probe);
  struct churn c;
  atomic_init(&c.stop, 0);
  atomic_init(&c.rounds, 0);
  c.backend = T_BACKEND;
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, churn_thread, &c), 0);
  while (atomic_load(&c.rounds) < 2)
    t_sleep_ms(1);
  int hung = 0, failed = 0, forks = 100;
  for (int i = 0; i < forks; i++) {
    pid_t pid = fork();
    ASSERT_SYS(pid);
    if (pid == 0) {
      alarm(5);
      poller_loop *loop;
      if (poller_loop_open(&loop, T_BACKEND) < 0)
        _exit(2);
      int sv[2];
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        _exit(3);
      poller_transport *t;
      if (poller_transport_adopt(loop, &t, sv[0], &rec_cbs, NULL) < 0)
        _exit(4);
      poller_transport_close(t, 0);
      poller_loop_close(loop);
      _exit(0);
    }
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
      hung++;
      break; /* one is proof enough; each costs the alarm's 5 s */
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      failed++;
      t_note("child %d: %s %d", i, WIFEXITED(status) ? "exit" : "signal",
             WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    }
  }
  atomic_store(&c.stop, 1);
  pthread_join(th, NULL);
  t_note("%d forks: %d children deadlocked, %d failed", forks, hung, failed);
  ASSERT_EQ(hung, 0);
  ASSERT_EQ(failed, 0);
  t_assert_fds_clean();
}

/* Two loops, each with transports: closing one loop closes only its own
 * transports; the other loop's keep working. */
TEST(transport_registry_per_loop) {
  poller_loop *a = open_loop();
  poller_loop *b = open_loop();
  int s1[2], s2[2];
  t_socketpair(s1);
  t_socketpair(s2);
  struct rec ra = {0}, rb = {0};
  poller_transport *ta, *tb;
  ASSERT_OK(poller_transport_adopt(a, &ta, s1[0], &rec_cbs, &ra));
  ASSERT_OK(poller_transport_adopt(b, &tb, s2[0], &rec_cbs, &rb));
  poller_loop_close(a);
  /* a's transport closed its fd: the peer reads EOF. */
  char ch;
  ASSERT_EQ(read(s1[1], &ch, 1), 0);
  t_write(s2[1], 5);
  double end = t_now_ms() + 5000;
  while (rb.nread < 5 && t_now_ms() < end)
    ASSERT_GE(poller_loop_run(b, 100, 1), 0);
  ASSERT_EQ(rb.nread, 5u);
  ASSERT_EQ(ra.errors + ra.closes + rb.errors + rb.closes, 0);
  ASSERT_OK(poller_transport_write(tb, "ok", 2));
  poller_transport_close(tb, 0);
  close(s1[1]);
  close(s2[1]);
  finish(b);
}

/* ---- SIGPIPE on descriptors that are not sockets ---- */

static void run_until(poller_loop *loop, const int *flag, int ms) {
  double end = t_now_ms() + ms;
  while (!*flag && t_now_ms() < end)
    ASSERT_GE(poller_loop_run(loop, 20, 1), 0);
}

/* SIGPIPE is neither pending nor blocked afterwards: the transport
 * consumed the one it caused and gave the mask back. */
static void assert_no_sigpipe_left(void) {
  sigset_t pending, mask;
  ASSERT_SYS(sigpending(&pending));
  ASSERT_FALSE(sigismember(&pending, SIGPIPE));
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, NULL, &mask), 0);
  ASSERT_FALSE(sigismember(&mask, SIGPIPE));
}

/* A write into a pipe whose reader is closed returns -EPIPE and reports
 * on_error(-EPIPE) once from the loop; no SIGPIPE (the default
 * disposition would kill the test). */
TEST(transport_pipe_reader_closed_write_no_sigpipe) {
  poller_loop *loop = open_loop();
  int pp[2];
  t_pipe(pp);
  struct rec r = {0};
  poller_transport *t;
  ASSERT_OK(poller_transport_adopt(loop, &t, pp[1], &rec_cbs, &r));
  t_close(pp[0]);
  ASSERT_ERR(poller_transport_write(t, "x", 1), -EPIPE);
  assert_no_sigpipe_left();
  ASSERT_EQ(r.errors, 0); /* never from inside the call */
  run_until(loop, &r.done, 5000);
  ASSERT_GE(poller_loop_run(loop, 50, -1), 0);
  ASSERT_EQ(r.errors, 1);
  ASSERT_EQ(r.last_err, -EPIPE);
  finish(loop);
}

/* The same when the bytes were queued first and the loop flushes them
 * after the reader went away: on_error(-EPIPE) once, no SIGPIPE.  A pipe
 * holds at most its capacity (F_GETPIPE_SZ), so a write of four times
 * that is certain to queue, whatever the machine's load. */
TEST(transport_pipe_reader_closed_flush_no_sigpipe) {
  poller_loop *loop = open_loop();
  int pp[2];
  t_pipe(pp);
  int cap = fcntl(pp[1], F_GETPIPE_SZ);
  ASSERT_GT(cap, 0);
  struct rec r = {0};
  poller_transport *t;
  ASSERT_OK(poller_transport_adopt(loop, &t, pp[1], &rec_cbs, &r));
  size_t len = (size_t)cap * 4;
  char *big = calloc(1, len);
  ASSERT_TRUE(big != NULL);
  ASSERT_OK(poller_transport_write(t, big, len));
  ASSERT_GE(poller_transport_queued(t), len - (size_t)cap);
  free(big);
  t_close(pp[0]);
  run_until(loop, &r.done, 5000);
  ASSERT_GE(poller_loop_run(loop, 50, -1), 0);
  ASSERT_EQ(r.errors, 1);
  ASSERT_EQ(r.last_err, -EPIPE);
  assert_no_sigpipe_left();
  finish(loop);
}

/* A pipe's write end, idle, with its reader open: the transport does not
 * try to read it (that fails with EBADF) and stays quiet; bytes written
 * arrive. */
TEST(transport_pipe_write_end_idle) {
  poller_loop *loop = open_loop();
  int pp[2];
  t_pipe(pp);
  struct rec r = {0};
  poller_transport *t;
  ASSERT_OK(poller_transport_adopt(loop, &t, pp[1], &rec_cbs, &r));
  ASSERT_GE(poller_loop_run(loop, 50, -1), 0);
  ASSERT_EQ(r.errors + r.closes, 0);
  ASSERT_OK(poller_transport_write(t, "hello", 5));
  char buf[8];
  ASSERT_EQ(read(pp[0], buf, sizeof buf), 5);
  poller_transport_close(t, 1);
  t_close(pp[0]);
  finish(loop);
}

/* ---- connect refused at once with EAGAIN ---- */

/* An AF_UNIX listener whose backlog is full refuses a non-blocking
 * connect with EAGAIN.  That connect never happened: the transport ends
 * in on_error(-EAGAIN), from the loop, and on_connect never runs. */
TEST(transport_connect_unix_backlog_full) {
  poller_loop *loop = open_loop();
  char path[64];
  snprintf(path, sizeof path, "/tmp/poller-tr-full-%d.sock", (int)getpid());
  unlink(path);
  int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_SYS(lfd);
  struct sockaddr_un un;
  memset(&un, 0, sizeof un);
  un.sun_family = AF_UNIX;
  strcpy(un.sun_path, path);
  ASSERT_SYS(bind(lfd, (struct sockaddr *)&un, sizeof un));
  ASSERT_SYS(listen(lfd, 0));
  /* Fill the backlog: connect until the kernel says EAGAIN. */
  int fill[16], nfill = 0, full = 0;
  while (nfill < 16 && !full) {
    int c = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ASSERT_SYS(c);
    fill[nfill++] = c;
    if (connect(c, (struct sockaddr *)&un, sizeof un) < 0) {
      ASSERT_EQ(errno, EAGAIN);
      full = 1;
    }
  }
  if (!full) {
    for (int i = 0; i < nfill; i++)
      close(fill[i]);
    close(lfd);
    unlink(path);
    SKIP("the kernel queued %d connections on a listen(fd, 0) Unix socket",
         nfill);
  }
  struct rec r = {0};
  poller_transport *t;
  ASSERT_OK(poller_transport_connect(loop, &t, (struct sockaddr *)&un,
                                     sizeof un, 2000, &rec_cbs, &r));
  ASSERT_EQ(r.errors + r.connects, 0);
  run_until(loop, &r.done, 5000);
  ASSERT_GE(poller_loop_run(loop, 100, -1), 0);
  ASSERT_EQ(r.connects, 0);
  ASSERT_EQ(r.errors, 1);
  ASSERT_EQ(r.last_err, -EAGAIN);
  for (int i = 0; i < nfill; i++)
    close(fill[i]);
  close(lfd);
  unlink(path);
  finish(loop);
}

/* ---- registrations the core drops ---- */

#include "internal.h" /* poller__fault_set: make the kernel refuse a change */

/* The transport's registration is dropped by the core (the kernel refused
 * the change that adds OUT for queued bytes): the transport fails once
 * through on_error (-EIO: its fd is still open) instead of waiting
 * forever for writability nobody watches. */
TEST(transport_dropped_registration_fails_once) {
  poller_loop *loop = open_loop();
  int sv[2];
  t_socketpair(sv);
  /* Small buffers and a write four times their size: some bytes queue,
   * whatever the machine's load. */
  int sz = 4096;
  ASSERT_SYS(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz));
  ASSERT_SYS(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz));
  struct rec r = {0};
  poller_transport *t;
  ASSERT_OK(poller_transport_adopt(loop, &t, sv[0], &rec_cbs, &r));
  socklen_t sl = sizeof sz;
  ASSERT_SYS(getsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, &sl));
  size_t len = (size_t)sz * 8 + 65536;
  char *big = calloc(1, len);
  ASSERT_TRUE(big != NULL);
  poller__fault_set(POLLER__FAULT_CTL, -ENOMEM);
  ASSERT_OK(poller_transport_write(t, big, len));
  ASSERT_GT(poller_transport_queued(t), 0u);
  free(big);
  int it = poller_loop_run(loop, 2000, 1);
  poller__fault_set(POLLER__FAULT_CTL, 0);
  ASSERT_EQ(it, 1);
  ASSERT_EQ(r.errors, 1);
  ASSERT_EQ(r.last_err, -EIO);
  ASSERT_GE(poller_loop_run(loop, 100, -1), 0);
  ASSERT_EQ(r.errors, 1);
  ASSERT_EQ(r.connects + r.closes, 0);
  t_close(sv[1]);
  finish(loop);
}

/* A listener whose registration is dropped watches again from its retry
 * timer and still accepts. */
static void count_accept(poller_listener *l, int fd, void *data) {
  (void)l;
  (*(int *)data)++;
  close(fd);
}

TEST(listener_dropped_registration_recovers) {
  poller_loop *loop = open_loop();
  struct sockaddr_storage ss;
  socklen_t len;
  ASSERT_OK(poller_sockaddr_parse("127.0.0.1:0", &ss, &len));
  int accepted = 0;
  poller_listener *l;
  ASSERT_OK(poller_listener_open(loop, &l, (struct sockaddr *)&ss, len, 0,
                                 count_accept, &accepted));
  ASSERT_OK(poller_listener_address(l, &ss, &len));
  /* A refused change: the listener's interest is re-sent through the core
   * by a modify of the loop's watcher. */
  poller__fault_set(POLLER__FAULT_CTL, -ENOMEM);
  ASSERT_OK(
      poller_io_modify(loop, poller_listener_fd(l), POLLER_IN | POLLER_RDHUP));
  ASSERT_GE(poller_loop_run(loop, 50, 1), 0);
  poller__fault_set(POLLER__FAULT_CTL, 0);
  int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  ASSERT_SYS(c);
  int rc = connect(c, (struct sockaddr *)&ss, len);
  ASSERT_TRUE(rc == 0 || errno == EINPROGRESS);
  double end = t_now_ms() + 5000;
  while (!accepted && t_now_ms() < end)
    ASSERT_GE(poller_loop_run(loop, 50, 1), 0);
  ASSERT_EQ(accepted, 1);
  ASSERT_GE(poller_listener_paused(l), 1ull);
  close(c);
  poller_listener_close(l);
  finish(loop);
}

/* ---- the loop closed from a transport's handler ---- */

#include <poll.h>

/* The revents of fd now (0 when nothing is pending). */
static short wait_fd_any(int fd) {
  struct pollfd pfd = {fd, POLLIN | POLLOUT, 0};
  ASSERT_GE(poll(&pfd, 1, 0), 0);
  return pfd.revents;
}

struct loopcloser {
  poller_loop *loop;
  int reads;
  size_t bytes;
};

static void lc_read(poller_transport *t, const void *buf, size_t len) {
  struct loopcloser *lc = poller_transport_data(t);
  (void)buf;
  lc->reads++;
  lc->bytes += len;
  poller_loop_close(lc->loop);
}

/* poller_loop_close from on_read, with more bytes waiting than one read
 * takes: the transport does not read on (no second on_read once the loop
 * is closing), the run returns, and the loop and the transport are gone
 * (no descriptor left; under ASan no use after free). */
TEST(transport_handler_closes_loop) {
  struct loopcloser lc = {open_loop(), 0, 0};
  int sv[2];
  t_socketpair(sv);
  /* More than one read's worth (64 KiB) waiting before the loop runs:
   * AF_UNIX delivers within write(2). */
  char chunk[4096];
  memset(chunk, 'z', sizeof chunk);
  size_t queued = 0;
  while (queued < 4 * 65536) {
    ssize_t n = write(sv[1], chunk, sizeof chunk);
    if (n < 0)
      break;
    queued += (size_t)n;
  }
  if (queued <= 65536)
    SKIP("the socket pair holds only %zu bytes", queued);
  poller_transport *t;
  poller_transport_cbs cbs = {.on_read = lc_read};
  ASSERT_OK(poller_transport_adopt(lc.loop, &t, sv[0], &cbs, &lc));
  int r = poller_loop_run(lc.loop, 5000, -1);
  ASSERT_GE(r, 0);
  ASSERT_EQ(lc.reads, 1);
  ASSERT_LT(lc.bytes, queued);
  /* The loop closed the transport's fd: the peer sees it gone. */
  ASSERT_BITS(wait_fd_any(sv[1]), POLLHUP);
  close(sv[1]);
  t_assert_fds_clean();
}

/* The transport's fd closed behind its back (an application bug): where
 * the backend finds closed fds (select, poll), the core drops the
 * registration and the transport fails once with -EBADF instead of
 * hanging.  epoll and io_uring forget (or keep watching) a closed file
 * without a word, so there is nothing to report there. */
TEST(transport_fd_closed_behind_fails_ebadf) {
  if (T_BACKEND != POLLER_SELECT && T_BACKEND != POLLER_POLL)
    SKIP("%s does not report a closed fd (the kernel drops or keeps it "
         "silently)",
         T_BACKEND_NAME);
  poller_loop *loop = open_loop();
  int sv[2];
  t_socketpair(sv);
  struct rec r = {0};
  poller_transport *t;
  ASSERT_OK(poller_transport_adopt(loop, &t, sv[0], &rec_cbs, &r));
  ASSERT_OK(close(sv[0])); /* behind the transport's back */
  double end = t_now_ms() + 15000;
  while (!r.done && t_now_ms() < end)
    ASSERT_GE(poller_loop_run(loop, 50, 1), 0);
  ASSERT_EQ(r.errors, 1);
  ASSERT_EQ(r.last_err, -EBADF);
  ASSERT_GE(poller_loop_run(loop, 100, -1), 0);
  ASSERT_EQ(r.errors, 1);
  close(sv[1]);
  finish(loop);
}
