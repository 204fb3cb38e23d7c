/*
 * watch.c - one loop watching a file, a child process and a signal at
 * once, through the loop's own handles (poller_fswatch, poller_child,
 * poller_signal), which work on every backend.
 *
 * Usage: watch [file]
 * Without a file it makes one under /tmp.  A child process appends to the
 * file, renames it away and back, sends SIGUSR1 to the parent and exits
 * with status 7.  The loop prints the file changes, the signal and the
 * child's exit status, and returns when nothing is left to watch (a
 * 5-second timer bounds the run).  Exits 0 when all three were seen.
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
  poller_signal sig;
  poller_timer deadline;
  int file_events, signals, exited;
};

static void stop_all(struct watch_state *st) {
  poller_fswatch_stop(&st->file);
  poller_signal_stop(&st->sig);
  poller_child_stop(&st->child);
  poller_timer_stop(&st->deadline);
}

static void maybe_done(struct watch_state *st) {
  if (st->exited && st->signals)
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
  st->file_events++;
}

static void on_signal(poller_signal *s, int signum, unsigned count,
                      void *arg) {
  struct watch_state *st = arg;
  (void)s;
  printf("signal: %s x%u\n", strsignal(signum), count);
  st->signals += (int)count;
  maybe_done(st);
}

static void on_child(poller_child *c, pid_t pid, int status, void *arg) {
  struct watch_state *st = arg;
  (void)c;
  if (WIFEXITED(status))
    printf("child:  %d exited with status %d\n", (int)pid,
           WEXITSTATUS(status));
  else
    printf("child:  %d ended (wait status %#x)\n", (int)pid, status);
  st->exited = 1;
  maybe_done(st);
}

static void on_deadline(poller_timer *t, void *arg) {
  (void)t;
  printf("deadline reached\n");
  stop_all(arg);
}

/* The child: changes the file, signals the parent, exits 7. */
static void drive(const char *path, pid_t parent) {
  char moved[4200];
  snprintf(moved, sizeof moved, "%s.moved", path);
  usleep(100000);
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
  kill(parent, SIGUSR1);
  usleep(50000);
  _exit(7);
}

int main(int argc, char **argv) {
  char tmp[] = "/tmp/poller-watch-XXXXXX";
  const char *path = argc > 1 ? argv[1] : NULL;
  if (!path) {
    int fd = mkstemp(tmp);
    if (fd < 0) {
      perror("mkstemp");
      return 1;
    }
    close(fd);
    path = tmp;
  }
  poller_loop *loop;
  int r = poller_loop_open(&loop, POLLER_AUTO);
  if (r < 0) {
    fprintf(stderr, "poller_loop_open: %s\n", poller_strerror(r));
    return 1;
  }
  printf("watching %s, SIGUSR1 and a child on %s\n", path,
         poller_backend_name(poller_backend(poller_loop_poller(loop))));
  struct watch_state st;
  memset(&st, 0, sizeof st);
  r = poller_fswatch_start(loop, &st.file, path, 0x7f, on_file, &st);
  if (r < 0)
    fprintf(stderr, "file watching unavailable: %s\n", poller_strerror(r));
  if ((r = poller_signal_start(loop, &st.sig, SIGUSR1, on_signal, &st)) < 0) {
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
    drive(path, parent);
  if ((r = poller_child_start(loop, &st.child, pid, on_child, &st)) < 0) {
    fprintf(stderr, "poller_child_start: %s\n", poller_strerror(r));
    return 1;
  }
  poller_timer_init(&st.deadline, on_deadline, &st);
  poller_timer_start(loop, &st.deadline, 5000, 0);
  r = poller_loop_run(loop, -1, -1);
  stop_all(&st);
  poller_loop_close(loop);
  if (path == tmp)
    unlink(tmp);
  if (r < 0) {
    fprintf(stderr, "poller_loop_run: %s\n", poller_strerror(r));
    return 1;
  }
  int ok = st.exited && st.signals && st.file_events;
  printf("%s: %d file events, %d signals, child %s\n", ok ? "ok" : "FAILED",
         st.file_events, st.signals, st.exited ? "reaped" : "missing");
  return ok ? 0 : 1;
}
