/* SPDX-License-Identifier: MIT */
/*
 * http_server.c - a tiny HTTP/1.1 server on the poller loop: answers GET
 * (and HEAD) with a fixed small body, keeps connections alive and answers
 * pipelined requests in order.  Enough for load generators:
 *
 *   http_server 127.0.0.1:8080 &
 *   wrk -t2 -c100 -d10s http://127.0.0.1:8080/
 *
 * Usage: http_server [address] [seconds] [threads]
 *        (default 127.0.0.1:8080, forever, 1 thread)
 *
 * One loop per thread: with threads > 1 each thread opens its own loop and
 * its own listening socket bound to the same address with SO_REUSEPORT
 * (Linux 3.9, the BSDs), and the kernel spreads incoming connections over
 * the sockets.  Nothing is shared between the threads but the request
 * counter (atomic, added once at the end): a poller, a loop, and every
 * transport, listener and handle made from them are used by the thread
 * that opened the loop only.  The calls that are safe from any thread
 * are poller_loop_stop and poller_async_send (and poller_wakeup on a bare
 * poller), which is how another thread asks a loop to do something; see
 * docs/guide.md, "One loop per thread".
 *
 * Requests are parsed only as far as needed: the request line, the end of
 * the header block, "Connection: close" and HTTP/1.0's keep-alive rule.
 * Bodies are not supported (a Content-Length other than 0 gets 400), so a
 * request never spans more than the connection's 8 KiB header buffer.
 */
#include "poller_transport.h"

#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define HDR_MAX 8192

static const char body[] = "Hello from poller\n";

struct conn {
  size_t len;
  char buf[HDR_MAX];
};

/* Per thread (no sharing on the hot path), summed at the end. */
static _Thread_local unsigned long long requests;
static atomic_ullong total_requests;

/* Finds a header's value in the block [p, end) (case-insensitive name). */
static int has_token(const char *p, const char *end, const char *name,
                     const char *value) {
  size_t nl = strlen(name), vl = strlen(value);
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol)
      eol = end;
    if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 &&
        p[nl] == ':') {
      const char *v = p + nl + 1;
      while (v < eol && isspace((unsigned char)*v))
        v++;
      if ((size_t)(eol - v) >= vl && strncasecmp(v, value, vl) == 0)
        return 1;
    }
    p = eol + 1;
  }
  return 0;
}

static void respond(poller_transport *t, int status, int keep, int head) {
  char hdr[256];
  const char *reason = status == 200   ? "OK"
                       : status == 405 ? "Method Not Allowed"
                       : status == 431 ? "Request Header Fields Too Large"
                                       : "Bad Request";
  size_t blen = status == 200 ? sizeof body - 1 : 0;
  int n = snprintf(hdr, sizeof hdr,
                   "HTTP/1.1 %d %s\r\nServer: poller\r\n"
                   "Content-Type: text/plain\r\nContent-Length: %zu\r\n%s\r\n",
                   status, reason, blen, keep ? "" : "Connection: close\r\n");
  /* Header and body in one write: one send for small responses, and the
   * transport queues whatever the kernel does not take. */
  char out[512];
  memcpy(out, hdr, (size_t)n);
  size_t total = (size_t)n;
  if (!head && blen) {
    memcpy(out + n, body, blen);
    total += blen;
  }
  (void)poller_transport_write(t, out, total);
  if (!keep) {
    /* No callback runs after close: release the connection state now
     * (the callers return right after). */
    free(poller_transport_data(t));
    poller_transport_close(t, 1);
  }
}

static void on_read(poller_transport *t, const void *data, size_t len) {
  struct conn *c = poller_transport_data(t);
  const char *in = data;
  while (len > 0) {
    size_t k = len < HDR_MAX - c->len ? len : HDR_MAX - c->len;
    memcpy(c->buf + c->len, in, k);
    c->len += k;
    in += k;
    len -= k;
    /* Answer every complete request in the buffer (pipelining). */
    size_t off = 0;
    for (;;) {
      char *start = c->buf + off;
      size_t avail = c->len - off;
      char *endh = avail >= 4 ? memmem(start, avail, "\r\n\r\n", 4) : NULL;
      if (!endh)
        break;
      char *end = endh + 4;
      off += (size_t)(end - start);
      requests++;
      int is_get = avail > 4 && memcmp(start, "GET ", 4) == 0;
      int is_head = avail > 5 && memcmp(start, "HEAD ", 5) == 0;
      const char *eol = memchr(start, '\r', (size_t)(end - start));
      int http10 =
          eol && eol - start >= 8 && memcmp(eol - 8, "HTTP/1.0", 8) == 0;
      int keep = http10 ? has_token(start, end, "Connection", "keep-alive")
                        : !has_token(start, end, "Connection", "close");
      if (has_token(start, end, "Content-Length", "") &&
          !has_token(start, end, "Content-Length", "0")) {
        respond(t, 400, 0, 0); /* bodies are not supported */
        return;
      }
      respond(t, is_get || is_head ? 200 : 405, keep, is_head);
      if (!keep)
        return;
    }
    if (off > 0) {
      memmove(c->buf, c->buf + off, c->len - off);
      c->len -= off;
    } else if (c->len == HDR_MAX) {
      respond(t, 431, 0, 0);
      return;
    }
  }
}

/* Pipelining clients can send faster than they read: stop reading from a
 * connection whose answers pile up, resume when they drain. */
static void on_high(poller_transport *t, size_t queued) {
  (void)queued;
  poller_transport_pause(t);
}
static void on_drain(poller_transport *t) { poller_transport_resume(t); }

static void on_close(poller_transport *t) {
  free(poller_transport_data(t));
  poller_transport_close(t, 1);
}
static void on_error(poller_transport *t, int err) {
  (void)err;
  free(poller_transport_data(t));
}

static const poller_transport_cbs http_cbs = {.on_read = on_read,
                                              .on_close = on_close,
                                              .on_error = on_error,
                                              .on_high_water = on_high,
                                              .on_drain = on_drain};

static void on_accept(poller_listener *l, int fd, void *data) {
  (void)data;
  struct conn *c = malloc(sizeof *c);
  poller_transport *t;
  if (!c || poller_transport_adopt(poller_listener_loop(l), &t, fd, &http_cbs,
                                   c) < 0) {
    free(c);
    close(fd);
    return;
  }
  c->len = 0;
}

struct server {
  struct sockaddr_storage ss;
  socklen_t len;
  int seconds;
  int reuseport; /* several threads: one socket each, SO_REUSEPORT */
  int threads;   /* how many, for the first thread's announcement */
  int first;     /* this thread announces the bound address */
  int rc;
  pthread_t thread;
};

/* A listening socket on sv's address, with SO_REUSEPORT when asked. */
static int listen_socket(const struct server *sv) {
  int fd = socket(sv->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      (sv->reuseport &&
       setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
      bind(fd, (const struct sockaddr *)&sv->ss, sv->len) < 0 ||
      listen(fd, SOMAXCONN) < 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  return fd;
}

/* One thread's server: its own loop and listener, run for sv->seconds. */
static void *serve(void *arg) {
  struct server *sv = arg;
  poller_loop *loop;
  int rc = poller_loop_open(&loop, POLLER_AUTO);
  if (rc < 0) {
    fprintf(stderr, "loop: %s\n", poller_strerror(rc));
    sv->rc = 1;
    return NULL;
  }
  poller_listener *l = NULL;
  int fd = listen_socket(sv);
  rc = fd < 0 ? fd : poller_listener_adopt(loop, &l, fd, on_accept, NULL);
  if (rc < 0) {
    if (fd >= 0)
      close(fd);
    fprintf(stderr, "listen: %s\n", poller_strerror(rc));
    poller_loop_close(loop);
    sv->rc = 1;
    return NULL;
  }
  if (sv->first) {
    /* The bound address: with port 0 the kernel picked one. */
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char name[128];
    poller_listener_address(l, &ss, &len);
    poller_sockaddr_format((struct sockaddr *)&ss, len, name, sizeof name);
    printf("http server on http://%s/ (%s, %d thread%s, one loop each)\n", name,
           poller_backend_name(poller_backend(poller_loop_poller(loop))),
           sv->threads, sv->threads > 1 ? "s" : "");
    fflush(stdout);
  }
  rc = poller_loop_run(loop, sv->seconds < 0 ? -1 : sv->seconds * 1000, -1);
  atomic_fetch_add(&total_requests, requests);
  poller_listener_close(l);
  poller_loop_close(loop);
  sv->rc = rc < 0 ? 1 : 0;
  return NULL;
}

int main(int argc, char **argv) {
  const char *addr = argc > 1 ? argv[1] : "127.0.0.1:8080";
  int seconds = argc > 2 ? atoi(argv[2]) : -1;
  int threads = argc > 3 ? atoi(argv[3]) : 1;
  if (threads < 1 || threads > 64) {
    fprintf(stderr, "threads: 1 to 64\n");
    return 2;
  }
  struct server sv[64];
  int rc = poller_sockaddr_parse(addr, &sv[0].ss, &sv[0].len);
  if (rc < 0) {
    fprintf(stderr, "%s: %s\n", addr, poller_strerror(rc));
    return 2;
  }
  if (threads > 1 && ((struct sockaddr_in *)&sv[0].ss)->sin_port == 0) {
    /* Port 0 would give each thread's socket a port of its own. */
    fprintf(stderr, "several threads need a port other than 0\n");
    return 2;
  }
  sv[0].seconds = seconds;
  sv[0].reuseport = threads > 1;
  sv[0].rc = 0;
  sv[0].threads = threads;
  sv[0].first = 1;
  for (int i = 1; i < threads; i++) {
    sv[i] = sv[0];
    sv[i].first = 0;
  }
  if (threads == 1) {
    serve(&sv[0]);
  } else {
    for (int i = 0; i < threads; i++)
      if (pthread_create(&sv[i].thread, NULL, serve, &sv[i]) != 0) {
        fprintf(stderr, "pthread_create failed\n");
        return 1; /* the threads already started end with their time */
      }
    for (int i = 0; i < threads; i++)
      pthread_join(sv[i].thread, NULL);
  }
  printf("%llu requests\n", (unsigned long long)atomic_load(&total_requests));
  for (int i = 0; i < threads; i++)
    if (sv[i].rc)
      return 1;
  return 0;
}
