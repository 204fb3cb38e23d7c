/* SPDX-License-Identifier: MIT */
/*
 * watch.c - one loop watching a file, a child process and a signal at
 * once, through the loop's own handles (poller_fswatch, poller_child,
 * poller_signal), which work on every backend.
 *
 * Usage: watch            (the self-test, also the CTest entry)
 *        watch FILE [SECONDS]
 *
 * Without a file, watch makes a directory of its own under $TMPDIR (or
 * /tmp) with one file in it.  A child process appends to that file,
 * renames it away and back inside the directory, sends SIGUSR1 to the
 * parent and exits with status 7.  The loop prints the file changes, the
 * signal and the child's exit status, and returns when nothing is left to
 * watch (a 5-second timer bounds the run).  The directory is removed at
 * the end.  Exits 0 when all three were seen.
 *
 * With a FILE, watch only observes it: nothing writes to, renames or
 * touches the user's file.  It prints the changes someone else makes for
 * SECONDS (default 10) or until Ctrl-C; the child still sends SIGUSR1 and
 * exits, without going near the file.  Exits 0 when the signal and the
 * child's exit were seen.
 */
#include "poller_loop.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct watch_state {
  poller_fswatch file;
  poller_child child;
  poller_signal sig, interrupt;
  poller_timer deadline;
  int observe_only; /* a user's file: run until the deadline or Ctrl-C */
  int file_events, signals, exited;
};

static void stop_all(struct watch_state *st) {
  poller_fswatch_stop(&st->file);
  poller_signal_stop(&st->sig);
  poller_signal_stop(&st->interrupt);
  poller_child_stop(&st->child);
  poller_timer_stop(&st->deadline);
}

static void maybe_done(struct watch_state *st) {
  if (st->exited && st->signals && !st->observe_only)
    stop_all(st); /* nothing left: poller_loop_run returns */
}

static void on_file(poller_fswatch *w, unsigned events, void *arg) {
  struct watch_state *st = arg;
  (void)w;
  printf("file:   %s%s%s%s%s%s\n", events & POLLER_FS_WRITE ? "write " : "",
         events & POLLER_FS_EXTEND ? "extend " : "",
         events & POLLER_FS_ATTRIB ? "attrib " : "",
         events & POLLER_FS_LINK ? "link " : "",
         events & POLLER_FS_RENAME ? "rename " : "",
         events & POLLER_FS_DELETE ? "delete " : "");
  fflush(stdout);
  st->file_events++;
}

static void on_signal(poller_signal *s, int signum, unsigned count, void *arg) {
  struct watch_state *st = arg;
  (void)s;
  printf("signal: %s x%u\n", strsignal(signum), count);
  fflush(stdout);
  st->signals += (int)count;
  maybe_done(st);
}

static void on_interrupt(poller_signal *s, int signum, unsigned count,
                         void *arg) {
  (void)s, (void)signum, (void)count;
  printf("interrupted\n");
  stop_all(arg);
}

static void on_child(poller_child *c, pid_t pid, int status, void *arg) {
  struct watch_state *st = arg;
  (void)c;
  if (status < 0) /* -ECHILD: reaped elsewhere, the status is lost */
    printf("child:  %d ended, status unknown (%s)\n", (int)pid,
           poller_strerror(status));
  else if (WIFEXITED(status))
    printf("child:  %d exited with status %d\n", (int)pid, WEXITSTATUS(status));
  else
    printf("child:  %d ended (wait status %#x)\n", (int)pid, status);
  fflush(stdout);
  st->exited = 1;
  maybe_done(st);
}

static void on_deadline(poller_timer *t, void *arg) {
  struct watch_state *st = arg;
  (void)t;
  if (!st->observe_only)
    printf("deadline reached\n");
  stop_all(st);
}

/* The child of the self-test: changes the file (our own, in our own
 * directory), signals the parent, exits 7.  With path NULL (a user's
 * file) it only signals and exits. */
static void drive(const char *path, pid_t parent) {
  usleep(100000);
  if (path) {
    char moved[4200];
    snprintf(moved, sizeof moved, "%s.moved", path);
    FILE *f = fopen(path, "a");
    if (f) {
      fputs("hello from the child\n", f);
      fclose(f);
    }
    usleep(50000);
    if (rename(path, moved) == 0) {
      usleep(50000);
      rename(moved, path);
    }
    usleep(50000);
  }
  kill(parent, SIGUSR1);
  usleep(50000);
  _exit(7);
}

int main(int argc, char **argv) {
  struct watch_state st;
  memset(&st, 0, sizeof st);
  const char *path = argc > 1 ? argv[1] : NULL;
  int seconds = argc > 2 ? atoi(argv[2]) : 10;
  char dir[4096] = "", own[4200] = "";
  if (path) {
    st.observe_only = 1;
    if (seconds <= 0) {
      fprintf(stderr, "usage: watch [FILE [SECONDS > 0]]\n");
      return 2;
    }
  } else {
    /* Our own file, in a directory nobody else uses. */
    const char *tmpdir = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/poller-watch-XXXXXX",
             tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(dir)) {
      perror("mkdtemp");
      return 1;
    }
    snprintf(own, sizeof own, "%s/watched", dir);
    FILE *f = fopen(own, "w");
    if (!f) {
      perror(own);
      rmdir(dir);
      return 1;
    }
    fclose(f);
    path = own;
  }

  poller_loop *loop;
  int r = poller_loop_open(&loop, POLLER_AUTO);
  if (r < 0) {
    fprintf(stderr, "poller_loop_open: %s\n", poller_strerror(r));
    return 1;
  }
  printf("watching %s (%s), SIGUSR1 and a child on %s\n", path,
         st.observe_only ? "observed only" : "our own file",
         poller_backend_name(poller_backend(poller_loop_poller(loop))));
  r = poller_fswatch_start(loop, &st.file, path, 0x7f, on_file, &st);
  if (r < 0)
    fprintf(stderr, "file watching unavailable: %s\n", poller_strerror(r));
  if ((r = poller_signal_start(loop, &st.sig, SIGUSR1, on_signal, &st)) < 0) {
    fprintf(stderr, "poller_signal_start: %s\n", poller_strerror(r));
    return 1;
  }
  if (st.observe_only && (r = poller_signal_start(loop, &st.interrupt, SIGINT,
                                                  on_interrupt, &st)) < 0) {
    fprintf(stderr, "poller_signal_start: %s\n", poller_strerror(r));
    return 1;
  }
  fflush(stdout);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    return 1;
  }
  if (pid == 0)
    drive(st.observe_only ? NULL : path, parent);
  if ((r = poller_child_start(loop, &st.child, pid, on_child, &st)) < 0) {
    fprintf(stderr, "poller_child_start: %s\n", poller_strerror(r));
    return 1;
  }
  poller_timer_init(&st.deadline, on_deadline, &st);
  poller_timer_start(loop, &st.deadline,
                     st.observe_only ? (uint64_t)seconds * 1000 : 5000, 0);
  r = poller_loop_run(loop, -1, -1);
  stop_all(&st);
  poller_loop_close(loop);
  if (*dir) {
    char moved[4300];
    snprintf(moved, sizeof moved, "%s.moved", own);
    unlink(own);
    unlink(moved); /* in case the child stopped half-way */
    rmdir(dir);
  }
  if (r < 0) {
    fprintf(stderr, "poller_loop_run: %s\n", poller_strerror(r));
    return 1;
  }
  int ok = st.exited && st.signals && (st.observe_only || st.file_events);
  printf("%s: %d file events, %d signals, child %s\n", ok ? "ok" : "FAILED",
         st.file_events, st.signals, st.exited ? "reaped" : "missing");
  return ok ? 0 : 1;
}
