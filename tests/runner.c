/* SPDX-License-Identifier: MIT */
/*
 * runner.c - the Unix half of the test runner (runner_common.c holds
 * main(), the TAP output and the portable helpers; runner_win32.c is the
 * Windows half).
 *
 * Each (test, backend) runs in a forked child in its own process group, so
 * a crash, a hang or a leaked descriptor of one test cannot touch another.
 * The parent enforces the timeout with alarm(2) and kills the whole group
 * when it expires; the child is free to use SIGALRM itself (the EINTR tests
 * do).  The child reports a skip reason or a failure message through a
 * shared anonymous mapping, which needs no descriptor, so it does not
 * disturb the descriptor count that t_assert_clean compares.
 *
 * Exit codes of a child (and of "--backend B --run T"): 0 passed, 1 failed,
 * 77 skipped (CTest's SKIP_RETURN_CODE).  A passing child leaves through
 * exit(), so LeakSanitizer checks it; a failing or skipped one leaves
 * through _exit(), so a leak left behind by an aborted test is not counted
 * twice.
 */
#include "runner_common.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int t_base_fds = -1;

/* Shared with the parent: the skip reason or the failure message. */
static char *t_msg;
static int t_forked; /* set in the forked child */

void t_register(struct t_test *t) {
  /* Appended, so tests run in the order of their definition. */
  t->next = NULL;
  if (t_tail)
    t_tail->next = t;
  else
    t_head = t;
  t_tail = t;
}

static void t_set_msg(const char *prefix, const char *fmt, va_list ap) {
  if (!t_msg)
    return;
  int k = snprintf(t_msg, T_MSG_SIZE, "%s", prefix);
  if (k < 0 || k >= T_MSG_SIZE)
    return;
  vsnprintf(t_msg + k, (size_t)(T_MSG_SIZE - k), fmt, ap);
}

void t_fail(const char *file, int line, const char *fmt, ...) {
  char where[512];
  snprintf(where, sizeof where, "%s:%d: ", file, line);
  va_list ap;
  va_start(ap, fmt);
  t_set_msg(where, fmt, ap);
  va_end(ap);
  /* The parent prints the message (t_msg); with --nofork there is none. */
  if (!t_forked) {
    va_start(ap, fmt);
    fprintf(stderr, "%s", where);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
  }
  fflush(stdout);
  fflush(stderr);
  _exit(T_EXIT_FAIL);
}

void t_skip(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  t_set_msg("", fmt, ap);
  va_end(ap);
  if (!t_forked) {
    va_start(ap, fmt);
    fprintf(stderr, "SKIP: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
  }
  fflush(stdout);
  fflush(stderr);
  _exit(T_EXIT_SKIP);
}

/* ---- helpers ---- */

void t_socketpair(int sv[2]) {
  ASSERT_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                        sv));
}

void t_pipe(int fds[2]) { ASSERT_SYS(pipe2(fds, O_NONBLOCK | O_CLOEXEC)); }

void t_in_child(void (*fn)(void *), void *arg) {
  fflush(stdout);
  pid_t pid = fork();
  ASSERT_SYS(pid);
  if (pid == 0) {
    fn(arg);
    _exit(0);
  }
  int status;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    FAIL("child failed (status 0x%x)", status);
}

void t_tcp_pair(int *a, int *b) {
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_SYS(l);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  ASSERT_SYS(bind(l, (struct sockaddr *)&sa, sizeof sa));
  ASSERT_SYS(listen(l, 1));
  ASSERT_SYS(getsockname(l, (struct sockaddr *)&sa, &len));
  int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_SYS(c);
  ASSERT_SYS(connect(c, (struct sockaddr *)&sa, sizeof sa));
  int s = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  ASSERT_SYS(s);
  ASSERT_SYS(fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK));
  int one = 1;
  (void)setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  (void)setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  close(l);
  *a = c;
  *b = s;
}

int t_fd_count(void) {
  /* /proc/self/fd where it exists (the directory's own fd is one of the
   * entries); otherwise probe every number below the limit. */
  DIR *d = opendir("/proc/self/fd");
  if (d) {
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
      if (de->d_name[0] != '.')
        n++;
    closedir(d);
    return n - 1;
  }
  struct rlimit rl;
  long max = 1024;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    max = (long)rl.rlim_cur;
  int n = 0;
  for (long fd = 0; fd < max; fd++)
    if (fcntl((int)fd, F_GETFD) != -1)
      n++;
  return n;
}

void t_assert_fds_clean_(const char *file, int line) {
#ifdef __linux__
  /* kqueue on Linux is libkqueue, which keeps descriptors of its own (a
   * monitoring thread, an epoll set and eventfds per kqueue) and frees
   * them asynchronously after close: the count cannot be compared there
   * (docs/kqueue.md).  Native kqueue is checked like every backend. */
  if (T_BACKEND == POLLER_KQUEUE)
    return;
#endif
  int fds = t_fd_count();
  if (fds != t_base_fds)
    t_fail(file, line, "%d descriptors open, %d when the test began", fds,
           t_base_fds);
}

void t_close(int fd) {
  if (fd >= 0)
    ASSERT_SYS(close(fd));
}

void t_write(int fd, size_t n) {
  char buf[4096];
  memset(buf, 'x', sizeof buf);
  while (n > 0) {
    size_t k = n < sizeof buf ? n : sizeof buf;
    ssize_t w = write(fd, buf, k);
    if (w < 0 && errno == EINTR)
      continue;
    ASSERT_SYS(w);
    ASSERT_GT(w, 0);
    n -= (size_t)w;
  }
}

size_t t_drain(int fd) {
  char buf[65536];
  size_t total = 0;
  for (;;) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r > 0) {
      total += (size_t)r;
      continue;
    }
    if (r < 0 && errno == EINTR)
      continue;
    return total;
  }
}

double t_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void t_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
}

/* ---- the runner ---- */

static volatile sig_atomic_t t_alarmed;
static void t_on_alarm(int sig) {
  (void)sig;
  t_alarmed = 1;
}

void t_platform_body(const struct t_test *t, enum poller_backend b) {
  t_backend = b;
  t_base_fds = t_fd_count();
  t->fn();
}

/* Runs t on backend b in a forked child; returns the exit code (0, 1, 77)
 * and leaves the child's message in t_msg. */
static int t_run_forked(const struct t_test *t, enum poller_backend b) {
  memset(t_msg, 0, T_MSG_SIZE);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(t_msg, T_MSG_SIZE, "fork: %s", strerror(errno));
    return T_EXIT_FAIL;
  }
  if (pid == 0) {
    setpgid(0, 0);
    t_forked = 1;
    signal(SIGALRM, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    t_platform_body(t, b);
    fflush(stdout);
    exit(T_EXIT_PASS);
  }
  setpgid(pid, pid); /* also here: no race with the child's own call */
  int secs = t_timeout_secs(t);
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = t_on_alarm;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGALRM, &sa, &old); /* no SA_RESTART: waitpid returns EINTR */
  t_alarmed = 0;
  alarm((unsigned)secs);
  int status = 0;
  for (;;) {
    pid_t w = waitpid(pid, &status, 0);
    if (w == pid)
      break;
    if (w < 0 && errno == EINTR && t_alarmed) {
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      alarm(0);
      sigaction(SIGALRM, &old, NULL);
      snprintf(t_msg, T_MSG_SIZE, "timed out after %d s", secs);
      return T_EXIT_FAIL;
    }
    if (w < 0 && errno != EINTR)
      break;
  }
  alarm(0);
  sigaction(SIGALRM, &old, NULL);
  /* Reap what the test forked and left behind in its group. */
  kill(-pid, SIGKILL);
  if (WIFEXITED(status)) {
    int code = WEXITSTATUS(status);
    if (code == T_EXIT_PASS || code == T_EXIT_SKIP)
      return code;
    if (!t_msg[0])
      snprintf(t_msg, T_MSG_SIZE, "exit status %d", code);
    return T_EXIT_FAIL;
  }
  if (WIFSIGNALED(status))
    snprintf(t_msg, T_MSG_SIZE, "killed by signal %d (%s)", WTERMSIG(status),
             strsignal(WTERMSIG(status)));
  return T_EXIT_FAIL;
}

int t_platform_run(const struct t_test *t, enum poller_backend b, char *msg,
                   size_t msgsize) {
  int code = t_run_forked(t, b);
  snprintf(msg, msgsize, "%s", t_msg);
  return code;
}

int t_platform_prepare(void) {
  t_msg = mmap(NULL, T_MSG_SIZE, PROT_READ | PROT_WRITE,
               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (t_msg == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  return 0;
}

/* Every test runs in a forked child: no process is started to run one. */
int t_platform_in_child(void) { return 0; }
