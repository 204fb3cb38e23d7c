/*
 * watch.c - one loop watching a file, a child process and a signal at
 * once.
 *
 * Usage: watch [file]
 * Without a file it makes one under /tmp and drives everything itself: a
 * child process appends to the file, renames it back and forth, sends
 * SIGUSR1 to the parent and exits with status 7.  The loop reports the
 * file changes, the signal and the child's exit status, then stops.  With
 * a file, it watches that file, SIGUSR1 and the same self-driving child.
 *
 * This version watches through plain fd watchers (poller_io_start) over
 * Linux descriptors: inotify for the file, signalfd for the signal, a
 * pidfd for the child (Linux 5.3+), which is what the loop's own signal,
 * child and file watchers do on Linux.  Elsewhere it says so and exits.
 */
#include "poller_loop.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef __linux__
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>

struct watch_state {
  int file_events, signals, exited;
  pid_t child;
};

static void on_file(poller_loop *loop, int fd, unsigned events, void *arg) {
  struct watch_state *st = arg;
  char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
  (void)loop;
  (void)events;
  ssize_t n = read(fd, buf, sizeof buf);
  for (char *p = buf; n > 0 && p < buf + n;) {
    struct inotify_event *ev = (struct inotify_event *)p;
    printf("file:   %s%s%s%s\n", ev->mask & IN_MODIFY ? "write " : "",
           ev->mask & IN_ATTRIB ? "attrib " : "",
           ev->mask & IN_MOVE_SELF ? "rename " : "",
           ev->mask & IN_DELETE_SELF ? "delete " : "");
    st->file_events++;
    p += sizeof *ev + ev->len;
  }
}

static void on_signal(poller_loop *loop, int fd, unsigned events, void *arg) {
  struct watch_state *st = arg;
  struct signalfd_siginfo si;
  (void)loop;
  (void)events;
  while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
    printf("signal: %d (%s) from pid %u\n", (int)si.ssi_signo,
           strsignal((int)si.ssi_signo), si.ssi_pid);
    st->signals++;
  }
}

static void on_child(poller_loop *loop, int fd, unsigned events, void *arg) {
  struct watch_state *st = arg;
  int status;
  (void)events;
  if (waitpid(st->child, &status, WNOHANG) == st->child) {
    if (WIFEXITED(status))
      printf("child:  pid %d exited with status %d\n", (int)st->child,
             WEXITSTATUS(status));
    else
      printf("child:  pid %d ended by signal %d\n", (int)st->child,
             WTERMSIG(status));
    st->exited = 1;
    poller_io_stop(loop, fd);
  }
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
  int rc = poller_loop_open(&loop, POLLER_AUTO);
  if (rc < 0) {
    fprintf(stderr, "loop: %s\n", poller_strerror(rc));
    return 1;
  }
  struct watch_state st = {0, 0, 0, 0};

  /* The signal: blocked, so it is only ever read from the signalfd. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigprocmask(SIG_BLOCK, &set, NULL);
  int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  int ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (sfd < 0 || ifd < 0 ||
      inotify_add_watch(ifd, path,
                        IN_MODIFY | IN_ATTRIB | IN_MOVE_SELF |
                            IN_DELETE_SELF) < 0) {
    perror(path);
    return 1;
  }
  poller_io_start(loop, sfd, POLLER_IN, on_signal, &st);
  poller_io_start(loop, ifd, POLLER_IN, on_file, &st);

  /* The child: writes the file, renames it away and back, signals us. */
  pid_t parent = getpid();
  st.child = fork();
  if (st.child == 0) {
    usleep(100000);
    FILE *f = fopen(path, "a");
    if (f) {
      fputs("hello from the child\n", f);
      fclose(f);
    }
    char other[4200];
    snprintf(other, sizeof other, "%s.renamed", path);
    rename(path, other);
    rename(other, path);
    kill(parent, SIGUSR1);
    usleep(100000);
    _exit(7);
  }
  int pfd = (int)syscall(SYS_pidfd_open, st.child, 0);
  if (pfd < 0) {
    fprintf(stderr, "pidfd_open: %s (Linux 5.3+ needed)\n", strerror(errno));
    return 1;
  }
  poller_io_start(loop, pfd, POLLER_IN, on_child, &st);
  printf("watching %s, SIGUSR1 and child %d on %s\n", path, (int)st.child,
         poller_backend_name(poller_backend(poller_loop_poller(loop))));

  /* Run until the child is gone and the rest was seen, 5 s at most. */
  for (int i = 0; i < 100 && !(st.exited && st.signals && st.file_events);
       i++)
    poller_loop_run(loop, 50, 1);
  poller_io_stop(loop, sfd);
  poller_io_stop(loop, ifd);
  if (!st.exited)
    poller_io_stop(loop, pfd);
  close(sfd);
  close(ifd);
  close(pfd);
  poller_loop_close(loop);
  if (path == tmp)
    unlink(tmp);
  int ok = st.exited && st.signals && st.file_events;
  printf("%s\n", ok ? "saw a file change, a signal and a child exit"
                    : "missing events");
  return ok ? 0 : 1;
}
#else
int main(void) {
  fprintf(stderr, "watch: this version needs Linux (inotify, signalfd, "
                  "pidfd)\n");
  return 0;
}
#endif
