/* SPDX-License-Identifier: MIT */
/*
 * engine.c - runs one operation sequence on every selected backend at once
 * and checks each result against a model.
 *
 * All pollers watch the same files (the same fd numbers are registered in
 * each), so their readiness is identical and their answers must agree.
 * The model has two parts:
 *  - the registration table of each poller (per backend, because after a
 *    close without poller_del the backends may legitimately differ: such a
 *    registration is a "ghost", checked only loosely);
 *  - the readiness of each file, taken from poll(2) with timeout 0 right
 *    before and right after the waits of one operation.  When the two
 *    agree, readiness did not move during the waits and level reports are
 *    checked exactly: a wait with room for every report must report each
 *    ready registration once with exactly the bits the kernel gives.
 * Edge-triggered and one-shot registrations are checked for what holds on
 * every backend: ONESHOT reports at most once until re-armed, ET does not
 * report again while nothing happened to the file.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "engine.h"

#include "poller.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const struct fz_known_info fz_known_list[] = {
    {FZ_KNOWN_CORE_2, "KNOWN_ISSUE_CORE_2",
     "issue 8 item 2: IN may be missing beside HUP"},
    {FZ_KNOWN_CORE_3, "KNOWN_ISSUE_CORE_3",
     "issue 8 item 3: no fork+reinit while a closed number is registered"},
    {FZ_KNOWN_CORE_4, "KNOWN_ISSUE_CORE_4",
     "issue 8 item 4: poller_current of an NVAL report after del"},
    {FZ_KNOWN_CORE_5, "KNOWN_ISSUE_CORE_5",
     "issue 8 item 5: fewer reports than ready with an always-ready file"},
    {FZ_KNOWN_CORE_7, "KNOWN_ISSUE_CORE_7",
     "issue 8 item 7: emulated ET may repeat a hang-up (select)"},
    {FZ_KNOWN_EPOLL_8, "KNOWN_ISSUE_EPOLL_8",
     "issue 8 item 8: no mod/push/pop of a number replaced by dup2"},
    {FZ_KNOWN_EPOLL_9, "KNOWN_ISSUE_EPOLL_9",
     "issue 8 item 9: add may give EEXIST after del of a closed number"},
    {FZ_KNOWN_URING_13, "KNOWN_ISSUE_URING_13",
     "issue 8 items 13, 17, 19: io_uring level reports are not exact"},
    {FZ_KNOWN_URING_14, "KNOWN_ISSUE_URING_14",
     "issue 8 item 14: no spin check on io_uring"},
    {FZ_KNOWN_URING_15, "KNOWN_ISSUE_URING_15",
     "issue 8 item 15: io_uring may report PRI for data"},
    {FZ_KNOWN_URING_16, "KNOWN_ISSUE_URING_16",
     "issue 8 item 16: io_uring may report NVAL for /dev/null"},
    {FZ_KNOWN_URING_12, "KNOWN_ISSUE_URING_12",
     "issue 8 item 12: io_uring may keep a deleted ET poll armed"},
    {FZ_KNOWN_CORE_1, "KNOWN_ISSUE_CORE_1",
     "issue 8 item 1: no poller_next from INT_MAX (it crashes)"},
    {FZ_KNOWN_EPOLL_REBUILD, "KNOWN_ISSUE_EPOLL_REBUILD_ET",
     "new (issue 8 item 10's rebuild): after a ghost rebuild epoll reports "
     "ET registrations again with nothing changed"},
    {FZ_KNOWN_EPOLL_STALE, "KNOWN_ISSUE_EPOLL_STALE_SLOT",
     "new (the class of issue 8 item 5): a stale report of a ghost takes a "
     "slot and ends a zero-timeout wait short"},
    {FZ_KNOWN_URING_LATE, "KNOWN_ISSUE_URING_LATE",
     "new (the class of issue 8 items 13 and 17): io_uring misses a "
     "readiness that poll(2) already shows, reported one wait late"},
    {0, NULL, NULL}};

/* Issue 8's items 1-19, the epoll rebuild and stale-slot defects and the
 * io_uring late reports are fixed on main: nothing is relaxed. */
const unsigned fz_known_default = 0;

static const char *const type_names[FZ_NTYPES] = {
    "new",   "add",   "mod",    "del",       "push",  "pop",  "get",   "next",
    "count", "flush", "wakeup", "wait",      "write", "read", "drain", "fill",
    "shut",  "oob",   "close",  "close_del", "dup",   "dup2", "fork"};

const char *fz_type_name(int type) {
  return type >= 0 && type < FZ_NTYPES ? type_names[type] : "?";
}

int fz_type_from_name(const char *name) {
  for (int i = 0; i < FZ_NTYPES; i++)
    if (strcmp(name, type_names[i]) == 0)
      return i;
  return -1;
}

/* ---- generation ---- */

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* Relative weights of the operation types in generated sequences. */
static const int weights[FZ_NTYPES] = {
    [FZ_NEW] = 8,   [FZ_ADD] = 14,  [FZ_MOD] = 8,    [FZ_DEL] = 4,
    [FZ_PUSH] = 4,  [FZ_POP] = 4,   [FZ_GET] = 2,    [FZ_NEXT] = 2,
    [FZ_COUNT] = 1, [FZ_FLUSH] = 2, [FZ_WAKEUP] = 2, [FZ_WAIT] = 22,
    [FZ_WRITE] = 9, [FZ_READ] = 5,  [FZ_DRAIN] = 4,  [FZ_FILL] = 2,
    [FZ_SHUT] = 2,  [FZ_OOB] = 2,   [FZ_CLOSE] = 2,  [FZ_CLOSE_DEL] = 3,
    [FZ_DUP] = 2,   [FZ_DUP2] = 2,  [FZ_FORK] = 1};

void fz_generate(uint64_t seed, struct fz_op *ops, int n) {
  uint64_t s = seed * 0x2545f4914f6cdd1dULL + 1;
  int total = 0;
  for (int t = 0; t < FZ_NTYPES; t++)
    total += weights[t];
  for (int i = 0; i < n; i++) {
    uint64_t r = splitmix(&s);
    int pick = (int)(r % (uint64_t)(total * 4));
    int t = 0;
    /* fork is four times rarer than its weight says. */
    for (;; t++) {
      int w = weights[t] * (t == FZ_FORK ? 1 : 4);
      if (pick < w)
        break;
      pick -= w;
      if (t == FZ_NTYPES - 1)
        break;
    }
    uint64_t r2 = splitmix(&s);
    ops[i].type = (uint8_t)t;
    ops[i].a = (uint32_t)r2;
    ops[i].b = (uint32_t)(r2 >> 32);
    ops[i].c = (uint32_t)splitmix(&s);
  }
}

int fz_decode(const uint8_t *data, size_t size, struct fz_op *ops, int max) {
  int n = 0;
  while (size >= 4 && n < max) {
    ops[n].type = (uint8_t)(data[0] % FZ_NTYPES);
    ops[n].a = data[1] * 2654435761u;
    ops[n].b = data[2] * 40503u + data[1];
    ops[n].c = data[3] * 2246822519u + data[2];
    n++;
    data += 4;
    size -= 4;
  }
  return n;
}

/* ---- state ---- */

#define MAXB 6         /* enum poller_backend values */
#define NFD 1200       /* fd numbers the model covers */
#define HIGH_BASE 1030 /* numbers above FD_SETSIZE (1024) */
#define MAXOBJ 24      /* live descriptors at most */
#define MAXDESC 256    /* open file descriptions over a run */
#define MAXDEPTH 6     /* registration stack depth the model allows */
#define MAXREP 64      /* reports per wait */

enum kind { K_UNIX, K_PIPE_R, K_PIPE_W, K_EVENTFD, K_TCP, K_FILE, K_NULL };
static const char *const kind_names[] = {"unix", "pipe_r", "pipe_w", "eventfd",
                                         "tcp",  "file",   "null"};

struct desc {
  int kind;
  int peer;       /* the other end's description, or -1 */
  int refs;       /* our fds open on it */
  unsigned touch; /* bumped by every operation on it or its peer */
  /* Closed by us while an io_uring registration held it: io_uring's poll
   * requests keep a reference, so the file is released (and its peer
   * woken) at some later io_uring call, not at our close. */
  int held;
};

struct obj {
  int fd;
  int desc;
};

struct reg {
  int depth; /* 0: not registered */
  unsigned ev[MAXDEPTH];
  void *data[MAXDEPTH];
  unsigned gen;
  int ghost;   /* the number was closed or replaced since the add */
  int fired;   /* ONESHOT reported, not re-armed */
  int et_seen; /* ET reported and nothing happened since */
  unsigned et_touch;
  unsigned et_ready;
  int nval;             /* an NVAL was reported */
  unsigned dropped_gen; /* dropped by the poller, its NVAL still due */
};

struct bk {
  int id;
  poller *p;
  struct reg *reg; /* NFD entries */
  int count;
  int wake; /* a wakeup is pending */
  poller_event out[MAXREP];
  int n, max, rc;
  int exact_ok;   /* the last wait was checked exactly, with room */
  int rebuilt;    /* the last wait dropped stale reports (epoll rebuilds) */
  int stale_last; /* a rebuild's re-added edges may still be pending */
  int stale_now;  /* the last wait dropped stale reports */
  int nchg;       /* registration calls since the last wait */
};

struct st {
  const struct fz_config *cfg;
  struct bk b[MAXB];
  int nb;
  struct desc desc[MAXDESC];
  int ndesc;
  struct obj obj[MAXOBJ];
  int nobj;
  int listener; /* TCP listener on 127.0.0.1, opened on first use */
  int opi;      /* the operation being run */
  int failed;
  char *why;
  size_t whylen;
  unsigned r1[NFD], r2[NFD]; /* readiness before and after a wait */
  int datactr;
};

#define RB                                                                     \
  (POLLER_IN | POLLER_OUT | POLLER_PRI | POLLER_ERR | POLLER_HUP | POLLER_RDHUP)

static void fail(struct st *s, const char *check, const char *fmt, ...) {
  if (s->failed)
    return;
  s->failed = 1;
  int k = snprintf(s->why, s->whylen, "[%s] op %d: ", check, s->opi);
  if (k < 0 || (size_t)k >= s->whylen)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->why + k, s->whylen - (size_t)k, fmt, ap);
  va_end(ap);
}

static void trace(struct st *s, const char *fmt, ...) {
  if (!s->cfg->verbose)
    return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "  #%d ", s->opi);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static int known(struct st *s, unsigned bit) {
  return (s->cfg->known & bit) != 0;
}

static const char *bname(struct bk *b) { return poller_backend_name(b->id); }

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fd_open(int fd) { return fcntl(fd, F_GETFD) != -1; }

/* The readiness of fd as poll(2) sees it now, in POLLER bits. */
static unsigned ready_now(int fd) {
  struct pollfd pf = {fd, POLLIN | POLLOUT | POLLPRI | POLLRDHUP, 0};
  if (poll(&pf, 1, 0) != 1)
    return 0;
  unsigned r = 0;
  if (pf.revents & POLLIN)
    r |= POLLER_IN;
  if (pf.revents & POLLOUT)
    r |= POLLER_OUT;
  if (pf.revents & POLLPRI)
    r |= POLLER_PRI;
  if (pf.revents & POLLERR)
    r |= POLLER_ERR;
  if (pf.revents & POLLHUP)
    r |= POLLER_HUP;
  if (pf.revents & POLLRDHUP)
    r |= POLLER_RDHUP;
  return r;
}

static void snapshot(struct st *s, unsigned *r) {
  memset(r, 0, sizeof(unsigned) * NFD);
  for (int i = 0; i < s->nobj; i++)
    r[s->obj[i].fd] = ready_now(s->obj[i].fd);
}

static int obj_of_fd(struct st *s, int fd) {
  for (int i = 0; i < s->nobj; i++)
    if (s->obj[i].fd == fd)
      return i;
  return -1;
}

static void touch(struct st *s, int d) {
  s->desc[d].touch++;
  if (s->desc[d].peer >= 0)
    s->desc[s->desc[d].peer].touch++;
}

/* The peer of fd's file may be released at any io_uring call. */
static int peer_held(struct st *s, int fd) {
  int o = obj_of_fd(s, fd);
  if (o < 0)
    return 0;
  int pd = s->desc[s->obj[o].desc].peer;
  return pd >= 0 && s->desc[pd].held;
}

static unsigned touch_of(struct st *s, int fd) {
  int o = obj_of_fd(s, fd);
  if (o < 0)
    return 0;
  int d = s->obj[o].desc;
  unsigned t = s->desc[d].touch * 2654435761u;
  if (s->desc[d].peer >= 0)
    t += s->desc[s->desc[d].peer].touch;
  return t;
}

/* ---- files ---- */

static int new_desc(struct st *s, int kind) {
  if (s->ndesc >= MAXDESC)
    return -1;
  int d = s->ndesc++;
  s->desc[d] = (struct desc){kind, -1, 0, 0, 0};
  return d;
}

static int add_obj(struct st *s, int fd, int d, int high) {
  if (high) {
    int h = fcntl(fd, F_DUPFD_CLOEXEC, HIGH_BASE + high % 64);
    close(fd);
    fd = h;
  }
  if (fd < 0 || fd >= NFD) {
    if (fd >= 0)
      close(fd);
    return -1;
  }
  s->obj[s->nobj++] = (struct obj){fd, d};
  s->desc[d].refs++;
  /* A number that comes back stays a ghost in the model until del. */
  return fd;
}

static void set_bufs(int fd) {
  int sz = 4096;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
}

static int tcp_pair(struct st *s, int sv[2]) {
  struct sockaddr_in a = {.sin_family = AF_INET};
  socklen_t len = sizeof a;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (s->listener < 0) {
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0)
      return -1;
    if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 4) < 0) {
      close(l);
      return -1;
    }
    /* Out of the way of the numbers the operations pick. */
    int h = fcntl(l, F_DUPFD_CLOEXEC, NFD + 10);
    close(l);
    s->listener = h;
  }
  if (getsockname(s->listener, (struct sockaddr *)&a, &len) < 0)
    return -1;
  int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c < 0)
    return -1;
  set_bufs(c);
  if (connect(c, (struct sockaddr *)&a, sizeof a) < 0) {
    close(c);
    return -1;
  }
  int one = 1;
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int d = accept4(s->listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (d < 0) {
    close(c);
    return -1;
  }
  set_bufs(d);
  setsockopt(d, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(c, F_SETFL, O_NONBLOCK);
  sv[0] = c;
  sv[1] = d;
  return 0;
}

static void op_new(struct st *s, const struct fz_op *op) {
  if (s->nobj + 2 > MAXOBJ)
    return;
  int kind = (int)(op->a % 7),
      high = (op->b % 4 == 0) ? (int)(op->c % 64) + 1 : 0;
  int sv[2] = {-1, -1}, two = 0, k0 = kind, k1 = kind;
  switch (kind) {
  case K_UNIX:
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) <
        0)
      return;
    two = 1;
    break;
  case K_PIPE_R:
  case K_PIPE_W:
    if (pipe2(sv, O_NONBLOCK | O_CLOEXEC) < 0)
      return;
    two = 1;
    k0 = K_PIPE_R;
    k1 = K_PIPE_W;
    break;
  case K_EVENTFD:
    sv[0] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    break;
  case K_TCP:
    if (tcp_pair(s, sv) < 0)
      return;
    two = 1;
    break;
  case K_FILE: {
    char path[] = "/tmp/poller-fuzz-XXXXXX";
    sv[0] = mkostemp(path, O_CLOEXEC);
    if (sv[0] >= 0)
      unlink(path);
    break;
  }
  case K_NULL:
    sv[0] = open("/dev/null", O_RDWR | O_CLOEXEC | O_NONBLOCK);
    break;
  }
  if (sv[0] < 0)
    return;
  int d0 = new_desc(s, k0);
  int d1 = two ? new_desc(s, k1) : -1;
  if (d0 < 0 || (two && d1 < 0)) {
    close(sv[0]);
    if (two)
      close(sv[1]);
    return;
  }
  if (two) {
    s->desc[d0].peer = d1;
    s->desc[d1].peer = d0;
  }
  int f0 = add_obj(s, sv[0], d0, high);
  int f1 = two ? add_obj(s, sv[1], d1, high ? high + 1 : 0) : -1;
  trace(s, "new %s fd %d %d", kind_names[kind], f0, f1);
}

static void mark_held(struct st *s, int d, int fd) {
  if (s->desc[d].refs > 0)
    return;
  for (int i = 0; i < s->nb; i++)
    if (s->b[i].id == POLLER_URING && s->b[i].reg[fd].depth)
      s->desc[d].held = 1;
}

/* Closes our fd of object o (no poller call); the ghosts are marked. */
static void close_obj(struct st *s, int o) {
  int fd = s->obj[o].fd, d = s->obj[o].desc;
  for (int i = 0; i < s->nb; i++)
    if (s->b[i].reg[fd].depth)
      s->b[i].reg[fd].ghost = 1;
  close(fd);
  touch(s, d);
  s->desc[d].refs--;
  mark_held(s, d, fd);
  s->obj[o] = s->obj[--s->nobj];
}

/* Waits (bounded) until what an operation on a TCP description did is
 * visible at the peer, so that readiness is stable for the checks. */
static void settle_tcp(struct st *s, int d, short ev) {
  if (s->desc[d].kind != K_TCP || s->desc[d].peer < 0 || !ev)
    return;
  int pd = s->desc[d].peer;
  for (int i = 0; i < s->nobj; i++)
    if (s->obj[i].desc == pd) {
      struct pollfd pf = {s->obj[i].fd, ev, 0};
      poll(&pf, 1, 2000);
      return;
    }
}

static int pick_obj(struct st *s, uint32_t a) {
  return s->nobj ? (int)(a % (uint32_t)s->nobj) : -1;
}

static void op_file(struct st *s, const struct fz_op *op) {
  int o = pick_obj(s, op->a);
  if (o < 0)
    return;
  int fd = s->obj[o].fd, d = s->obj[o].desc, kind = s->desc[d].kind;
  char buf[8192];
  ssize_t r = 0;
  memset(buf, 'x', sizeof buf);
  switch (op->type) {
  case FZ_WRITE:
    if (kind == K_PIPE_R)
      return;
    if (kind == K_EVENTFD) {
      uint64_t v = 1 + op->b % 3;
      r = write(fd, &v, 8);
    } else {
      r = write(fd, buf, 1 + op->b % 100);
    }
    settle_tcp(s, d, POLLIN);
    break;
  case FZ_READ:
    if (kind == K_PIPE_W)
      return;
    r = read(fd, buf, kind == K_EVENTFD ? 8 : 1 + op->b % 200);
    break;
  case FZ_DRAIN:
    if (kind == K_PIPE_W || kind == K_FILE || kind == K_NULL)
      return;
    for (int i = 0; i < 10000; i++)
      if ((r = read(fd, buf, sizeof buf)) <= 0)
        break;
    break;
  case FZ_FILL:
    if (kind == K_PIPE_R || kind == K_FILE || kind == K_NULL)
      return;
    if (kind == K_EVENTFD) {
      for (uint64_t v = 0xfffffffffffffffeULL; v; v >>= 1)
        r = write(fd, &v, 8);
    } else {
      for (int i = 0; i < 2000; i++)
        if ((r = write(fd, buf, sizeof buf)) <= 0)
          break;
    }
    settle_tcp(s, d, POLLIN);
    break;
  case FZ_SHUT:
    if (kind != K_UNIX && kind != K_TCP)
      return;
    r = shutdown(fd, (int)(op->b % 3));
    settle_tcp(s, d, op->b % 3 == SHUT_RD ? 0 : POLLRDHUP);
    break;
  case FZ_OOB:
    if (kind != K_UNIX && kind != K_TCP)
      return;
    r = send(fd, "!", 1, MSG_OOB | MSG_DONTWAIT | MSG_NOSIGNAL);
    settle_tcp(s, d, POLLPRI);
    break;
  }
  touch(s, d);
  trace(s, "%s fd %d (%s) -> %zd", fz_type_name(op->type), fd, kind_names[kind],
        r);
}

/* ---- registration ---- */

static const unsigned masks[] = {
    POLLER_IN,
    POLLER_OUT,
    POLLER_IN | POLLER_OUT,
    POLLER_PRI,
    POLLER_IN | POLLER_PRI,
    POLLER_RDHUP,
    POLLER_IN | POLLER_RDHUP,
    POLLER_IN | POLLER_OUT | POLLER_RDHUP,
    POLLER_OUT | POLLER_PRI,
    POLLER_ERR,
    POLLER_HUP,
    POLLER_IN | POLLER_OUT | POLLER_PRI | POLLER_RDHUP | POLLER_ERR |
        POLLER_HUP,
    POLLER_IN,
    POLLER_IN | POLLER_OUT,
};

static unsigned pick_mask(uint32_t b, uint32_t c) {
  if (c % 41 == 0)
    return c % 2 ? 0 : 0x8000u; /* invalid */
  unsigned m = masks[b % (sizeof masks / sizeof masks[0])];
  switch ((b >> 8) % 8) {
  case 0:
  case 1:
    m |= POLLER_ET;
    break;
  case 2:
  case 3:
    m |= POLLER_ONESHOT;
    break;
  case 4:
    m |= POLLER_ET | POLLER_ONESHOT;
    break;
  }
  return m;
}

static int mask_ok(unsigned m) {
  return !(m & ~POLLER_INTEREST_MASK) && (m & RB);
}

/* The fd number an operation works on: a live fd, a registered number
 * (possibly a ghost) or a bad number. */
static int pick_fd(struct st *s, uint32_t a) {
  int cand[MAXOBJ + 64], n = 0;
  for (int i = 0; i < s->nobj; i++)
    cand[n++] = s->obj[i].fd;
  for (int fd = 0; fd < NFD && n < MAXOBJ + 60; fd++)
    if (s->nb && s->b[0].reg[fd].depth && obj_of_fd(s, fd) < 0)
      cand[n++] = fd;
  if (a % 23 == 0 || n == 0) {
    static const int bad[] = {-1, NFD - 1, INT_MAX, -7};
    return bad[(a / 23) % 4];
  }
  return cand[a % (uint32_t)n];
}

static void *new_data(struct st *s) {
  return (void *)(uintptr_t)(0x1000 + 16 * (uintptr_t)++s->datactr);
}

static int valid_fd(int fd) { return fd >= 0 && fd < NFD; }

/* Checks poller_get, poller_depth and poller_count against the model. */
static void check_key(struct st *s, struct bk *b, int fd) {
  poller_event key;
  memset(&key, 0, sizeof key);
  int r = poller_get(b->p, fd, &key);
  struct reg *g = valid_fd(fd) ? &b->reg[fd] : NULL;
  if (!g || !g->depth) {
    if (r != -ENOENT)
      fail(s, "get", "%s: get(%d) = %d, model: not registered", bname(b), fd,
           r);
    if (poller_depth(b->p, fd) != 0)
      fail(s, "depth", "%s: depth(%d) != 0 for an unregistered fd", bname(b),
           fd);
    return;
  }
  if (r != 0) {
    fail(s, "get", "%s: get(%d) = %d, model: registered (depth %d%s)", bname(b),
         fd, r, g->depth, g->ghost ? ", ghost" : "");
    return;
  }
  if (key.fd != fd || key.events != g->ev[g->depth - 1] ||
      key.data != g->data[g->depth - 1] || key.gen != g->gen)
    fail(s, "get", "%s: get(%d) = {%d, %#x, %p, gen %u}, model {%#x, %p, %u}",
         bname(b), fd, key.fd, key.events, key.data, key.gen,
         g->ev[g->depth - 1], g->data[g->depth - 1], g->gen);
  if (poller_depth(b->p, fd) != g->depth)
    fail(s, "depth", "%s: depth(%d) = %d, model %d", bname(b), fd,
         poller_depth(b->p, fd), g->depth);
}

static void check_count(struct st *s, struct bk *b) {
  if ((int)poller_count(b->p) != b->count)
    fail(s, "count", "%s: count = %zu, model %d", bname(b), poller_count(b->p),
         b->count);
}

static void check_rc(struct st *s, struct bk *b, const char *what, int fd,
                     int got, int want) {
  if (got != want)
    fail(s, what, "%s: %s(fd %d) = %d (%s), model %d (%s)", bname(b), what, fd,
         got, got ? strerror(-got) : "ok", want, want ? strerror(-want) : "ok");
}

static void reg_reset(struct reg *g) { memset(g, 0, sizeof *g); }

static void sync_dropped(struct st *s, struct bk *b);

static void op_reg(struct st *s, const struct fz_op *op) {
  int fd = pick_fd(s, op->a);
  unsigned m = pick_mask(op->b, op->c);
  void *data = new_data(s);
  int open = fd >= 0 && fd_open(fd);
  /* Issue 8 item 8: a number replaced behind the poller (dup2) and then
   * modified makes epoll spin or misreport. */
  if (known(s, FZ_KNOWN_EPOLL_8) && valid_fd(fd) && s->nb &&
      s->b[0].reg[fd].ghost &&
      (op->type == FZ_MOD || op->type == FZ_PUSH || op->type == FZ_POP))
    return;
  trace(s, "%s fd %d mask %#x", fz_type_name(op->type), fd, m);
  for (int i = 0; i < s->nb; i++) {
    struct bk *b = &s->b[i];
    struct reg *g = valid_fd(fd) ? &b->reg[fd] : NULL;
    int reg = g && g->depth;
    int r, want;
    switch (op->type) {
    case FZ_ADD:
      r = poller_add(b->p, fd, m, data);
      want = fd < 0        ? -EBADF
             : !mask_ok(m) ? -EINVAL
             : reg         ? -EEXIST
             : !open       ? -EBADF
                           : 0;
      if (want == 0 && r == -EEXIST && known(s, FZ_KNOWN_EPOLL_9) &&
          b->id == POLLER_EPOLL) {
        /* Issue 8 item 9: the kernel still holds the file. */
        continue;
      }
      check_rc(s, b, "add", fd, r, want);
      if (r == 0 && want == 0) {
        reg_reset(g);
        g->depth = 1;
        g->ev[0] = m;
        g->data[0] = data;
        poller_event key;
        if (poller_get(b->p, fd, &key) == 0)
          g->gen = key.gen;
        b->count++;
      }
      break;
    case FZ_MOD:
      r = poller_mod(b->p, fd, m, data);
      want = !mask_ok(m) ? -EINVAL : reg ? 0 : -ENOENT;
      check_rc(s, b, "mod", fd, r, want);
      if (r == 0 && want == 0) {
        /* A changed interest, or a re-armed ONESHOT, may report again. */
        if (g->ev[g->depth - 1] != m || (m & POLLER_ONESHOT) ||
            (g->ev[g->depth - 1] & POLLER_ONESHOT))
          g->et_seen = 0;
        g->ev[g->depth - 1] = m;
        g->data[g->depth - 1] = data;
        g->fired = 0;
        g->nval = 0;
      }
      break;
    case FZ_PUSH:
      if (reg && g->depth == MAXDEPTH)
        return;
      r = poller_push(b->p, fd, m, data);
      want = fd < 0        ? -EBADF
             : !mask_ok(m) ? -EINVAL
             : reg         ? 0
             : !open       ? -EBADF
                           : 0;
      check_rc(s, b, "push", fd, r, want);
      if (r == 0 && want == 0) {
        if (!reg) {
          reg_reset(g);
          b->count++;
        }
        g->ev[g->depth] = m;
        g->data[g->depth] = data;
        g->depth++;
        g->fired = 0;
        g->nval = 0;
        g->et_seen = 0;
        if (!reg) {
          poller_event key;
          if (poller_get(b->p, fd, &key) == 0)
            g->gen = key.gen;
        }
      }
      break;
    case FZ_POP:
      r = poller_pop(b->p, fd);
      want = reg ? 0 : -ENOENT;
      check_rc(s, b, "pop", fd, r, want);
      if (r == 0 && want == 0) {
        g->depth--;
        g->fired = 0;
        g->nval = 0;
        g->et_seen = 0;
        if (!g->depth) {
          reg_reset(g);
          b->count--;
        }
      }
      break;
    case FZ_DEL:
      r = poller_del(b->p, fd);
      want = reg ? 0 : -ENOENT;
      check_rc(s, b, "del", fd, r, want);
      if (r == 0 && want == 0) {
        reg_reset(g);
        b->count--;
      }
      break;
    }
    b->nchg++;
    if (valid_fd(fd))
      check_key(s, b, fd);
    check_count(s, b);
  }
}

static void op_query(struct st *s, const struct fz_op *op) {
  for (int i = 0; i < s->nb; i++) {
    struct bk *b = &s->b[i];
    switch (op->type) {
    case FZ_GET: {
      int fd = pick_fd(s, op->a);
      poller_event key;
      if (!valid_fd(fd)) {
        int r = poller_get(b->p, fd, &key);
        check_rc(s, b, "get", fd, r, -ENOENT);
        if (poller_depth(b->p, fd) != 0)
          fail(s, "depth", "%s: depth(%d) != 0", bname(b), fd);
      } else {
        check_key(s, b, fd);
      }
      break;
    }
    case FZ_NEXT: {
      static const int from[] = {-1, -2, INT_MAX, INT_MIN, INT_MAX - 1};
      int after = op->a % 3 == 0 ? from[(op->a / 3) % 5] : pick_fd(s, op->b);
      if (after == INT_MAX && known(s, FZ_KNOWN_CORE_1))
        after = INT_MAX - 1;
      poller_event key;
      int r = poller_next(b->p, after, &key);
      int want = -ENOENT;
      int start = after < -1 ? 0 : after >= NFD - 1 ? NFD : after + 1;
      for (int fd = start; fd < NFD; fd++)
        if (b->reg[fd].depth) {
          want = fd;
          break;
        }
      if (want >= 0 ? (r != 0 || key.fd != want) : r != -ENOENT)
        fail(s, "next", "%s: next(%d) = %d fd %d, model %d", bname(b), after, r,
             r == 0 ? key.fd : -1, want);
      /* A full walk visits exactly the model's registrations. */
      int fd = -1, seen = 0;
      while (poller_next(b->p, fd, &key) == 0) {
        if (key.fd <= fd || !valid_fd(key.fd) || !b->reg[key.fd].depth) {
          fail(s, "next", "%s: walk after %d gives %d", bname(b), fd, key.fd);
          break;
        }
        fd = key.fd;
        seen++;
      }
      if (seen != b->count)
        fail(s, "next", "%s: walk saw %d registrations, model %d", bname(b),
             seen, b->count);
      break;
    }
    case FZ_COUNT:
      check_count(s, b);
      break;
    case FZ_FLUSH: {
      int ghosts = 0;
      for (int fd = 0; fd < NFD; fd++)
        ghosts += b->reg[fd].depth && b->reg[fd].ghost;
      int r = poller_flush(b->p);
      sync_dropped(s, b);
      /* The kernel may refuse a change only for a number closed or
       * replaced behind the poller (whatever its errno). */
      if (r > 0 || (r < 0 && !ghosts))
        fail(s, "flush", "%s: flush = %d with no ghost registered", bname(b),
             r);
      check_count(s, b);
      break;
    }
    case FZ_WAKEUP:
      if (poller_wakeup(b->p) != 0)
        fail(s, "wakeup", "%s: wakeup failed", bname(b));
      b->wake = 1;
      break;
    }
  }
}

/* ---- waits ---- */

static int kind_at(struct st *s, int fd) {
  int o = obj_of_fd(s, fd);
  return o < 0 ? -1 : s->desc[s->obj[o].desc].kind;
}

/* The bits a level registration with interest m must report on backend b
 * for readiness r (poll(2)'s view).  *exact is cleared when the backend
 * cannot tell (select without IN, OUT or PRI in the interest). */
static unsigned expect_bits(struct bk *b, unsigned m, unsigned r, int *exact) {
  *exact = 1;
  if (b->id == POLLER_SELECT) {
    /* select(2): readable on IN, HUP or ERR; writable on OUT or ERR;
     * exceptional on PRI (fs/select.c's POLLIN_SET, POLLOUT_SET). */
    if (!(m & (POLLER_IN | POLLER_OUT | POLLER_PRI))) {
      *exact = 0;
      return 0;
    }
    unsigned e = 0;
    if ((m & POLLER_IN) && (r & (POLLER_IN | POLLER_HUP | POLLER_ERR)))
      e |= POLLER_IN;
    if ((m & POLLER_OUT) && (r & (POLLER_OUT | POLLER_ERR)))
      e |= POLLER_OUT;
    if ((m & POLLER_PRI) && (r & POLLER_PRI))
      e |= POLLER_PRI;
    return e;
  }
  unsigned e = r & ((m & (POLLER_IN | POLLER_OUT | POLLER_PRI | POLLER_RDHUP)) |
                    POLLER_ERR | POLLER_HUP);
  /* The header: IN means readable, or the peer closed. */
  if ((e & POLLER_HUP) && (m & POLLER_IN))
    e |= POLLER_IN;
  return e;
}

/* The select(2) view of a report, to compare backends. */
static unsigned select_view(unsigned m, unsigned bits) {
  unsigned v = 0;
  if ((m & POLLER_IN) && (bits & (POLLER_IN | POLLER_HUP | POLLER_ERR)))
    v |= POLLER_IN;
  if ((m & POLLER_OUT) && (bits & (POLLER_OUT | POLLER_ERR)))
    v |= POLLER_OUT;
  if ((m & POLLER_PRI) && (bits & POLLER_PRI))
    v |= POLLER_PRI;
  return v;
}

static int uring_loose(struct st *s, struct bk *b) {
  return b->id == POLLER_URING && known(s, FZ_KNOWN_URING_13);
}

/* Checks one backend's reports of one wait against the model. */
static void check_wait(struct st *s, struct bk *b, int stable, int timeout) {
  int n = b->rc;
  int loose = uring_loose(s, b);
  b->exact_ok = 0;
  if (n < 0) {
    fail(s, "wait", "%s: wait(max %d, %d) = %d", bname(b), b->max, timeout, n);
    return;
  }
  if (n > b->max) {
    fail(s, "wait", "%s: %d reports for max %d", bname(b), n, b->max);
    return;
  }
  int nexp = 0, nloose = 0, ghosts = 0, nvals = 0;
  static unsigned char hit[NFD];
  memset(hit, 0, sizeof hit);
  for (int i = 0; i < n; i++) {
    poller_event *e = &b->out[i];
    if (valid_fd(e->fd) && !b->reg[e->fd].depth && b->reg[e->fd].dropped_gen &&
        (e->events & POLLER_NVAL) && e->gen == b->reg[e->fd].dropped_gen) {
      b->reg[e->fd].dropped_gen = 0;
      hit[e->fd]++;
      nvals++;
      continue;
    }
    if (!valid_fd(e->fd) || !b->reg[e->fd].depth) {
      fail(s, "report", "%s: report of fd %d (bits %#x), not registered",
           bname(b), e->fd, e->events);
      return;
    }
    if (hit[e->fd]++) {
      fail(s, "one-report", "%s: fd %d reported twice in one wait", bname(b),
           e->fd);
      return;
    }
    struct reg *g = &b->reg[e->fd];
    unsigned m = g->ev[g->depth - 1];
    if (e->gen != g->gen)
      fail(s, "gen", "%s: fd %d reported with gen %u, model %u", bname(b),
           e->fd, e->gen, g->gen);
    if (e->data != g->data[g->depth - 1] && !(e->events & POLLER_NVAL))
      fail(s, "data", "%s: fd %d reported with data %p, model %p", bname(b),
           e->fd, e->data, g->data[g->depth - 1]);
    if (e->events & POLLER_NVAL) {
      int devnull = kind_at(s, e->fd) == K_NULL;
      if (!g->ghost &&
          !(devnull && b->id == POLLER_URING && known(s, FZ_KNOWN_URING_16)))
        fail(s, "nval", "%s: NVAL (%#x) for fd %d, an open registered file",
             bname(b), e->events, e->fd);
      nvals++;
      if (g->nval++)
        fail(s, "nval", "%s: NVAL reported twice for fd %d", bname(b), e->fd);
      if (!(e->events & POLLER_ERR))
        fail(s, "nval", "%s: NVAL without ERR for fd %d", bname(b), e->fd);
      continue;
    }
    if (g->ghost) {
      ghosts++;
      continue;
    }
    unsigned allowed = (m & RB) | POLLER_ERR | POLLER_HUP;
    if (b->id == POLLER_URING && known(s, FZ_KNOWN_URING_15) && (m & POLLER_IN))
      allowed |= POLLER_PRI;
    if (!e->events || (e->events & ~allowed))
      fail(s, "bits", "%s: fd %d reported %#x for interest %#x", bname(b),
           e->fd, e->events, m);
    if (m & POLLER_ONESHOT) {
      if (g->fired)
        fail(s, "oneshot",
             "%s: fd %d (ONESHOT %#x) reported again (%#x) "
             "without a re-arm",
             bname(b), e->fd, m, e->events);
      g->fired = 1;
    }
    if (m & POLLER_ET) {
      unsigned t = touch_of(s, e->fd);
      int native = (poller_caps(b->p) & POLLER_ET) != 0;
      int exempt = (native && kind_at(s, e->fd) == K_TCP) || loose ||
                   peer_held(s, e->fd) ||
                   (b->rebuilt && known(s, FZ_KNOWN_EPOLL_REBUILD)) ||
                   (b->id == POLLER_SELECT && known(s, FZ_KNOWN_CORE_7) &&
                    (s->r1[e->fd] & (POLLER_HUP | POLLER_ERR | POLLER_RDHUP)));
      if (g->et_seen && g->et_touch == t && g->et_ready == s->r1[e->fd] &&
          stable && !exempt)
        fail(s, "et",
             "%s: fd %d (%s, ET %#x) reported again (%#x) with "
             "nothing changed",
             bname(b), e->fd,
             kind_at(s, e->fd) >= 0 ? kind_names[kind_at(s, e->fd)] : "?", m,
             e->events);
      g->et_seen = 1;
      g->et_touch = t;
      g->et_ready = s->r1[e->fd];
    }
  }
  /* A report of a closed fd (select's EBADF) may end a wait early; such
   * fds exist only after a close without poller_del. */
  if (s->failed || !stable || timeout < 0 || loose || nvals)
    return;
  /* Exact level reports: every armed level registration whose file is
   * ready must be reported with exactly the kernel's bits. */
  int room = 1;
  for (int fd = 0; fd < NFD; fd++) {
    struct reg *g = &b->reg[fd];
    if (!g->depth)
      continue;
    unsigned m = g->ev[g->depth - 1];
    if (g->ghost || (m & POLLER_ET)) {
      nloose++;
      continue;
    }
    int exact;
    unsigned want = expect_bits(b, m, s->r1[fd], &exact);
    if (!exact) {
      nloose++;
      continue;
    }
    if (g->fired && hit[fd] == 0)
      continue; /* disarmed ONESHOT */
    if ((m & POLLER_ONESHOT) && g->fired && hit[fd]) {
      /* fired in this very wait: it was armed */
    }
    if (want)
      nexp++;
  }
  if (nexp + nloose > b->max)
    room = 0;
  int relaxed5 = (known(s, FZ_KNOWN_CORE_5) && b->id != POLLER_SELECT &&
                  b->id != POLLER_POLL) ||
                 (b->stale_now && known(s, FZ_KNOWN_EPOLL_STALE)) ||
                 (b->id == POLLER_URING && known(s, FZ_KNOWN_URING_LATE));
  b->exact_ok = room && !ghosts && !b->wake && !relaxed5;
  for (int i = 0; i < n; i++)
    if (b->out[i].events & POLLER_NVAL)
      b->exact_ok = 0;
  for (int fd = 0; fd < NFD && !s->failed; fd++) {
    struct reg *g = &b->reg[fd];
    if (!g->depth || g->ghost)
      continue;
    unsigned m = g->ev[g->depth - 1];
    if (m & POLLER_ET)
      continue;
    int exact;
    unsigned want = expect_bits(b, m, s->r1[fd], &exact);
    if (!exact)
      continue;
    unsigned got = 0;
    int found = 0;
    for (int i = 0; i < n; i++)
      if (b->out[i].fd == fd) {
        got = b->out[i].events;
        found = 1;
      }
    if (!found) {
      if (want && room && !(g->fired && (m & POLLER_ONESHOT)) && !b->wake &&
          !relaxed5)
        fail(s, "level-missing",
             "%s: fd %d (%s, interest %#x, ready %#x) "
             "not reported (%d reports, max %d)",
             bname(b), fd,
             kind_at(s, fd) >= 0 ? kind_names[kind_at(s, fd)] : "?", m,
             s->r1[fd], n, b->max);
      continue;
    }
    if (got != want) {
      unsigned alt = want & ~POLLER_IN;
      if (known(s, FZ_KNOWN_CORE_2) && (want & POLLER_HUP) && got == alt &&
          !(s->r1[fd] & POLLER_IN))
        continue;
      fail(s, "level-bits",
           "%s: fd %d (%s, interest %#x, ready %#x) "
           "reported %#x, model %#x",
           bname(b), fd, kind_at(s, fd) >= 0 ? kind_names[kind_at(s, fd)] : "?",
           m, s->r1[fd], got, want);
    }
  }
  /* A level wait with more ready than max fills max. */
  int fill = nexp < b->max ? nexp : b->max;
  if (!s->failed && n < fill && !b->wake && !ghosts && !relaxed5)
    fail(s, "level-count",
         "%s: %d reports, %d level registrations ready "
         "(max %d)",
         bname(b), n, nexp, b->max);
}

/* poller_current: 1 for every report of this wait, 0 once deleted. */
static void check_current(struct st *s, struct bk *b, int del_fd) {
  for (int i = 0; i < b->rc; i++) {
    poller_event *e = &b->out[i];
    int want = e->fd != del_fd;
    struct reg *g = valid_fd(e->fd) ? &b->reg[e->fd] : NULL;
    if (want && g && g->depth && !(e->events & POLLER_NVAL) &&
        !(e->events & (POLLER_ERR | POLLER_HUP)) &&
        !(e->events & g->ev[g->depth - 1] & RB))
      want = 0;
    int got = poller_current(b->p, e);
    /* A ghost's registration may be dropped by the wait that reported it
     * (epoll's rebuild): either answer is right then. */
    if (e->fd != del_fd && (!g || !g->depth || g->ghost))
      continue;
    if (got != want) {
      if (!want && (e->events & POLLER_NVAL) && known(s, FZ_KNOWN_CORE_4))
        continue;
      fail(s, "current", "%s: poller_current(fd %d, %#x) = %d, model %d%s",
           bname(b), e->fd, e->events, got, want,
           e->fd == del_fd ? " (deleted after the wait)" : "");
    }
  }
}

/* A poller drops a registration the kernel refuses (reported once as
 * ERR|NVAL, possibly at a later wait).  Only ghosts may be refused: the
 * model follows, and remembers the generation for that report. */
static void sync_dropped(struct st *s, struct bk *b) {
  for (int fd = 0; fd < NFD; fd++) {
    struct reg *g = &b->reg[fd];
    poller_event key;
    if (!g->depth || poller_get(b->p, fd, &key) != -ENOENT)
      continue;
    if (!g->ghost)
      fail(s, "dropped",
           "%s: the registration of fd %d (an open file, "
           "interest %#x) vanished",
           bname(b), fd, g->ev[g->depth - 1]);
    unsigned gen = g->gen;
    int nval = g->nval;
    reg_reset(g);
    g->dropped_gen = nval ? 0 : gen;
    b->count--;
  }
}

static void op_wait(struct st *s, const struct fz_op *op) {
  int variant = (int)(op->a % 10);
  int timeout = variant == 8 ? 10 + (int)(op->c % 20) : 0;
  snapshot(s, s->r1);
  for (int i = 0; i < s->nb; i++) {
    struct bk *b = &s->b[i];
    int max;
    if (variant < 6) {
      max = b->count + 1 + (int)(op->b % 3);
      if (variant >= 3) {
        /* Exactly the number of ready level registrations plus the loose
         * ones: the wakeup channel must not take a slot. */
        int need = 0;
        for (int fd = 0; fd < NFD; fd++) {
          struct reg *g = &b->reg[fd];
          if (!g->depth)
            continue;
          int ex;
          unsigned m = g->ev[g->depth - 1];
          if (g->ghost || (m & POLLER_ET) ||
              expect_bits(b, m, s->r1[fd], &ex) || !ex)
            need++;
        }
        max = need;
      }
    } else {
      max = 1 + (int)(op->b % 3);
    }
    if (max < 1)
      max = 1;
    if (max > MAXREP)
      max = MAXREP;
    b->max = max;
    b->rebuilt = b->stale_last;
    poller_stats st0, st1;
    poller_stats_get(b->p, &st0);
    long long t0 = now_ms();
    b->rc = poller_wait(b->p, b->out, max, timeout);
    long long dt = now_ms() - t0;
    poller_stats_get(b->p, &st1);
    unsigned long long calls = st1.syscalls - st0.syscalls;
    /* The rebuild happens after this wait's reports: it shows at the
     * next wait. */
    /* epoll rebuilds its set only while a ghost is registered (a number
     * closed or replaced behind the poller), at a wait or a flush. */
    int ghost_now = 0;
    for (int fd = 0; fd < NFD && !ghost_now; fd++)
      ghost_now = b->reg[fd].depth && b->reg[fd].ghost;
    int was_rebuilt =
        ghost_now || st1.stale != st0.stale ||
        st1.changes - st0.changes > (unsigned long long)b->nchg + 1;
    b->nchg = 0;
    trace(s, "wait %s: %llu system calls, %llu stale, %llu changes", bname(b),
          calls, st1.stale - st0.stale, st1.changes - st0.changes);
    unsigned long long bound = 16 + 3 * (unsigned long long)b->count;
    if (calls > bound &&
        !(b->id == POLLER_URING && known(s, FZ_KNOWN_URING_14)))
      fail(s, "spin",
           "%s: wait(max %d, %d ms) made %llu system calls "
           "(%d reports)",
           bname(b), max, timeout, calls, b->rc);
    /* The edges a rebuild re-adds are reported until a wait has room for
     * every report. */
    /* Once a ghost has been seen, the rebuild's re-added edges can come
     * at any later wait (the rebuild may also be due from a flush): the
     * exemption stays for the rest of the run. */
    b->stale_last = was_rebuilt || b->stale_last;
    b->stale_now = st1.stale != st0.stale;
    b->rebuilt |= was_rebuilt; /* a rebuild within this wait counts too */
    int relaxed5 = known(s, FZ_KNOWN_CORE_5) && b->id != POLLER_SELECT &&
                   b->id != POLLER_POLL;
    if (timeout > 0 && b->rc == 0 && !b->wake && dt < timeout - 1 && !relaxed5)
      fail(s, "early",
           "%s: wait(%d ms) returned 0 after %lld ms without a "
           "wakeup",
           bname(b), timeout, dt);
  }
  snapshot(s, s->r2);
  int stable = memcmp(s->r1, s->r2, sizeof s->r1) == 0;
  for (int i = 0; i < s->nb && !s->failed; i++) {
    struct bk *b = &s->b[i];
    if (s->cfg->verbose) {
      fprintf(stderr, "  #%d wait %s max %d -> %d:", s->opi, bname(b), b->max,
              b->rc);
      for (int k = 0; k < b->rc; k++)
        fprintf(stderr, " %d:%#x", b->out[k].fd, b->out[k].events);
      fputc('\n', stderr);
    }
    check_wait(s, b, stable, timeout);
  }
  /* The same wait through select's eyes: exact level reports agree. */
  for (int fd = 0; fd < NFD && stable && !s->failed; fd++) {
    int have = 0;
    unsigned view = 0, mfirst = 0;
    const char *first = NULL;
    for (int i = 0; i < s->nb; i++) {
      struct bk *b = &s->b[i];
      struct reg *g = &b->reg[fd];
      if (!g->depth || g->ghost ||
          (g->ev[g->depth - 1] & (POLLER_ET | POLLER_ONESHOT)) ||
          uring_loose(s, b) || b->rc < 0 || b->wake)
        goto next_fd;
      int ex;
      unsigned m = g->ev[g->depth - 1];
      expect_bits(b, m, s->r1[fd], &ex);
      if (!ex || !b->exact_ok)
        continue;
      unsigned got = 0;
      for (int k = 0; k < b->rc; k++)
        if (b->out[k].fd == fd)
          got = select_view(m, b->out[k].events);
      /* After a ghost, the backends' tables may differ (see sync_dropped):
       * compare only registrations with the same interest. */
      if (have && m != mfirst)
        continue;
      if (have && got != view)
        fail(s, "differential", "fd %d: %s reports %#x, %s %#x (select view)",
             fd, first, view, bname(b), got);
      have = 1;
      view = got;
      first = bname(b);
      mfirst = m;
    }
  next_fd:;
  }
  /* Delete one fd after the wait, as a handler would, then ask
   * poller_current about every report of the batch. */
  int del_fd = -1;
  if (variant == 9 || variant == 5)
    del_fd = pick_fd(s, op->c);
  for (int i = 0; i < s->nb; i++) {
    struct bk *b = &s->b[i];
    int d = -1;
    /* First what the wait itself dropped (NVAL), as a loop would learn
     * from poller_get. */
    sync_dropped(s, b);
    if (del_fd >= 0 && valid_fd(del_fd) && b->reg[del_fd].depth && b->rc > 0) {
      int r = poller_del(b->p, del_fd);
      b->nchg++;
      check_rc(s, b, "del", del_fd, r, 0);
      reg_reset(&b->reg[del_fd]);
      b->count--;
      d = del_fd;
    }
    if (b->rc > 0)
      check_current(s, b, d);
    /* A wakeup ends one wait; when that wait had reports too, it may or
     * may not have been consumed (wakeups coalesce): "maybe" (2) until a
     * wait returns 0. */
    if (b->rc == 0)
      b->wake = 0;
    else if (b->wake)
      b->wake = 2;
    check_count(s, b);
  }
}

/* ---- descriptors ---- */

static void op_close(struct st *s, const struct fz_op *op) {
  int o = pick_obj(s, op->a);
  if (o < 0)
    return;
  int fd = s->obj[o].fd;
  if (op->type == FZ_CLOSE_DEL) {
    for (int i = 0; i < s->nb; i++) {
      struct bk *b = &s->b[i];
      int reg = b->reg[fd].depth != 0;
      int r = poller_del(b->p, fd);
      b->nchg++;
      check_rc(s, b, "del", fd, r, reg ? 0 : -ENOENT);
      if (reg && r == 0) {
        reg_reset(&b->reg[fd]);
        b->count--;
      }
    }
  }
  trace(s, "%s fd %d", fz_type_name(op->type), fd);
  close_obj(s, o);
}

static void op_dup(struct st *s, const struct fz_op *op) {
  int o = pick_obj(s, op->a);
  if (o < 0)
    return;
  int src = s->obj[o].fd, d = s->obj[o].desc;
  if (op->type == FZ_DUP) {
    if (s->nobj >= MAXOBJ)
      return;
    int fd = op->b % 3 == 0
                 ? fcntl(src, F_DUPFD_CLOEXEC, HIGH_BASE + (int)(op->c % 64))
                 : fcntl(src, F_DUPFD_CLOEXEC, 0);
    if (fd < 0 || fd >= NFD) {
      if (fd >= 0)
        close(fd);
      return;
    }
    s->obj[s->nobj++] = (struct obj){fd, d};
    s->desc[d].refs++;
    trace(s, "dup fd %d -> %d", src, fd);
    return;
  }
  /* dup2 onto another of our numbers, registered ones first. */
  int cand[MAXOBJ], n = 0;
  for (int i = 0; i < s->nobj; i++)
    if (i != o && s->nb && s->b[0].reg[s->obj[i].fd].depth)
      cand[n++] = i;
  if (n == 0)
    for (int i = 0; i < s->nobj; i++)
      if (i != o)
        cand[n++] = i;
  if (n == 0)
    return;
  int t = cand[op->b % (uint32_t)n];
  int tfd = s->obj[t].fd, td = s->obj[t].desc;
  if (dup2(src, tfd) < 0)
    return;
  for (int i = 0; i < s->nb; i++)
    if (s->b[i].reg[tfd].depth)
      s->b[i].reg[tfd].ghost = 1;
  touch(s, td);
  s->desc[td].refs--;
  mark_held(s, td, tfd);
  s->obj[t].desc = d;
  s->desc[d].refs++;
  trace(s, "dup2 fd %d onto %d", src, tfd);
}

/* fork: the child reinits every poller and checks its table and a wait;
 * the parent's pollers must be unaffected (the next waits check them). */
static void op_fork(struct st *s, const struct fz_op *op) {
  (void)op;
  if (!s->cfg->allow_fork)
    return;
  if (known(s, FZ_KNOWN_CORE_3))
    for (int fd = 0; fd < NFD; fd++)
      if (s->nb && s->b[0].reg[fd].depth && s->b[0].reg[fd].ghost)
        return; /* issue 8 item 3 */
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0)
    return;
  if (pid == 0) {
    for (int i = 0; i < s->nb; i++) {
      struct bk *b = &s->b[i];
      int r = poller_reinit(b->p);
      if (r != 0)
        fail(s, "reinit", "%s: reinit in the child = %d", bname(b), r);
      check_count(s, b);
      for (int fd = 0; fd < NFD && !s->failed; fd++)
        if (b->reg[fd].depth)
          check_key(s, b, fd);
      poller_event out[MAXREP];
      int n = poller_wait(b->p, out, MAXREP, 0);
      if (n < 0)
        fail(s, "reinit", "%s: wait after reinit = %d", bname(b), n);
      for (int k = 0; k < n; k++)
        if (!valid_fd(out[k].fd) ||
            (!b->reg[out[k].fd].depth &&
             !((out[k].events & POLLER_NVAL) &&
               out[k].gen == b->reg[out[k].fd].dropped_gen)))
          fail(s, "reinit", "%s: report of unregistered fd %d after reinit",
               bname(b), out[k].fd);
      poller_close(b->p);
    }
    if (s->failed)
      fprintf(stderr, "fork child: %s\n", s->why);
    _exit(s->failed ? 1 : 0);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail(s, "reinit",
         "the forked child failed (status %#x; its message is "
         "above)",
         status);
  trace(s, "fork");
}

/* ---- the run ---- */

static int count_fds(void) {
  int n = 0;
  for (int fd = 0; fd < NFD + 64; fd++)
    if (fd_open(fd))
      n++;
  return n;
}

int fz_run(const struct fz_config *cfg, const struct fz_op *ops, int n,
           char *why, size_t whylen, int *at) {
  static struct st st;
  static struct reg regs[MAXB][NFD];
  struct st *s = &st;
  memset(s, 0, sizeof *s);
  memset(regs, 0, sizeof regs);
  s->cfg = cfg;
  s->why = why;
  s->whylen = whylen;
  s->listener = -1;
  why[0] = 0;
  *at = -1;
  signal(SIGPIPE, SIG_IGN);
  int fds0 = count_fds();
  unsigned avail = poller_available();
  for (int id = 1; id < MAXB; id++) {
    if (!(cfg->backends & (1u << id)) || !(avail & (1u << id)))
      continue;
    struct bk *b = &s->b[s->nb];
    b->id = id;
    b->reg = regs[s->nb];
    int r = poller_open(&b->p, (enum poller_backend)id);
    if (r < 0) {
      fail(s, "open", "%s: poller_open = %d", poller_backend_name(id), r);
      break;
    }
    s->nb++;
  }
  for (int i = 0; i < n && !s->failed; i++) {
    s->opi = i;
    const struct fz_op *op = &ops[i];
    switch (op->type) {
    case FZ_NEW:
      op_new(s, op);
      break;
    case FZ_ADD:
    case FZ_MOD:
    case FZ_DEL:
    case FZ_PUSH:
    case FZ_POP:
      op_reg(s, op);
      break;
    case FZ_GET:
    case FZ_NEXT:
    case FZ_COUNT:
    case FZ_FLUSH:
    case FZ_WAKEUP:
      op_query(s, op);
      break;
    case FZ_WAIT:
      op_wait(s, op);
      break;
    case FZ_WRITE:
    case FZ_READ:
    case FZ_DRAIN:
    case FZ_FILL:
    case FZ_SHUT:
    case FZ_OOB:
      op_file(s, op);
      break;
    case FZ_CLOSE:
    case FZ_CLOSE_DEL:
      op_close(s, op);
      break;
    case FZ_DUP:
    case FZ_DUP2:
      op_dup(s, op);
      break;
    case FZ_FORK:
      op_fork(s, op);
      break;
    }
    if (s->failed)
      *at = i;
  }
  for (int i = 0; i < s->nb; i++)
    poller_close(s->b[i].p);
  while (s->nobj)
    close_obj(s, 0);
  if (s->listener >= 0)
    close(s->listener);
  int fds1 = count_fds();
  if (!s->failed && fds1 != fds0) {
    s->opi = n;
    fail(s, "fd-leak", "%d fds open after the run, %d before", fds1, fds0);
    *at = n;
  }
  return s->failed;
}
