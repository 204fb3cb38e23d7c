/* SPDX-License-Identifier: MIT */
/*
 * transport.c - buffered connections and listeners on the loop (pike's
 * BasePoller: add_channel, del_channel, defer_write and the handle_*
 * handlers), see include/poller_transport.h.
 *
 * Safety around handlers follows Redis's connhelpers.h: every handler call
 * is bracketed by refs++ / refs--, closing only marks the transport closed
 * (fd closed and unwatched at once, so no later event of the same batch
 * reaches it: poller_io_stop guarantees that), and the memory is freed by
 * a zero-delay loop timer once no handler of the transport is on the stack.
 * Completion callbacks are never run from inside the call that caused them
 * (libuv stream.c): a connect that fails at once, or a write that fails,
 * is reported from the loop afterwards.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "poller_transport.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _WIN32
/* Winsock versions of the socket calls below, under their Unix names. */
#include "transport_win32.h"
#else
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>
#endif

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* BSD: SO_NOSIGPIPE is set on the socket instead */
#endif

/* Bytes read per recv and reads per readiness report: a fast sender cannot
 * starve the other fds of the loop (level-triggered, so the rest of its
 * data is reported again on the next iteration). */
#define TR_READ_SIZE 65536
#define TR_READS_PER_EVENT 4
/* The smallest write-queue chunk: small writes share a chunk, a large one
 * gets its own of exactly its size, so each byte is copied once. */
#define TR_CHUNK_MIN 16384
#define TR_IOV_MAX 16
#define TR_ACCEPTS_PER_EVENT 64
#define TR_ACCEPT_RETRY_MS 100

enum tr_state { TR_CONNECTING, TR_OPEN, TR_CLOSED };

/* Every live transport and listener is on its loop's registry, so that
 * poller_loop_close closes and frees them (even the ones closed but still
 * waiting for their deferred free, which would otherwise leak when the
 * loop drops its timers).  The registry is per loop and found through the
 * loop's close hook: no process-wide list and no lock (a lock held by
 * another thread at fork would deadlock the child), closing one loop
 * never walks another's transports, and the loop knows nothing of
 * transports. */
struct tr_node {
  struct tr_node *prev, *next;
  int kind; /* TR_KIND_* */
};
enum { TR_KIND_TRANSPORT = 1, TR_KIND_LISTENER = 2 };

struct tr_registry {
  poller_loop_hook hook; /* its callback closes everything below */
  struct tr_node head;   /* circular list of transports and listeners */
};

static void tr_loop_closing(poller_loop_hook *hook, void *arg);

/* The loop's registry, created with the first transport or listener.
 * Returns NULL only when it cannot be allocated. */
static struct tr_registry *tr_registry_of(poller_loop *loop) {
  poller_loop_hook *h = poller_loop_hook_find(loop, tr_loop_closing);
  if (h)
    return h->arg;
  struct tr_registry *r = calloc(1, sizeof *r);
  if (!r)
    return NULL;
  r->head.prev = r->head.next = &r->head;
  if (poller_loop_hook_add(loop, &r->hook, tr_loop_closing, r) < 0) {
    free(r);
    return NULL;
  }
  return r;
}

static void tr_register(struct tr_registry *r, struct tr_node *n, int kind) {
  n->kind = kind;
  n->next = &r->head;
  n->prev = r->head.prev;
  r->head.prev->next = n;
  r->head.prev = n;
}

static void tr_unregister(struct tr_node *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
}

struct tr_chunk {
  struct tr_chunk *next;
  size_t start; /* first unsent byte */
  size_t end;   /* one past the last queued byte */
  size_t cap;
  char data[];
};

struct poller_transport {
  struct tr_node node; /* first: the registry links it */
  poller_loop *loop;
  int fd;
  enum tr_state state;
  unsigned watching; /* interest registered with the loop, 0: none */
  int refs;          /* handlers of this transport on the stack */
  int pending_err;   /* an error to report from the loop (negative) */
  unsigned is_sock : 1;
  unsigned no_read : 1; /* a write-only fd (a pipe's write end) */
  unsigned paused : 1;
  unsigned eof : 1;
  unsigned shut_req : 1;  /* shutdown asked, done when the queue empties */
  unsigned shut_done : 1;
  unsigned closing : 1;   /* close(flush) asked: no reads, no callbacks */
  unsigned above_high : 1;
  unsigned free_sched : 1;
  poller_transport_cbs cbs;
  void *data;
  struct tr_chunk *head, *tail;
  size_t high, low;
  poller_transport_stats st;
  poller_timer timeout; /* connect timeout */
  poller_timer defer;   /* deferred error report, then the free */
};

/* ---- helpers ---- */

static int tr_nonblock_cloexec(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0)
    return -errno;
  if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
    return -errno;
  int fdfl = fcntl(fd, F_GETFD);
  if (fdfl >= 0 && !(fdfl & FD_CLOEXEC))
    (void)fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC);
  return 0;
}

static void tr_nosigpipe(int fd) {
#ifdef SO_NOSIGPIPE
  int one = 1;
  (void)setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#else
  (void)fd;
#endif
}

/* writev on a descriptor that is not a socket, without SIGPIPE: send()'s
 * MSG_NOSIGNAL exists only for sockets, so SIGPIPE is blocked in this
 * thread around the call, and the one a broken pipe raised is consumed
 * before the mask comes back (unless one was already pending: that one
 * belongs to someone else and stays).  Returns writev's result with its
 * errno. */
#ifndef _WIN32 /* transport_win32.h: no pipes, no SIGPIPE */
static ssize_t tr_writev_nosigpipe(int fd, const struct iovec *iov, int n) {
  sigset_t pipe_set, old, pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  if (pthread_sigmask(SIG_BLOCK, &pipe_set, &old) != 0)
    return writev(fd, iov, n);
  int was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
  ssize_t w = writev(fd, iov, n);
  int err = errno;
  if (w < 0 && err == EPIPE && !was_pending) {
    struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
      ;
  }
  if (!sigismember(&old, SIGPIPE))
    (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
  errno = err;
  return w;
}
#endif

static void tr_close_now(poller_transport *t);
static void tr_io(poller_loop *loop, int fd, unsigned events, void *arg);

/* Registers exactly the interest the transport's state asks for: OUT while
 * connecting or while the queue holds bytes (pike's defer_write), IN while
 * reading is wanted.  No interest at all means no registration, since
 * poller_add refuses an empty mask. */
static void tr_update(poller_transport *t) {
  if (t->state == TR_CLOSED)
    return;
  unsigned want = 0;
  if (t->state == TR_CONNECTING) {
    if (t->pending_err == 0)
      want = POLLER_OUT;
  } else {
    if (!t->paused && !t->eof && !t->closing && !t->no_read &&
        t->pending_err == 0)
      want |= POLLER_IN;
    if ((t->head || (t->shut_req && !t->shut_done)) && t->pending_err == 0)
      want |= POLLER_OUT;
  }
  if (want == t->watching)
    return;
  int rc;
  if (want == 0)
    rc = poller_io_stop(t->loop, t->fd);
  else if (t->watching == 0)
    rc = poller_io_start(t->loop, t->fd, want, tr_io, t);
  else
    rc = poller_io_modify(t->loop, t->fd, want);
  if (rc == 0) {
    t->watching = want;
  } else if (t->pending_err == 0) {
    /* The loop could not watch the fd (-ENOMEM...): report it as the
     * transport's error rather than hanging silently. */
    t->pending_err = rc;
    t->watching = 0;
    (void)poller_io_stop(t->loop, t->fd);
    (void)poller_timer_start(t->loop, &t->defer, 0, 0);
  }
}

static void tr_unref(poller_transport *t) {
  if (--t->refs == 0 && t->state == TR_CLOSED && !t->free_sched) {
    t->free_sched = 1;
    (void)poller_timer_start(t->loop, &t->defer, 0, 0);
  }
}

/* Reports err through on_error (once), then closes the transport. */
static void tr_fail(poller_transport *t, int err) {
  if (t->state == TR_CLOSED)
    return;
  void (*cb)(poller_transport *, int) = t->cbs.on_error;
  if (!t->closing && cb) {
    /* Nothing more is delivered to a failed transport, whatever the
     * handler does, and it is closed below. */
    t->closing = 1;
    t->refs++;
    cb(t, err);
    t->refs--;
  }
  tr_close_now(t);
}

static size_t tr_queued(const poller_transport *t) { return t->st.queued; }

static void tr_call_drain(poller_transport *t) {
  if (t->above_high && t->st.queued <= t->low) {
    t->above_high = 0;
    t->st.drain++;
    if (t->cbs.on_drain && !t->closing) {
      t->refs++;
      t->cbs.on_drain(t);
      t->refs--;
    }
  }
}

/* Sends from the queue until it is empty or the kernel is full.
 * Returns 0, or the kernel's error (negative). */
static int tr_flush(poller_transport *t) {
  while (t->head) {
    struct iovec iov[TR_IOV_MAX];
    int n = 0;
    for (struct tr_chunk *c = t->head; c && n < TR_IOV_MAX; c = c->next) {
      iov[n].iov_base = c->data + c->start;
      iov[n].iov_len = c->end - c->start;
      n++;
    }
    ssize_t w;
    if (t->is_sock) {
      struct msghdr msg;
      memset(&msg, 0, sizeof msg);
      msg.msg_iov = iov;
      msg.msg_iovlen = (size_t)n;
      w = sendmsg(t->fd, &msg, MSG_NOSIGNAL);
    } else {
      w = tr_writev_nosigpipe(t->fd, iov, n);
    }
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 0;
      return -errno;
    }
    t->st.bytes_written += (unsigned long long)w;
    size_t left = (size_t)w;
    while (left > 0 && t->head) {
      struct tr_chunk *c = t->head;
      size_t in = c->end - c->start;
      if (left < in) {
        c->start += left;
        left = 0;
        break;
      }
      left -= in;
      t->head = c->next;
      if (!t->head)
        t->tail = NULL;
      t->st.queue_mem -= c->cap;
      free(c);
    }
    t->st.queued -= (size_t)w;
  }
  return 0;
}

/* Copies len bytes to the queue's end.  Returns 0 or -ENOMEM. */
static int tr_append(poller_transport *t, const char *p, size_t len) {
  struct tr_chunk *c = t->tail;
  if (c && c->cap - c->end >= len) {
    memcpy(c->data + c->end, p, len);
    c->end += len;
  } else {
    size_t cap = len > TR_CHUNK_MIN ? len : TR_CHUNK_MIN;
    c = malloc(sizeof *c + cap);
    if (!c)
      return -ENOMEM;
    c->next = NULL;
    c->start = 0;
    c->end = len;
    c->cap = cap;
    memcpy(c->data, p, len);
    if (t->tail)
      t->tail->next = c;
    else
      t->head = c;
    t->tail = c;
    t->st.queue_mem += cap;
    if (t->st.queue_mem > t->st.queue_mem_max)
      t->st.queue_mem_max = t->st.queue_mem;
  }
  t->st.queued += len;
  return 0;
}

/* The queue emptied: finish a pending half-close or a flushing close. */
static void tr_after_flush(poller_transport *t) {
  if (t->head)
    return;
  if (t->shut_req && !t->shut_done) {
    t->shut_done = 1;
    if (t->is_sock)
      (void)shutdown(t->fd, SHUT_WR);
  }
  if (t->closing)
    tr_close_now(t);
}

/* ---- the handlers, called by the loop ---- */

static void tr_connected(poller_transport *t, unsigned events) {
  int soerr = 0;
  socklen_t sl = sizeof soerr;
  if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
    soerr = errno;
  if (soerr == 0 && !(events & POLLER_OUT)) {
    /* ERR|HUP without OUT: a refused connect as epoll reports it
     * (tornado#223) after SO_ERROR was already consumed; a peek gives
     * the real reason when one is left. */
    char c;
    if (recv(t->fd, &c, 1, MSG_PEEK) < 0 && errno != EAGAIN &&
        errno != EWOULDBLOCK)
      soerr = errno;
    else
      soerr = ECONNREFUSED;
  }
  if (soerr != 0) {
    tr_fail(t, -soerr);
    return;
  }
  (void)poller_timer_stop(&t->timeout);
  t->state = TR_OPEN;
  tr_update(t);
  if (t->cbs.on_connect && !t->closing) {
    t->refs++;
    t->cbs.on_connect(t);
    t->refs--;
  }
}

static void tr_read(poller_transport *t) {
  char buf[TR_READ_SIZE];
  for (int i = 0; i < TR_READS_PER_EVENT; i++) {
    /* A handler may have closed the transport, paused it, or closed the
     * whole loop (then no callback runs any more). */
    if (t->state != TR_OPEN || t->paused || t->eof || t->closing ||
        poller_loop_closing(t->loop))
      return;
    ssize_t n = t->is_sock ? recv(t->fd, buf, sizeof buf, 0)
                           : read(t->fd, buf, sizeof buf);
    if (n > 0) {
      t->st.bytes_read += (unsigned long long)n;
      if (t->cbs.on_read) {
        t->refs++;
        t->cbs.on_read(t, buf, (size_t)n);
        t->refs--;
      }
      if ((size_t)n < sizeof buf)
        return; /* most likely drained; the loop reports any rest */
      continue;
    }
    if (n == 0) {
      t->eof = 1;
      tr_update(t);
      if (t->cbs.on_close) {
        t->refs++;
        t->cbs.on_close(t);
        t->refs--;
      } else {
        poller_transport_close(t, 1);
      }
      return;
    }
    if (errno == EINTR) {
      i--;
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return;
    tr_fail(t, -errno);
    return;
  }
}

static void tr_write_ready(poller_transport *t) {
  int rc = tr_flush(t);
  if (rc < 0) {
    tr_fail(t, rc);
    return;
  }
  tr_after_flush(t);
  if (t->state == TR_CLOSED)
    return;
  tr_update(t);
  tr_call_drain(t);
}

static void tr_io(poller_loop *loop, int fd, unsigned events, void *arg) {
  poller_transport *t = arg;
  (void)loop;
  (void)fd;
  if (t->state == TR_CLOSED)
    return;
  t->refs++;
  if (events & POLLER_NVAL) {
    /* The loop stopped watching the fd (its registration was refused,
     * and the loop deleted it): nothing would ever be reported for this
     * transport again, so it fails now, once: -EBADF when the fd was
     * closed behind it, -EIO when the kernel refused to keep watching
     * it. */
    t->watching = 0;
    tr_fail(t, fcntl(t->fd, F_GETFD) < 0 ? -EBADF : -EIO);
    tr_unref(t);
    return;
  }
  if (t->state == TR_CONNECTING) {
    tr_connected(t, events);
  } else {
    int reading = !t->paused && !t->eof && !t->closing && !t->no_read;
    if (reading &&
        (events & (POLLER_IN | POLLER_HUP | POLLER_ERR | POLLER_RDHUP)))
      tr_read(t);
    if (poller_loop_closing(t->loop)) {
      tr_unref(t);
      return; /* a read handler closed the loop: nothing more runs */
    }
    if (t->state == TR_OPEN &&
        (events & (POLLER_OUT | POLLER_ERR | POLLER_HUP)) &&
        (t->head || (t->shut_req && !t->shut_done) || t->closing))
      tr_write_ready(t);
    else if (t->state == TR_OPEN && !reading &&
             (events & (POLLER_ERR | POLLER_HUP)) && !t->head) {
      /* Not reading and nothing to write, yet the kernel reports an error
       * or hang-up (poll reports them regardless of interest): collect
       * the socket's error so the report is consumed, not repeated. */
      int soerr = 0;
      socklen_t sl = sizeof soerr;
      (void)getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
      if (soerr)
        tr_fail(t, -soerr);
    }
  }
  tr_unref(t);
}

static void tr_timeout_cb(poller_timer *timer, void *arg) {
  poller_transport *t = arg;
  (void)timer;
  if (t->state == TR_CONNECTING) {
    t->refs++;
    tr_fail(t, -ETIMEDOUT);
    tr_unref(t);
  }
}

/* The defer timer: reports an error found outside the loop (a connect
 * refused at once, a failed write), or frees a closed transport. */
static void tr_defer_cb(poller_timer *timer, void *arg) {
  poller_transport *t = arg;
  (void)timer;
  if (t->state == TR_CLOSED) {
    if (t->refs == 0) {
      tr_unregister(&t->node);
      free(t);
    }
    return;
  }
  if (t->pending_err) {
    t->refs++;
    tr_fail(t, t->pending_err);
    tr_unref(t);
  }
}

/* ---- public transport API ---- */

static poller_transport *tr_new(poller_loop *loop, int fd,
                                const poller_transport_cbs *cbs, void *data) {
  poller_transport *t = calloc(1, sizeof *t);
  if (!t)
    return NULL;
  t->loop = loop;
  t->fd = fd;
  t->cbs = *cbs;
  t->data = data;
  t->high = 65536;
  t->low = 16384;
  int type;
  socklen_t sl = sizeof type;
  t->is_sock = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &sl) == 0;
  poller_timer_init(&t->timeout, tr_timeout_cb, t);
  poller_timer_init(&t->defer, tr_defer_cb, t);
  return t;
}

int poller_transport_adopt(poller_loop *loop, poller_transport **t, int fd,
                           const poller_transport_cbs *cbs, void *data) {
  if (t)
    *t = NULL;
  if (!loop || !t || !cbs)
    return -EFAULT;
  if (fd < 0)
    return -EBADF;
  int rc = tr_nonblock_cloexec(fd);
  if (rc < 0)
    return rc;
  struct tr_registry *reg = tr_registry_of(loop);
  if (!reg)
    return -ENOMEM;
  poller_transport *n = tr_new(loop, fd, cbs, data);
  if (!n)
    return -ENOMEM;
  if (n->is_sock)
    tr_nosigpipe(fd);
  /* A write-only descriptor (a pipe's write end) is never read: reading
   * it would fail with EBADF, and poll would report its error over and
   * over while nothing is queued. */
  int fl = fcntl(fd, F_GETFL);
  n->no_read = fl >= 0 && (fl & O_ACCMODE) == O_WRONLY;
  n->state = TR_OPEN;
  if (!n->no_read) {
    rc = poller_io_start(loop, fd, POLLER_IN, tr_io, n);
    if (rc < 0) {
      free(n);
      return rc;
    }
    n->watching = POLLER_IN;
  }
  tr_register(reg, &n->node, TR_KIND_TRANSPORT);
  *t = n;
  return 0;
}

int poller_transport_connect(poller_loop *loop, poller_transport **t,
                             const struct sockaddr *sa, socklen_t len,
                             int timeout_ms, const poller_transport_cbs *cbs,
                             void *data) {
  if (t)
    *t = NULL;
  if (!loop || !t || !sa || !cbs)
    return -EFAULT;
  if (len < (socklen_t)sizeof(sa_family_t) ||
      len > (socklen_t)sizeof(struct sockaddr_storage))
    return -EINVAL;
  int fam = sa->sa_family;
  if (fam != AF_INET && fam != AF_INET6 && fam != AF_UNIX)
    return -EAFNOSUPPORT;
  struct tr_registry *reg = tr_registry_of(loop);
  if (!reg)
    return -ENOMEM;
  int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  tr_nosigpipe(fd);
  if (fam != AF_UNIX) {
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  poller_transport *n = tr_new(loop, fd, cbs, data);
  if (!n) {
    close(fd);
    return -ENOMEM;
  }
  n->is_sock = 1;
  n->state = TR_CONNECTING;
  int rc;
  do
    rc = connect(fd, sa, len);
  while (rc < 0 && errno == EINTR);
  /* EAGAIN is not "in progress": an AF_UNIX listener with a full backlog,
   * or no ephemeral TCP port left.  Nothing was started, so it ends in
   * on_error(-EAGAIN) below, like any connect refused at once. */
  if (rc == 0 || errno == EINPROGRESS) {
    /* Even a connect that completed at once (Unix sockets) is reported
     * from the loop: the socket is writable right away. */
    rc = poller_io_start(loop, fd, POLLER_OUT, tr_io, n);
    if (rc < 0) {
      free(n);
      close(fd);
      return rc;
    }
    n->watching = POLLER_OUT;
  } else if (errno == EBADF || errno == EFAULT || errno == ENOTSOCK ||
             errno == EAFNOSUPPORT || errno == EINVAL) {
    /* Argument errors are the caller's; nothing was started. */
    rc = -errno;
    free(n);
    close(fd);
    return rc;
  } else {
    /* Refused at once (ECONNREFUSED, ENOENT on a Unix path...): the error
     * callback still comes from the loop, never from inside this call. */
    n->pending_err = -errno;
    rc = poller_timer_start(loop, &n->defer, 0, 0);
    if (rc < 0) {
      free(n);
      close(fd);
      return rc;
    }
  }
  if (timeout_ms > 0 && n->pending_err == 0) {
    /* The loop's clock is cached per iteration; a connect started after a
     * long handler would otherwise time out early. */
    poller_loop_update_time(loop);
    rc = poller_timer_start(loop, &n->timeout, (uint64_t)timeout_ms, 0);
    if (rc < 0) {
      (void)poller_io_stop(loop, fd);
      free(n);
      close(fd);
      return rc;
    }
  }
  tr_register(reg, &n->node, TR_KIND_TRANSPORT);
  *t = n;
  return 0;
}

int poller_transport_write(poller_transport *t, const void *buf, size_t len) {
  if (!t || (!buf && len > 0))
    return -EFAULT;
  if (t->state == TR_CLOSED || t->closing || t->shut_req)
    return -EPIPE;
  if (t->pending_err)
    return t->pending_err;
  if (len == 0)
    return 0;
  const char *p = buf;
  if (t->state == TR_OPEN && !t->head) {
    /* Nothing queued: the kernel takes what it can right now. */
    for (;;) {
      struct iovec one = {(void *)(uintptr_t)p, len};
      ssize_t w = t->is_sock ? send(t->fd, p, len, MSG_NOSIGNAL)
                             : tr_writev_nosigpipe(t->fd, &one, 1);
      if (w >= 0) {
        t->st.bytes_written += (unsigned long long)w;
        p += w;
        len -= (size_t)w;
        if (len == 0)
          return 0;
        continue;
      }
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      /* Broken (ECONNRESET, EPIPE): the error reaches on_error from the
       * loop, once; reading and writing stop now. */
      int err = -errno;
      t->pending_err = err;
      tr_update(t);
      if (t->watching)
        (void)poller_io_stop(t->loop, t->fd);
      t->watching = 0;
      (void)poller_timer_start(t->loop, &t->defer, 0, 0);
      return err;
    }
  }
  int rc = tr_append(t, p, len);
  if (rc < 0)
    return rc;
  tr_update(t);
  if (!t->above_high && tr_queued(t) > t->high) {
    t->above_high = 1;
    t->st.high_water++;
    if (t->cbs.on_high_water) {
      t->refs++;
      t->cbs.on_high_water(t, tr_queued(t));
      tr_unref(t);
    }
  }
  return 0;
}

int poller_transport_set_water(poller_transport *t, size_t high, size_t low) {
  if (!t)
    return -EFAULT;
  if (low > high)
    return -EINVAL;
  t->high = high;
  t->low = low;
  return 0;
}

int poller_transport_pause(poller_transport *t) {
  if (!t)
    return -EFAULT;
  if (t->state == TR_CLOSED)
    return -EPIPE;
  t->paused = 1;
  tr_update(t);
  return 0;
}

int poller_transport_resume(poller_transport *t) {
  if (!t)
    return -EFAULT;
  if (t->state == TR_CLOSED)
    return -EPIPE;
  t->paused = 0;
  tr_update(t);
  return 0;
}

int poller_transport_shutdown(poller_transport *t) {
  if (!t)
    return -EFAULT;
  if (t->state == TR_CLOSED || t->closing)
    return -EPIPE;
  if (t->state == TR_CONNECTING)
    return -ENOTCONN;
  if (t->shut_req)
    return 0;
  t->shut_req = 1;
  tr_after_flush(t);
  tr_update(t);
  return 0;
}

/* Closes the fd and releases the queue now; the struct itself goes when no
 * handler of it is on the stack (tr_unref, tr_defer_cb). */
static void tr_close_now(poller_transport *t) {
  if (t->state == TR_CLOSED)
    return;
  t->state = TR_CLOSED;
  t->closing = 1;
  (void)poller_timer_stop(&t->timeout);
  (void)poller_timer_stop(&t->defer);
  if (t->watching)
    (void)poller_io_stop(t->loop, t->fd);
  t->watching = 0;
  close(t->fd);
  t->fd = -1;
  while (t->head) {
    struct tr_chunk *c = t->head;
    t->head = c->next;
    free(c);
  }
  t->tail = NULL;
  t->st.queued = 0;
  t->st.queue_mem = 0;
  if (t->refs == 0 && !t->free_sched) {
    t->free_sched = 1;
    (void)poller_timer_start(t->loop, &t->defer, 0, 0);
  }
}

void poller_transport_close(poller_transport *t, int flush) {
  if (!t || t->state == TR_CLOSED)
    return;
  /* A flushing close waits for the queue; while connecting, for the
   * connect first (a failed connect then just closes, silently). */
  if (flush && t->head && t->pending_err == 0) {
    t->closing = 1;
    tr_update(t);
    return;
  }
  t->closing = 1;
  tr_close_now(t);
}

int poller_transport_fd(const poller_transport *t) { return t ? t->fd : -1; }
void *poller_transport_data(const poller_transport *t) {
  return t ? t->data : NULL;
}
void poller_transport_set_data(poller_transport *t, void *data) {
  if (t)
    t->data = data;
}
poller_loop *poller_transport_loop(const poller_transport *t) {
  return t ? t->loop : NULL;
}
size_t poller_transport_queued(const poller_transport *t) {
  return t ? t->st.queued : 0;
}
int poller_transport_stats_get(const poller_transport *t,
                               poller_transport_stats *st) {
  if (!t || !st)
    return -EFAULT;
  *st = t->st;
  return 0;
}

/* ---- addresses ---- */

int poller_sockaddr_parse(const char *addr, struct sockaddr_storage *ss,
                          socklen_t *len) {
  if (!addr || !ss || !len)
    return -EFAULT;
  memset(ss, 0, sizeof *ss);
  if (strncmp(addr, "unix:", 5) == 0) {
    struct sockaddr_un *un = (struct sockaddr_un *)ss;
    const char *path = addr + 5;
    size_t n = strlen(path);
    if (n == 0)
      return -EINVAL;
    if (n >= sizeof un->sun_path)
      return -ENAMETOOLONG;
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, n);
    if (path[0] == '@') {
      /* A Linux abstract name: a leading NUL, length without a final NUL. */
      un->sun_path[0] = '\0';
      *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
      *len = (socklen_t)sizeof *un;
    }
    return 0;
  }
  char host[INET6_ADDRSTRLEN + 2];
  const char *colon;
  const char *h = addr;
  size_t hl;
  if (addr[0] == '[') {
    const char *close = strchr(addr, ']');
    if (!close || close[1] != ':')
      return -EINVAL;
    h = addr + 1;
    hl = (size_t)(close - h);
    colon = close + 1;
  } else {
    colon = strrchr(addr, ':');
    if (!colon)
      return -EINVAL;
    hl = (size_t)(colon - addr);
  }
  if (hl == 0 || hl >= sizeof host)
    return -EINVAL;
  memcpy(host, h, hl);
  host[hl] = '\0';
  char *end;
  errno = 0;
  long port = strtol(colon + 1, &end, 10);
  if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535)
    return -EINVAL;
  struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons((uint16_t)port);
    *len = (socklen_t)sizeof *in4;
    return 0;
  }
  memset(ss, 0, sizeof *ss);
  if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    *len = (socklen_t)sizeof *in6;
    return 0;
  }
  return -EINVAL;
}

int poller_sockaddr_format(const struct sockaddr *sa, socklen_t len,
                           char *buf, size_t size) {
  if (!sa || !buf || size == 0)
    return -EFAULT;
  char host[INET6_ADDRSTRLEN];
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host);
    snprintf(buf, size, "%s:%u", host, ntohs(in4->sin_port));
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    snprintf(buf, size, "[%s]:%u", host, ntohs(in6->sin6_port));
  } else if (sa->sa_family == AF_UNIX) {
    const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
    size_t off = offsetof(struct sockaddr_un, sun_path);
    size_t n = len > 0 && (size_t)len > off ? (size_t)len - off : 0;
    if (n > 0 && un->sun_path[0] == '\0')
      snprintf(buf, size, "unix:@%.*s", (int)(n - 1), un->sun_path + 1);
    else
      snprintf(buf, size, "unix:%.*s", (int)strnlen(un->sun_path, n),
               un->sun_path);
  } else {
    return -EAFNOSUPPORT;
  }
  return 0;
}

/* ---- listeners ---- */

struct poller_listener {
  struct tr_node node; /* first: the registry links it */
  poller_loop *loop;
  int fd;
  int reserve; /* /dev/null, given up to accept one connection on EMFILE */
  int refs;
  int closed;
  int watching;
  int free_sched;
  poller_accept_cb cb;
  void *data;
  unsigned long long shed, paused;
  poller_timer retry; /* accepting paused for lack of descriptors */
  poller_timer defer; /* the free */
};

static int ls_reserve(void) {
  return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void ls_io(poller_loop *loop, int fd, unsigned events, void *arg);

static void ls_unref(poller_listener *l) {
  if (--l->refs == 0 && l->closed && !l->free_sched) {
    l->free_sched = 1;
    (void)poller_timer_start(l->loop, &l->defer, 0, 0);
  }
}

/* Stops watching the listener and retries later: the connection stays
 * queued, so a level-triggered listener would otherwise be reported ready
 * at once, again and again (libuv#690). */
static void ls_pause(poller_listener *l) {
  if (l->watching) {
    (void)poller_io_stop(l->loop, l->fd);
    l->watching = 0;
  }
  l->paused++;
  (void)poller_timer_start(l->loop, &l->retry, TR_ACCEPT_RETRY_MS, 0);
}

static void ls_pause(poller_listener *l);

static void ls_io(poller_loop *loop, int fd, unsigned events, void *arg) {
  poller_listener *l = arg;
  (void)loop;
  (void)fd;
  if (l->closed)
    return;
  if (events & POLLER_NVAL) {
    /* The listening socket's registration was refused (the loop deleted
     * it): watch it again from the retry timer, as when descriptors ran
     * out. */
    l->watching = 0;
    ls_pause(l);
    return;
  }
  l->refs++;
  for (int i = 0; i < TR_ACCEPTS_PER_EVENT && !l->closed &&
                  !poller_loop_closing(l->loop);
       i++) {
    int c = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0) {
      if (l->cb)
        l->cb(l, c, l->data);
      else
        close(c);
      continue;
    }
    int e = errno;
    if (e == EAGAIN || e == EWOULDBLOCK)
      break;
    if (e == EINTR || e == ECONNABORTED || e == EPROTO)
      continue;
    if ((e == EMFILE || e == ENFILE) && l->reserve >= 0) {
      /* The reserve trick (libuv#315): free one descriptor, take the
       * connection off the queue and drop it, take the reserve back. */
      close(l->reserve);
      l->reserve = -1;
      c = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
      int e2 = errno;
      if (c >= 0) {
        close(c);
        l->shed++;
      }
      l->reserve = ls_reserve();
      /* Linux checks for a free descriptor before looking at the queue,
       * so EMFILE does not mean a connection is waiting: with the reserve
       * given up, EAGAIN says the queue is empty. */
      if (l->reserve >= 0 && c >= 0)
        continue;
      if (l->reserve >= 0 && (e2 == EAGAIN || e2 == EWOULDBLOCK))
        break;
    }
    /* No reserve, or another error (ENOBUFS, ENOMEM): wait on a timer. */
    ls_pause(l);
    break;
  }
  ls_unref(l);
}

static void ls_retry_cb(poller_timer *timer, void *arg) {
  poller_listener *l = arg;
  (void)timer;
  if (l->closed)
    return;
  if (l->reserve < 0)
    l->reserve = ls_reserve();
  if (!l->watching) {
    if (poller_io_start(l->loop, l->fd, POLLER_IN, ls_io, l) == 0)
      l->watching = 1;
    else
      (void)poller_timer_start(l->loop, &l->retry, TR_ACCEPT_RETRY_MS, 0);
  }
}

static void ls_defer_cb(poller_timer *timer, void *arg) {
  poller_listener *l = arg;
  (void)timer;
  if (l->closed && l->refs == 0) {
    tr_unregister(&l->node);
    free(l);
  }
}

int poller_listener_adopt(poller_loop *loop, poller_listener **l, int fd,
                          poller_accept_cb cb, void *data) {
  if (l)
    *l = NULL;
  if (!loop || !l)
    return -EFAULT;
  if (fd < 0)
    return -EBADF;
  int acc = 0;
  socklen_t sl = sizeof acc;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &sl) < 0)
    return errno == ENOTSOCK ? -EINVAL : -errno;
  if (!acc)
    return -EINVAL;
  int rc = tr_nonblock_cloexec(fd);
  if (rc < 0)
    return rc;
  struct tr_registry *reg = tr_registry_of(loop);
  if (!reg)
    return -ENOMEM;
  poller_listener *n = calloc(1, sizeof *n);
  if (!n)
    return -ENOMEM;
  n->loop = loop;
  n->fd = fd;
  n->cb = cb;
  n->data = data;
  n->reserve = ls_reserve(); /* -1 is tolerated: the timer path remains */
  poller_timer_init(&n->retry, ls_retry_cb, n);
  poller_timer_init(&n->defer, ls_defer_cb, n);
  rc = poller_io_start(loop, fd, POLLER_IN, ls_io, n);
  if (rc < 0) {
    if (n->reserve >= 0)
      close(n->reserve);
    free(n);
    return rc;
  }
  n->watching = 1;
  tr_register(reg, &n->node, TR_KIND_LISTENER);
  *l = n;
  return 0;
}

int poller_listener_open(poller_loop *loop, poller_listener **l,
                         const struct sockaddr *sa, socklen_t len,
                         int backlog, poller_accept_cb cb, void *data) {
  if (l)
    *l = NULL;
  if (!loop || !l || !sa)
    return -EFAULT;
  if (len < (socklen_t)sizeof(sa_family_t) ||
      len > (socklen_t)sizeof(struct sockaddr_storage))
    return -EINVAL;
  int fam = sa->sa_family;
  if (fam != AF_INET && fam != AF_INET6 && fam != AF_UNIX)
    return -EAFNOSUPPORT;
  int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  int one = 1;
  if (fam != AF_UNIX)
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fam == AF_INET6)
    (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  int rc = 0;
  if (bind(fd, sa, len) < 0 ||
      listen(fd, backlog > 0 ? backlog : SOMAXCONN) < 0)
    rc = -errno;
  if (rc == 0)
    rc = poller_listener_adopt(loop, l, fd, cb, data);
  if (rc < 0)
    close(fd);
  return rc;
}

int poller_listener_address(const poller_listener *l,
                            struct sockaddr_storage *ss, socklen_t *len) {
  if (!l || !ss || !len)
    return -EFAULT;
  if (l->closed)
    return -EBADF;
  *len = sizeof *ss;
  if (getsockname(l->fd, (struct sockaddr *)ss, len) < 0)
    return -errno;
  return 0;
}

int poller_listener_fd(const poller_listener *l) {
  return l && !l->closed ? l->fd : -1;
}
poller_loop *poller_listener_loop(const poller_listener *l) {
  return l ? l->loop : NULL;
}
unsigned long long poller_listener_shed(const poller_listener *l) {
  return l ? l->shed : 0;
}
unsigned long long poller_listener_paused(const poller_listener *l) {
  return l ? l->paused : 0;
}

void poller_listener_close(poller_listener *l) {
  if (!l || l->closed)
    return;
  l->closed = 1;
  (void)poller_timer_stop(&l->retry);
  if (l->watching)
    (void)poller_io_stop(l->loop, l->fd);
  l->watching = 0;
  close(l->fd);
  l->fd = -1;
  if (l->reserve >= 0)
    close(l->reserve);
  l->reserve = -1;
  if (l->refs == 0 && !l->free_sched) {
    l->free_sched = 1;
    (void)poller_timer_start(l->loop, &l->defer, 0, 0);
  }
}

/* The loop's close hook, run by poller_loop_close before it releases
 * anything: closes every transport and listener of the loop without
 * callbacks (queues discarded) and frees them, including those closed
 * earlier whose deferred free the loop will now never run; then the
 * registry itself. */
static void tr_loop_closing(poller_loop_hook *hook, void *arg) {
  struct tr_registry *r = arg;
  (void)hook;
  struct tr_node *n, *next;
  for (n = r->head.next; n != &r->head; n = next) {
    next = n->next;
    if (n->kind == TR_KIND_TRANSPORT) {
      poller_transport *t = (poller_transport *)n;
      t->closing = 1;
      tr_close_now(t);
      (void)poller_timer_stop(&t->defer);
    } else {
      poller_listener *l = (poller_listener *)n;
      poller_listener_close(l);
      (void)poller_timer_stop(&l->defer);
    }
    tr_unregister(n);
    free(n);
  }
  free(r);
}
