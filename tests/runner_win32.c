/* SPDX-License-Identifier: MIT */
/*
 * runner_win32.c - main() of every test binary on Windows, and the harness
 * helpers there (harness.h documents them; runner.c is the Unix runner).
 *
 * Windows has no fork: each (test, backend) runs in a child process that
 * is this same program started with CreateProcess and "--backend B --run
 * T", marked as the child by the environment variable POLLER_TEST_CHILD.
 * The parent waits for it with the test's timeout and terminates it when
 * the time is up.  The child leaves its skip reason or failure message in
 * the file named by POLLER_TEST_MSG, which the parent reads.
 *
 * Descriptors are Winsock sockets: t_socketpair and t_tcp_pair give a
 * loopback TCP pair, and t_pipe skips the test (the Windows backends
 * watch sockets only).  t_fd_count counts the process's handles.
 */
#define WIN32_LEAN_AND_MEAN
#include "harness.h"
#include "internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <winsock2.h>
#include <windows.h>

#define T_EXIT_PASS 0
#define T_EXIT_FAIL 1
#define T_EXIT_SKIP 77

enum poller_backend t_backend = POLLER_AUTO;

static struct t_test *t_head, *t_tail;
static int t_base_fds = -1;

void t_register(struct t_test *t) {
  /* mingw-w64 runs a file's constructors last first: prepending restores
   * the order of definition. */
  t->next = t_head;
  t_head = t;
  if (!t_tail)
    t_tail = t;
}

/* Writes the message for the parent, or to stderr when run alone. */
static void t_message(const char *prefix, const char *fmt, va_list ap) {
  const char *path = getenv("POLLER_TEST_MSG");
  FILE *f = path && *path ? fopen(path, "w") : NULL;
  FILE *to = f ? f : stderr;
  fprintf(to, "%s", prefix);
  vfprintf(to, fmt, ap);
  fprintf(to, "\n");
  if (f)
    fclose(f);
}

void t_fail(const char *file, int line, const char *fmt, ...) {
  char where[512];
  snprintf(where, sizeof where, "%s:%d: ", file, line);
  va_list ap;
  va_start(ap, fmt);
  t_message(where, fmt, ap);
  va_end(ap);
  fflush(stdout);
  fflush(stderr);
  _exit(T_EXIT_FAIL);
}

void t_skip(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  t_message("", fmt, ap);
  va_end(ap);
  fflush(stdout);
  fflush(stderr);
  _exit(T_EXIT_SKIP);
}

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

void t_socketpair(int sv[2]) {
  int r = poller__win_socketpair(&sv[0], &sv[1]);
  if (r < 0)
    FAIL("loopback socket pair: %d (%s)", r, poller_strerror(r));
}

void t_tcp_pair(int *a, int *b) {
  int sv[2];
  t_socketpair(sv);
  *a = sv[0];
  *b = sv[1];
}

void t_pipe(int fds[2]) {
  (void)fds;
  SKIP("pipes: the Windows backends watch sockets only");
}

int t_fd_count(void) {
  DWORD n = 0;
  if (!GetProcessHandleCount(GetCurrentProcess(), &n))
    return -1;
  return (int)n;
}

void t_assert_clean_(poller *p, const char *file, int line) {
  poller_event key;
  size_t count = poller_count(p);
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

void t_assert_fds_clean_(const char *file, int line) {
  int fds = t_fd_count();
  if (fds >= 0 && t_base_fds >= 0 && fds != t_base_fds)
    t_fail(file, line, "%d handles open, %d when the test began", fds,
           t_base_fds);
}

void t_close(int fd) {
  if (fd >= 0 && closesocket((SOCKET)(uintptr_t)(unsigned)fd) != 0)
    FAIL("closesocket(%d): Winsock error %d", fd, WSAGetLastError());
}

void t_write(int fd, size_t n) {
  char buf[4096];
  memset(buf, 'x', sizeof buf);
  while (n > 0) {
    int k = n < sizeof buf ? (int)n : (int)sizeof buf;
    int w = send((SOCKET)(uintptr_t)(unsigned)fd, buf, k, 0);
    if (w == SOCKET_ERROR && WSAGetLastError() == WSAEWOULDBLOCK) {
      Sleep(1); /* the peer is drained by someone else, or never */
      continue;
    }
    if (w <= 0)
      FAIL("send(%d): Winsock error %d", fd, WSAGetLastError());
    n -= (size_t)w;
  }
}

size_t t_drain(int fd) {
  char buf[65536];
  size_t total = 0;
  for (;;) {
    int r = recv((SOCKET)(uintptr_t)(unsigned)fd, buf, sizeof buf, 0);
    if (r > 0) {
      total += (size_t)r;
      continue;
    }
    return total;
  }
}

double t_now_ms(void) { return (double)poller__platform_now_ns() / 1e6; }

void t_sleep_ms(int ms) { Sleep((DWORD)ms); }

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

static int t_timeout_scale(void) {
  const char *s = getenv("POLLER_TEST_TIMEOUT_SCALE");
  int k = s ? atoi(s) : 1;
  return k >= 1 ? k : 1;
}

static struct t_test *t_find(const char *name) {
  for (struct t_test *t = t_head; t; t = t->next)
    if (strcmp(t->name, name) == 0)
      return t;
  return NULL;
}

/* Runs the test body in this process; returns only on a pass. */
static void t_body(const struct t_test *t, enum poller_backend b) {
  t_backend = b;
  /* Winsock creates handles of its own at its first use: start it, and
   * make and close one pair, before the count is taken. */
  int sv[2];
  if (poller__win_socketpair(&sv[0], &sv[1]) == 0) {
    closesocket((SOCKET)(uintptr_t)(unsigned)sv[0]);
    closesocket((SOCKET)(uintptr_t)(unsigned)sv[1]);
  }
  t_base_fds = t_fd_count();
  t->fn();
}

/* Runs t on backend b in a child process; returns its exit code (0, 1,
 * 77) and leaves its message in msg. */
static int t_run_child(const struct t_test *t, enum poller_backend b,
                       char *msg, size_t msgsize) {
  char self[MAX_PATH], dir[MAX_PATH], path[MAX_PATH];
  msg[0] = 0;
  if (!GetModuleFileNameA(NULL, self, sizeof self) ||
      !GetTempPathA(sizeof dir, dir) ||
      !GetTempFileNameA(dir, "plr", 0, path)) {
    snprintf(msg, msgsize, "cannot prepare the child: error %lu",
             (unsigned long)GetLastError());
    return T_EXIT_FAIL;
  }
  char cmd[3 * MAX_PATH];
  snprintf(cmd, sizeof cmd, "\"%s\" --backend %s --run %s", self,
           poller_backend_name(b), t->name);
  SetEnvironmentVariableA("POLLER_TEST_CHILD", "1");
  SetEnvironmentVariableA("POLLER_TEST_MSG", path);
  STARTUPINFOA si;
  PROCESS_INFORMATION pi;
  memset(&si, 0, sizeof si);
  si.cb = sizeof si;
  fflush(stdout);
  fflush(stderr);
  BOOL ok = CreateProcessA(NULL, cmd, NULL, NULL, FALSE, 0, NULL, NULL, &si,
                           &pi);
  SetEnvironmentVariableA("POLLER_TEST_CHILD", NULL);
  SetEnvironmentVariableA("POLLER_TEST_MSG", NULL);
  if (!ok) {
    DeleteFileA(path);
    snprintf(msg, msgsize, "CreateProcess: error %lu",
             (unsigned long)GetLastError());
    return T_EXIT_FAIL;
  }
  int secs = (t->timeout_s > 0 ? t->timeout_s : T_DEFAULT_TIMEOUT) *
             t_timeout_scale();
  DWORD code = T_EXIT_FAIL;
  int timed_out = 0;
  if (WaitForSingleObject(pi.hProcess, (DWORD)secs * 1000) != WAIT_OBJECT_0) {
    TerminateProcess(pi.hProcess, T_EXIT_FAIL);
    WaitForSingleObject(pi.hProcess, INFINITE);
    timed_out = 1;
  } else if (!GetExitCodeProcess(pi.hProcess, &code)) {
    code = T_EXIT_FAIL;
  }
  CloseHandle(pi.hThread);
  CloseHandle(pi.hProcess);
  FILE *f = fopen(path, "r");
  if (f) {
    size_t k = fread(msg, 1, msgsize - 1, f);
    msg[k] = 0;
    while (k > 0 && (msg[k - 1] == '\n' || msg[k - 1] == '\r'))
      msg[--k] = 0;
    fclose(f);
  }
  DeleteFileA(path);
  if (timed_out) {
    snprintf(msg, msgsize, "timed out after %d s", secs);
    return T_EXIT_FAIL;
  }
  if (code == T_EXIT_PASS || code == T_EXIT_SKIP)
    return (int)code;
  if (!msg[0])
    snprintf(msg, msgsize, "exit status %lu", (unsigned long)code);
  return T_EXIT_FAIL;
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
      fprintf(stderr,
              "usage: %s [--list] [--backend NAME] [--run TEST] [--nofork]\n",
              argv[0]);
      return 2;
    }
  }
  setvbuf(stdout, NULL, _IONBF, 0);
  if (list) {
    for (struct t_test *t = t_head; t; t = t->next)
      printf("%s\n", t->name);
    return 0;
  }
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
    for (int b = POLLER_SELECT; b < 32 && nb < 8; b++)
      if (avail & (1u << b))
        backends[nb++] = (enum poller_backend)b;
  }
  struct t_test *only = NULL;
  if (test_name && !(only = t_find(test_name))) {
    fprintf(stderr, "unknown test '%s'\n", test_name);
    return 2;
  }
  char msg[4096];
  if (only && backend_name) {
    const char *child = getenv("POLLER_TEST_CHILD");
    if (nofork || (child && *child)) {
      t_body(only, backends[0]);
      fflush(stdout);
      return T_EXIT_PASS;
    }
    int code = t_run_child(only, backends[0], msg, sizeof msg);
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
      int code = t_run_child(t, backends[i], msg, sizeof msg);
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
    }
  printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
  return failed ? 1 : 0;
}
