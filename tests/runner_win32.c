/* SPDX-License-Identifier: MIT */
/*
 * runner_win32.c - the Windows half of the test runner (runner_common.c
 * holds main(), the TAP output and the portable helpers; runner.c is the
 * Unix half).
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
#include "runner_common.h"
#include "internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <winsock2.h>
#include <windows.h>

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

/* ---- helpers ---- */

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

void t_in_child(void (*fn)(void *), void *arg) {
  (void)fn;
  (void)arg;
  SKIP("fork: Windows has none");
}

int t_fd_count(void) {
  DWORD n = 0;
  if (!GetProcessHandleCount(GetCurrentProcess(), &n))
    return -1;
  return (int)n;
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

/* ---- the runner ---- */

void t_platform_body(const struct t_test *t, enum poller_backend b) {
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

/* The child is this same program, started with "--backend B --run T" and
 * POLLER_TEST_CHILD set; its message comes back through a temporary file. */
int t_platform_run(const struct t_test *t, enum poller_backend b, char *msg,
                   size_t msgsize) {
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
  int secs = t_timeout_secs(t);
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

int t_platform_prepare(void) {
  /* Unbuffered, so that the TAP lines and a child's output keep their
   * order on the console. */
  setvbuf(stdout, NULL, _IONBF, 0);
  return 0;
}

int t_platform_in_child(void) {
  const char *child = getenv("POLLER_TEST_CHILD");
  return child && *child;
}
