/* SPDX-License-Identifier: MIT */
/*
 * win32_sources.c - the loop's Windows event sources (include/poller_loop.h,
 * "Windows"): console control events as signals (CTRL_C_EVENT is SIGINT,
 * CTRL_BREAK_EVENT is SIGBREAK) and child processes named by their process
 * id.  Built on Windows only (tests/loop/CMakeLists.txt); every test runs
 * on both Windows backends.
 *
 * The console events are real ones, sent with GenerateConsoleCtrlEvent
 * and run by Windows (or Wine) on a thread of its own, not a call of the
 * library's handler by the test.  Such an event goes to every process
 * attached to the caller's console, the test runner's included, so each
 * signal test first gives its own process (the runner starts one per
 * test) a console of its own.
 */
#include "harness.h"

#include "poller_loop.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <windows.h>

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

/* Keeps a run going for ms, so a callback that should not come has its
 * chance to. */
static void on_quiet_timer(poller_timer *t, void *arg) {
  (void)t;
  (void)arg;
}
static void run_quietly(poller_loop *l, int ms) {
  poller_timer t;
  poller_timer_init(&t, on_quiet_timer, NULL);
  ASSERT_OK(poller_timer_start(l, &t, (uint64_t)ms, 0));
  ASSERT_GE(poller_loop_run(l, ms + 5000, -1), 1);
  poller_timer_stop(&t);
}

/* ---- console control events ---- */

/* The handler the process had before any watcher: it counts what reaches
 * it and keeps the process alive (the default handler would end it). */
static atomic_int fallback_calls;
static BOOL WINAPI fallback_handler(DWORD type) {
  (void)type;
  atomic_fetch_add(&fallback_calls, 1);
  return TRUE;
}

/* Gives this process a console of its own, with fallback_handler
 * installed, or skips.  Freeing a console stdout writes to would lose the
 * test's output, so that case skips too. */
static void own_console(void) {
  if (GetFileType(GetStdHandle(STD_OUTPUT_HANDLE)) == FILE_TYPE_CHAR)
    SKIP("stdout is a console; the test needs a console of its own for "
         "GenerateConsoleCtrlEvent (run with output redirected)");
  FreeConsole();
  if (!AllocConsole())
    SKIP("AllocConsole failed (error %lu): no console to send "
         "CTRL_C_EVENT through",
         (unsigned long)GetLastError());
  /* A process started in a new process group ignores CTRL+C until this. */
  SetConsoleCtrlHandler(NULL, FALSE);
  ASSERT_TRUE(SetConsoleCtrlHandler(fallback_handler, TRUE));
  atomic_store(&fallback_calls, 0);
}

static void send_ctrl(DWORD type) {
  if (!GenerateConsoleCtrlEvent(type, 0))
    SKIP("GenerateConsoleCtrlEvent(%s) failed (error %lu): the system "
         "refuses to send it here (Wine refuses CTRL_BREAK_EVENT)",
         type == CTRL_C_EVENT ? "CTRL_C_EVENT" : "CTRL_BREAK_EVENT",
         (unsigned long)GetLastError());
}

struct sigrec {
  poller_loop *loop;
  DWORD loop_thread; /* the thread that runs the loop */
  int signum;        /* what the callback was told */
  unsigned total;    /* sum of the counts */
  int calls;
  int wrong_thread;
  unsigned stop_at; /* stops the loop once total reaches it */
};

static void on_sig(poller_signal *s, int signum, unsigned count, void *arg) {
  struct sigrec *r = arg;
  (void)s;
  r->signum = signum;
  r->total += count;
  r->calls++;
  if (GetCurrentThreadId() != r->loop_thread)
    r->wrong_thread++;
  if (r->total >= r->stop_at)
    poller_loop_stop(r->loop);
}

/* CTRL_C_EVENT reaches a SIGINT watcher: the callback runs on the loop's
 * thread with the number of events since the last call (three events: the
 * counts add up to 3), and the event is handled (the process's earlier
 * handler does not see it). */
TEST_TIMEOUT(win_console_ctrl_c_is_sigint, 60) {
  own_console();
  poller_loop *l = open_loop();
  poller_signal s;
  struct sigrec r = {l, GetCurrentThreadId(), 0, 0, 0, 0, 3};
  ASSERT_OK(poller_signal_start(l, &s, SIGINT, on_sig, &r));
  ASSERT_ERR(poller_signal_start(l, &s, SIGINT, on_sig, &r), -EBUSY);
  for (int i = 0; i < 3; i++)
    send_ctrl(CTRL_C_EVENT);
  double t0 = t_now_ms();
  while (r.total < 3 && t_now_ms() - t0 < 20000)
    ASSERT_GE(poller_loop_run(l, 1000, -1), 0);
  ASSERT_EQ(r.total, 3);
  ASSERT_GE(r.calls, 1);
  ASSERT_LE(r.calls, 3);
  ASSERT_EQ(r.signum, SIGINT);
  ASSERT_EQ(r.wrong_thread, 0);
  ASSERT_EQ(atomic_load(&fallback_calls), 0);
  ASSERT_OK(poller_signal_stop(&s));
  ASSERT_OK(poller_signal_stop(&s)); /* twice is harmless */
  ASSERT_EQ(poller_loop_alive(l), 0);
  close_loop(l);
}

/* CTRL_BREAK_EVENT is SIGBREAK, and only SIGBREAK's watcher hears it. */
TEST_TIMEOUT(win_console_ctrl_break_is_sigbreak, 60) {
  own_console();
  poller_loop *l = open_loop();
  poller_signal sb, si;
  struct sigrec rb = {l, GetCurrentThreadId(), 0, 0, 0, 0, 1};
  struct sigrec ri = {l, GetCurrentThreadId(), 0, 0, 0, 0, 1};
  ASSERT_OK(poller_signal_start(l, &sb, SIGBREAK, on_sig, &rb));
  ASSERT_OK(poller_signal_start(l, &si, SIGINT, on_sig, &ri));
  send_ctrl(CTRL_BREAK_EVENT);
  double t0 = t_now_ms();
  while (rb.total < 1 && t_now_ms() - t0 < 20000)
    ASSERT_GE(poller_loop_run(l, 1000, -1), 0);
  ASSERT_EQ(rb.total, 1);
  ASSERT_EQ(rb.signum, SIGBREAK);
  ASSERT_EQ(rb.wrong_thread, 0);
  ASSERT_EQ(ri.calls, 0);
  ASSERT_EQ(atomic_load(&fallback_calls), 0);
  poller_signal_stop(&sb);
  poller_signal_stop(&si);
  close_loop(l);
}

/* Waits (generously) until fallback_handler has seen n events. */
static void wait_fallback(int n) {
  double t0 = t_now_ms();
  while (atomic_load(&fallback_calls) < n && t_now_ms() - t0 < 20000)
    t_sleep_ms(5);
  ASSERT_EQ(atomic_load(&fallback_calls), n);
}

/* Stopping the last watcher gives the process its handlers back: with one
 * of two watchers stopped the other still gets the event; with both
 * stopped the event reaches the handler the process had before, and no
 * callback runs.  Other signals than SIGINT and SIGBREAK are -ENOSYS. */
TEST_TIMEOUT(win_console_signal_stop_restores_handlers, 60) {
  own_console();
  poller_loop *l = open_loop();
  poller_signal s1, s2, other;
  struct sigrec r1 = {l, GetCurrentThreadId(), 0, 0, 0, 0, 1};
  struct sigrec r2 = {l, GetCurrentThreadId(), 0, 0, 0, 0, 1};
  ASSERT_ERR(poller_signal_start(l, &other, SIGTERM, on_sig, &r1), -ENOSYS);
  ASSERT_OK(poller_signal_start(l, &s1, SIGINT, on_sig, &r1));
  ASSERT_OK(poller_signal_start(l, &s2, SIGINT, on_sig, &r2));
  ASSERT_OK(poller_signal_stop(&s1));
  send_ctrl(CTRL_C_EVENT);
  double t0 = t_now_ms();
  while (r2.total < 1 && t_now_ms() - t0 < 20000)
    ASSERT_GE(poller_loop_run(l, 1000, -1), 0);
  ASSERT_EQ(r2.total, 1);
  ASSERT_EQ(r1.calls, 0);
  ASSERT_EQ(atomic_load(&fallback_calls), 0);
  ASSERT_OK(poller_signal_stop(&s2));
  send_ctrl(CTRL_C_EVENT);
  wait_fallback(1);
  run_quietly(l, 100);
  ASSERT_EQ(r1.calls, 0);
  ASSERT_EQ(r2.calls, 1);
  close_loop(l);
}

struct sigthread {
  struct sigrec r;
  poller_signal s;
  atomic_int done;
};

static DWORD WINAPI sig_thread_run(LPVOID arg) {
  struct sigthread *st = arg;
  st->r.loop_thread = GetCurrentThreadId();
  poller_loop_run(st->r.loop, 20000, -1);
  atomic_store(&st->done, 1);
  return 0;
}

/* One CTRL_C_EVENT reaches two loops run by two threads: each callback
 * runs once, on its own loop's thread, with a count of 1. */
TEST_TIMEOUT(win_console_signal_two_loops, 60) {
  own_console();
  struct sigthread a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  a.r.loop = open_loop();
  b.r.loop = open_loop();
  a.r.stop_at = b.r.stop_at = 1;
  a.r.loop_thread = b.r.loop_thread = 0;
  ASSERT_OK(poller_signal_start(a.r.loop, &a.s, SIGINT, on_sig, &a.r));
  ASSERT_OK(poller_signal_start(b.r.loop, &b.s, SIGINT, on_sig, &b.r));
  HANDLE ta = CreateThread(NULL, 0, sig_thread_run, &a, 0, NULL);
  HANDLE tb = CreateThread(NULL, 0, sig_thread_run, &b, 0, NULL);
  ASSERT_TRUE(ta != NULL && tb != NULL);
  send_ctrl(CTRL_C_EVENT);
  ASSERT_EQ(WaitForSingleObject(ta, 30000), WAIT_OBJECT_0);
  ASSERT_EQ(WaitForSingleObject(tb, 30000), WAIT_OBJECT_0);
  CloseHandle(ta);
  CloseHandle(tb);
  ASSERT_EQ(a.r.calls, 1);
  ASSERT_EQ(b.r.calls, 1);
  ASSERT_EQ(a.r.total, 1);
  ASSERT_EQ(b.r.total, 1);
  ASSERT_EQ(a.r.wrong_thread, 0);
  ASSERT_EQ(b.r.wrong_thread, 0);
  poller_signal_stop(&a.s);
  poller_signal_stop(&b.s);
  poller_loop_close(a.r.loop);
  close_loop(b.r.loop);
}

/* ---- child processes ---- */

/* The children of a test end with it, even when it fails while one is
 * still suspended: a job that kills its processes when its last handle
 * (this process's) closes.  NULL if the system refuses one. */
static HANDLE child_job(void) {
  static HANDLE job;
  if (job)
    return job;
  job = CreateJobObjectA(NULL, NULL);
  if (!job)
    return NULL;
  JOBOBJECT_EXTENDED_LIMIT_INFORMATION info;
  memset(&info, 0, sizeof info);
  info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
  SetInformationJobObject(job, JobObjectExtendedLimitInformation, &info,
                          sizeof info);
  return job;
}

/* Starts cmd.exe with `args` (left suspended when flags say so) in
 * child_job(), or skips. */
static void spawn(const char *args, DWORD flags, PROCESS_INFORMATION *pi) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "cmd.exe %s", args);
  STARTUPINFOA si;
  memset(&si, 0, sizeof si);
  si.cb = sizeof si;
  if (!CreateProcessA(NULL, cmd, NULL, NULL, FALSE,
                      flags | CREATE_SUSPENDED | CREATE_NO_WINDOW, NULL, NULL,
                      &si, pi))
    SKIP("CreateProcess(%s) failed (error %lu)", cmd,
         (unsigned long)GetLastError());
  HANDLE job = child_job();
  if (job)
    AssignProcessToJobObject(job, pi->hProcess);
  if (!(flags & CREATE_SUSPENDED))
    ResumeThread(pi->hThread);
}

struct childrec {
  DWORD loop_thread;
  pid_t pid;
  int status;
  int calls;
  int wrong_thread;
};

static void on_child(poller_child *c, pid_t pid, int status, void *arg) {
  struct childrec *r = arg;
  (void)c;
  r->pid = pid;
  r->status = status;
  r->calls++;
  if (GetCurrentThreadId() != r->loop_thread)
    r->wrong_thread++;
}

/* A child's exit code (cmd.exe /c exit 7) is reported once, on the loop's
 * thread, with its process id; the watcher has then stopped. */
TEST_TIMEOUT(win_child_exit_code_reported_once, 60) {
  poller_loop *l = open_loop();
  PROCESS_INFORMATION pi;
  spawn("/c exit 7", 0, &pi);
  poller_child c;
  struct childrec r = {GetCurrentThreadId(), 0, -2, 0, 0};
  ASSERT_OK(poller_child_start(l, &c, (pid_t)pi.dwProcessId, on_child, &r));
  ASSERT_ERR(poller_child_start(l, &c, (pid_t)pi.dwProcessId, on_child, &r),
             -EBUSY);
  ASSERT_EQ(poller_loop_alive(l), 1);
  /* The run ends when nothing is left to watch: after the report. */
  ASSERT_GE(poller_loop_run(l, 30000, -1), 1);
  ASSERT_EQ(r.calls, 1);
  ASSERT_EQ(r.status, 7);
  ASSERT_EQ(r.pid, (pid_t)pi.dwProcessId);
  ASSERT_EQ(r.wrong_thread, 0);
  ASSERT_EQ(poller_loop_alive(l), 0);
  run_quietly(l, 100);
  ASSERT_EQ(r.calls, 1);
  ASSERT_OK(poller_child_stop(&c)); /* already stopped: harmless */
  CloseHandle(pi.hThread);
  CloseHandle(pi.hProcess);
  close_loop(l);
}

/* A watcher stopped before the process ends reports nothing, and so does
 * one whose loop closed; a process that already ended (its handle still
 * held, so its id still names it) is reported at the next run. */
TEST_TIMEOUT(win_child_stop_before_exit_reports_nothing, 60) {
  poller_loop *l = open_loop();
  PROCESS_INFORMATION pi;
  spawn("/c exit 3", CREATE_SUSPENDED, &pi);
  poller_child c;
  struct childrec r = {GetCurrentThreadId(), 0, -2, 0, 0};
  ASSERT_OK(poller_child_start(l, &c, (pid_t)pi.dwProcessId, on_child, &r));
  ASSERT_OK(poller_child_stop(&c));
  ASSERT_EQ(poller_loop_alive(l), 0);
  /* A second loop closes with the watcher started. */
  poller_loop *l2 = open_loop();
  poller_child c2;
  struct childrec r2 = {GetCurrentThreadId(), 0, -2, 0, 0};
  ASSERT_OK(poller_child_start(l2, &c2, (pid_t)pi.dwProcessId, on_child, &r2));
  poller_loop_close(l2);
  ResumeThread(pi.hThread);
  ASSERT_EQ(WaitForSingleObject(pi.hProcess, 30000), WAIT_OBJECT_0);
  run_quietly(l, 200);
  ASSERT_EQ(r.calls, 0);
  ASSERT_EQ(r2.calls, 0);
  ASSERT_OK(poller_child_start(l, &c, (pid_t)pi.dwProcessId, on_child, &r));
  ASSERT_GE(poller_loop_run(l, 30000, -1), 1);
  ASSERT_EQ(r.calls, 1);
  ASSERT_EQ(r.status, 3);
  CloseHandle(pi.hThread);
  CloseHandle(pi.hProcess);
  close_loop(l);
}

/* Bad process ids: -EINVAL for one that is not a process id (<= 0, past
 * 32 bits), -ESRCH for one that names no process; the loop stays usable
 * and nothing is left alive. */
TEST(win_child_bad_pid) {
  poller_loop *l = open_loop();
  poller_child c;
  struct childrec r = {GetCurrentThreadId(), 0, -2, 0, 0};
  ASSERT_ERR(poller_child_start(NULL, &c, 4, on_child, &r), -EFAULT);
  ASSERT_ERR(poller_child_start(l, &c, 4, NULL, &r), -EFAULT);
  ASSERT_ERR(poller_child_start(l, &c, 0, on_child, &r), -EINVAL);
  ASSERT_ERR(poller_child_start(l, &c, -1, on_child, &r), -EINVAL);
  if (sizeof(pid_t) > 4)
    ASSERT_ERR(poller_child_start(l, &c, (pid_t)(((int64_t)1 << 32) + 4),
                                  on_child, &r),
               -EINVAL);
  /* An id far above the ones Windows hands out (small multiples of 4)
   * names no process; checked first with OpenProcess itself. */
  DWORD none = 0x7ffffff0u;
  HANDLE h = OpenProcess(SYNCHRONIZE, FALSE, none);
  if (h) {
    CloseHandle(h);
    t_note("process id %lu exists here; -ESRCH not checked",
           (unsigned long)none);
  } else {
    ASSERT_ERR(poller_child_start(l, &c, (pid_t)none, on_child, &r), -ESRCH);
  }
  ASSERT_EQ(poller_loop_alive(l), 0);
  ASSERT_EQ(r.calls, 0);
  close_loop(l);
}
