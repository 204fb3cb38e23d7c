/* SPDX-License-Identifier: MIT */
/*
 * loop_posix.c - the loop's Unix event sources: signals (the sigaction
 * handler and its lock; loop_signals.c counts, wakes and dispatches),
 * child processes (pidfd, or SIGCHLD and waitpid), file watching (inotify
 * on Linux, -ENOSYS elsewhere) and what poller_loop_reinit must redo
 * after fork.  loop.c holds the rest of the loop (loop_internal.h).
 */
#define _GNU_SOURCE
#include "loop_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/inotify.h>
#endif

void poller__loop_sources_init(poller_loop *l) { l->inotify_fd = -1; }

void poller__loop_sleep_ms(poller_loop *l, int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !atomic_load(&l->stop))
    ;
}

/* ---- signals ---- */

/* The table of watching loops and the watchers themselves are
 * loop_signals.c's; here are the numbers that can be watched, the
 * sigaction handler and the table's lock. */
static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;
static int sig_users[NSIGNALS]; /* watchers per signal, all loops */
static struct sigaction sig_saved[NSIGNALS];

/* The table's lock is held across fork, so a child never inherits it
 * locked by a thread that does not exist in the child (it would deadlock
 * at its first signal watcher). */
static pthread_once_t sig_atfork_once = PTHREAD_ONCE_INIT;
static void sig_prefork(void) { pthread_mutex_lock(&sig_lock); }
static void sig_postfork(void) { pthread_mutex_unlock(&sig_lock); }
static void sig_atfork_install(void) {
  (void)pthread_atfork(sig_prefork, sig_postfork, sig_postfork);
}
void poller__loop_signal_lock(void) {
  (void)pthread_once(&sig_atfork_once, sig_atfork_install);
  pthread_mutex_lock(&sig_lock);
}
void poller__loop_signal_unlock(void) { pthread_mutex_unlock(&sig_lock); }
void poller__loop_signal_yield(void) { sched_yield(); }

int poller__loop_signal_check(int signum) {
  if (signum <= 0 || signum >= NSIGNALS || signum == SIGKILL ||
      signum == SIGSTOP)
    return -EINVAL;
  return 0;
}

static void on_signal(int signum) { (void)poller__loop_signal_deliver(signum); }

int poller__loop_signal_hold(int signum) {
  if (sig_users[signum] == 0) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigfillset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(signum, &sa, &sig_saved[signum]) < 0)
      return -errno;
  }
  sig_users[signum]++;
  return 0;
}

void poller__loop_signal_release(int signum) {
  if (--sig_users[signum] == 0)
    sigaction(signum, &sig_saved[signum], NULL);
}

/* Children end through their pidfd watchers or the SIGCHLD watcher, both
 * dispatched as such: nothing more to run. */
void poller__loop_dispatch_children(poller_loop *l) { (void)l; }

/* ---- child processes ---- */

static void child_done(poller_loop *l, poller_child *c, int status) {
  pid_t pid = c->pid;
  poller_child_cb cb = c->cb;
  void *arg = c->arg;
  poller_child_stop(c);
  cb(c, pid, status, arg);
  (void)l;
}

static void on_pidfd(poller_loop *l, int fd, unsigned events, void *arg) {
  poller_child *c = arg;
  int status = 0;
  pid_t r = waitpid(c->pid, &status, WNOHANG);
  if (r == c->pid) {
    child_done(l, c, status);
  } else if (r < 0 && errno == ECHILD) {
    child_done(l, c, -ECHILD); /* reaped elsewhere: status lost */
  } else if (events & POLLER_NVAL) {
    /* The loop dropped the pidfd's registration: watch it again, or end
     * the watch with the error rather than never reporting the exit. */
    int rc = poller__loop_io_start(l, fd, POLLER_IN, on_pidfd, c, 1);
    if (rc < 0)
      child_done(l, c, rc);
  }
}

static void on_sigchld(poller_signal *s, int signum, unsigned count,
                       void *arg) {
  poller_loop *l = arg;
  (void)s;
  (void)signum;
  (void)count;
  for (poller_child *c = l->children; c && !l->close_requested;) {
    poller_child *next = c->next;
    if (c->pidfd < 0) {
      int status = 0;
      pid_t r = waitpid(c->pid, &status, WNOHANG);
      if (r == c->pid || (r < 0 && errno == ECHILD)) {
        /* ECHILD: reaped elsewhere, the status is lost. */
        child_done(l, c, r == c->pid ? status : -ECHILD);
        next = l->children; /* the list changed: start again */
      }
    }
    c = next;
  }
}

static int open_pidfd(pid_t pid) {
#if defined(__linux__) && defined(SYS_pidfd_open)
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);
  return fd < 0 ? -errno : fd;
#else
  (void)pid;
  return -ENOSYS;
#endif
}

int poller_child_start(poller_loop *l, poller_child *c, pid_t pid,
                       poller_child_cb cb, void *arg) {
  if (!l || !c || !cb)
    return -EFAULT;
  if (pid <= 0)
    return -EINVAL;
  int listed;
  IS_LISTED(listed, poller_child, l->children, c);
  if (listed)
    return -EBUSY;
  /* Only a child of this process has a status to report: for any other
   * pid, SIGCHLD never comes and waitpid fails, so the watch could never
   * complete (without pidfd) or only with nothing to say (with it).
   * WNOWAIT leaves a zombie for the watch to reap. */
  siginfo_t si;
  memset(&si, 0, sizeof si);
  if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
    return errno == ECHILD ? -ECHILD : -errno;
  *c = (poller_child){l, cb, arg, pid, -1, 0, NULL};
  int fd = open_pidfd(pid);
  if (fd >= 0) {
    int r = poller__loop_io_start(l, fd, POLLER_IN, on_pidfd, c, 1);
    if (r < 0) {
      close(fd);
      return r;
    }
    c->pidfd = fd;
  } else if (fd == -ESRCH) {
    return -ESRCH;
  } else {
    /* No pidfd: SIGCHLD wakes the loop, waitpid(WNOHANG) per child. */
    if (!l->sigchld_fallback) {
      int r = poller_signal_start(l, &l->sigchld, SIGCHLD, on_sigchld, l);
      if (r < 0)
        return r;
      l->alive--; /* the children keep the loop alive, not this */
    }
    l->sigchld_fallback++;
  }
  c->active = 1;
  c->next = l->children;
  l->children = c;
  l->alive++;
  if (c->pidfd < 0) {
    /* It may have exited before SIGCHLD was watched. */
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid)
      child_done(l, c, status);
  }
  return 0;
}

int poller_child_stop(poller_child *c) {
  if (!c)
    return -EFAULT;
  if (!c->active)
    return 0;
  poller_loop *l = c->loop;
  UNLINK_LISTED(poller_child, l->children, c);
  c->active = 0;
  l->alive--;
  if (c->pidfd >= 0) {
    poller_io_stop(l, c->pidfd);
    close(c->pidfd);
    c->pidfd = -1;
  } else if (--l->sigchld_fallback == 0) {
    l->alive++; /* balance the decrement made at start */
    poller_signal_stop(&l->sigchld);
  }
  return 0;
}

/* ---- file changes ---- */

#ifdef __linux__
#define FS_MASK                                                                \
  (IN_MODIFY | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_MASK_ADD)

/* The file's size and link count, from the watch's own descriptor of it:
 * the path may name another file by now (renamed, replaced), or nothing
 * (unlinked while open). */
static void fs_stat(poller_fswatch *w) {
  struct stat st;
  if (w->pathfd >= 0 ? fstat(w->pathfd, &st) == 0 : stat(w->path, &st) == 0) {
    w->size = (long long)st.st_size;
    w->nlink = (unsigned long)st.st_nlink;
  }
}

/* True while fd is still the loop's inotify instance of generation gen:
 * a callback that stopped the last watch closed it, and the number may
 * already belong to the application (or to a new instance whose watch
 * descriptors mean other files). */
static int inotify_same(const poller_loop *l, int fd, unsigned gen) {
  return !l->close_requested && l->inotify_fd == fd && l->inotify_gen == gen;
}

static void on_inotify(poller_loop *l, int fd, unsigned events, void *arg) {
  (void)arg;
  _Alignas(struct inotify_event) char buf[4096];
  unsigned gen = l->inotify_gen;
  /* The registration was refused (the loop deleted it): watch the
   * instance again (the events already queued in it are read below
   * either way). */
  if (events & POLLER_NVAL)
    (void)poller__loop_io_start(l, fd, POLLER_IN, on_inotify, NULL, 1);
  while (inotify_same(l, fd, gen)) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0)
      return;
    for (char *p = buf; p < buf + n;) {
      struct inotify_event *ev = (struct inotify_event *)(void *)p;
      p += sizeof *ev + ev->len;
      unsigned pass = ++l->pass;
    again:
      for (poller_fswatch *w = l->watches; w; w = w->next) {
        if (!inotify_same(l, fd, gen))
          return;
        if (w->wd != ev->wd || w->pass == pass)
          continue;
        w->pass = pass;
        unsigned bits = 0;
        long long old_size = w->size;
        unsigned long old_nlink = w->nlink;
        if (ev->mask & (IN_MODIFY | IN_ATTRIB))
          fs_stat(w);
        if (ev->mask & IN_MODIFY) {
          bits |= POLLER_FS_WRITE;
          if (w->size > old_size)
            bits |= POLLER_FS_EXTEND;
        }
        if (ev->mask & IN_ATTRIB)
          bits |= w->nlink != old_nlink ? POLLER_FS_LINK : POLLER_FS_ATTRIB;
        if (ev->mask & IN_MOVE_SELF)
          bits |= POLLER_FS_RENAME;
        /* The last link removed: inotify says only IN_ATTRIB while the
         * file is open somewhere (IN_DELETE_SELF waits for the last
         * close), so the link count decides.  DELETE is reported once:
         * the descriptor goes, and the kernel's IN_DELETE_SELF that may
         * follow is not reported again. */
        if (w->pathfd >= 0 && (ev->mask & IN_ATTRIB) && w->nlink == 0) {
          bits |= POLLER_FS_DELETE;
          close(w->pathfd);
          w->pathfd = -1;
        } else if ((ev->mask & IN_DELETE_SELF) && old_nlink != 0) {
          bits |= POLLER_FS_DELETE;
        }
        if (bits & POLLER_FS_DELETE)
          w->nlink = 0;
        if (ev->mask & IN_IGNORED)
          w->wd = -1; /* the kernel dropped the watch (deleted file) */
        bits &= w->events;
        if (!bits)
          continue;
        unsigned version = l->version;
        w->cb(w, bits, w->arg);
        if (l->version != version)
          goto again;
      }
    }
  }
}

/* Opens the loop's inotify instance and watches it; a new instance has a
 * new generation, so reports of the old one's watch numbers are known. */
static int inotify_open(poller_loop *l) {
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0)
    return -errno;
  int r = poller__loop_io_start(l, fd, POLLER_IN, on_inotify, NULL, 1);
  if (r < 0) {
    close(fd);
    return r;
  }
  l->inotify_fd = fd;
  l->inotify_gen++;
  return 0;
}

/* Without watches, the inotify instance goes. */
static void inotify_release(poller_loop *l) {
  if (l->watches || l->inotify_fd < 0)
    return;
  poller_io_stop(l, l->inotify_fd);
  close(l->inotify_fd);
  l->inotify_fd = -1;
}
#endif

int poller_fswatch_start(poller_loop *l, poller_fswatch *w, const char *path,
                         unsigned events, poller_fswatch_cb cb, void *arg) {
  if (!l || !w || !path || !cb)
    return -EFAULT;
  if (!(events & 0x7fu) || (events & ~0x7fu))
    return -EINVAL;
#ifdef __linux__
  int listed;
  IS_LISTED(listed, poller_fswatch, l->watches, w);
  if (listed)
    return -EBUSY;
  if (l->inotify_fd < 0) {
    int r = inotify_open(l);
    if (r < 0)
      return r;
  }
  char *copy = strdup(path);
  int wd = copy ? inotify_add_watch(l->inotify_fd, path, FS_MASK) : -1;
  int pathfd = wd >= 0 ? open(path, O_PATH | O_CLOEXEC) : -1;
  if (wd < 0 || pathfd < 0) {
    int r = copy ? -errno : -ENOMEM;
    /* The watch descriptor may be shared with another watch of the same
     * file: only an unshared one is removed. */
    int shared = 0;
    for (poller_fswatch *o = l->watches; o; o = o->next)
      shared |= o->wd == wd;
    if (wd >= 0 && !shared)
      inotify_rm_watch(l->inotify_fd, wd);
    free(copy);
    inotify_release(l);
    return r;
  }
  *w = (poller_fswatch){l, cb, arg,  events, wd, pathfd,
                        0, 0,  copy, 1,      0,  l->watches};
  fs_stat(w);
  l->watches = w;
  l->version++;
  l->alive++;
  return 0;
#else
  (void)events;
  (void)cb;
  (void)arg;
  return -ENOSYS;
#endif
}

int poller_fswatch_stop(poller_fswatch *w) {
  if (!w)
    return -EFAULT;
  if (!w->active)
    return 0;
  poller_loop *l = w->loop;
  int shared = 0;
  for (poller_fswatch **pp = &l->watches; *pp;) {
    if (*pp == w) {
      *pp = w->next;
      continue;
    }
    if ((*pp)->wd == w->wd)
      shared = 1;
    pp = &(*pp)->next;
  }
#ifdef __linux__
  if (!shared && w->wd >= 0)
    inotify_rm_watch(l->inotify_fd, w->wd);
  inotify_release(l);
  if (w->pathfd >= 0)
    close(w->pathfd);
  w->pathfd = -1;
#endif
  free(w->path);
  w->path = NULL;
  w->active = 0;
  l->version++;
  l->alive--;
  return 0;
}

void poller__loop_sources_close(poller_loop *l) {
  while (l->signals)
    poller_signal_stop(l->signals);
  while (l->children)
    poller_child_stop(l->children);
  while (l->watches)
    poller_fswatch_stop(l->watches);
  poller__loop_signals_forget(l);
  if (l->inotify_fd >= 0)
    close(l->inotify_fd);
}

int poller__loop_sources_reinit(poller_loop *l) {
  /* The children of the parent are not the child's: their watchers stop
   * without a callback.  Pending signal counts belong to the parent's
   * past (libuv#3483) and are dropped. */
  while (l->children)
    poller_child_stop(l->children);
  for (int s = 0; s < NSIGNALS; s++)
    atomic_store(&l->sigcount[s], 0);
  atomic_store(&l->sig_pending, 0);
#ifdef __linux__
  /* inotify instances are shared with the parent across fork: a new one,
   * with every watch added again. */
  if (l->inotify_fd >= 0) {
    poller_io_stop(l, l->inotify_fd);
    close(l->inotify_fd);
    l->inotify_fd = -1;
    int r = inotify_open(l);
    if (r < 0)
      return r;
    int fd = l->inotify_fd;
    for (poller_fswatch *w = l->watches; w; w = w->next)
      w->wd = inotify_add_watch(fd, w->path, FS_MASK);
  }
#endif
  return 0;
}
