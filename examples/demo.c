/* SPDX-License-Identifier: MIT */
/*
 * demo.c - the README demo: an echo server on 127.0.0.1 (an ephemeral
 * port) and clients driving real connections through it, in one loop, on
 * every backend available here (poller_available()).
 *
 * Per backend: CONNS connections each do PINGS ping-pong round trips of a
 * MSG-byte message (latency measured per round trip), then BULK_CONNS of
 * them push BULK bytes each through the echo with back-pressure.  Every
 * byte is checked against the pattern it was sent with.  Prints
 * connections, messages, bytes, throughput and p50/p99 latency per
 * backend; exits 1 on any failure (a wrong byte, an error, a timeout).
 *
 * Usage: demo [connections] [pings]   (defaults: 100 and 200)
 */
#include "echo_logic.h"
#include "poller_transport.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MSG 64
#define BULK (4u << 20)
#define BULK_CONNS 8
#define PIECE 32768
#define BACKEND_TIME_LIMIT_MS 15000

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The byte at offset i of client id's stream. */
static unsigned char pat(unsigned id, uint64_t i) {
  uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull ^ (uint64_t)id * 0xbf58476d1ce4e5b9ull;
  return (unsigned char)(x >> 56);
}

struct run; /* one backend's run */

struct client {
  struct run *run;
  poller_transport *t;
  unsigned id;
  uint64_t sent, got; /* stream offsets */
  int pings_done;
  int bulk;           /* this client does the bulk phase */
  int paused;         /* above high water: stop producing */
  uint64_t t0;        /* send time of the ping in flight */
  int done;
};

struct run {
  int conns, pings;
  int done, failed;
  double *lat_us; /* one per round trip */
  size_t nlat;
  uint64_t bytes; /* echoed bytes checked by the clients */
};

static void client_finish(struct client *c, int ok) {
  if (c->done)
    return;
  c->done = 1;
  c->run->done++;
  if (!ok)
    c->run->failed++;
  poller_transport_close(c->t, 0);
}

static int send_stream(struct client *c, size_t n) {
  unsigned char buf[PIECE];
  while (n > 0) {
    size_t k = n < sizeof buf ? n : sizeof buf;
    for (size_t i = 0; i < k; i++)
      buf[i] = pat(c->id, c->sent + i);
    int rc = poller_transport_write(c->t, buf, k);
    if (rc < 0)
      return rc;
    c->sent += k;
    n -= k;
  }
  return 0;
}

static void send_ping(struct client *c) {
  c->t0 = now_ns();
  if (send_stream(c, MSG) < 0)
    client_finish(c, 0);
}

/* Bulk: produce until the queue passes the high mark (on_high_water sets
 * paused), resume on drain. */
static void produce_bulk(struct client *c) {
  uint64_t end = (uint64_t)c->run->pings * MSG + BULK;
  while (!c->paused && !c->done && c->sent < end) {
    uint64_t left = end - c->sent;
    if (send_stream(c, left < PIECE ? (size_t)left : PIECE) < 0) {
      client_finish(c, 0);
      return;
    }
  }
}

static void on_connect(poller_transport *t) {
  send_ping(poller_transport_data(t));
}

static void on_read(poller_transport *t, const void *buf, size_t len) {
  struct client *c = poller_transport_data(t);
  const unsigned char *p = buf;
  for (size_t i = 0; i < len; i++) {
    if (p[i] != pat(c->id, c->got + i)) {
      fprintf(stderr, "client %u: wrong byte at offset %llu\n", c->id,
              (unsigned long long)(c->got + i));
      client_finish(c, 0);
      return;
    }
  }
  c->got += len;
  c->run->bytes += len;
  if (c->got > c->sent) {
    client_finish(c, 0);
    return;
  }
  if (c->pings_done < c->run->pings) {
    if (c->got < c->sent)
      return; /* the rest of this echo is still on its way */
    c->run->lat_us[c->run->nlat++] = (double)(now_ns() - c->t0) / 1000.0;
    if (++c->pings_done < c->run->pings)
      send_ping(c);
    else if (c->bulk)
      produce_bulk(c);
    else
      client_finish(c, 1);
    return;
  }
  if (c->got == (uint64_t)c->run->pings * MSG + BULK)
    client_finish(c, 1);
}

static void on_high(poller_transport *t, size_t queued) {
  struct client *c = poller_transport_data(t);
  (void)queued;
  c->paused = 1;
}

static void on_drain(poller_transport *t) {
  struct client *c = poller_transport_data(t);
  c->paused = 0;
  produce_bulk(c);
}

static void on_error(poller_transport *t, int err) {
  struct client *c = poller_transport_data(t);
  fprintf(stderr, "client %u: %s\n", c->id, poller_strerror(err));
  c->t = NULL; /* the transport closes itself */
  if (!c->done) {
    c->done = 1;
    c->run->done++;
    c->run->failed++;
  }
}

static void on_eof(poller_transport *t) {
  struct client *c = poller_transport_data(t);
  fprintf(stderr, "client %u: unexpected EOF\n", c->id);
  client_finish(c, 0);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Runs the demo on one backend.  Returns 0 or 1 (failure). */
static int run_backend(enum poller_backend b, int conns, int pings) {
  poller_loop *loop;
  int rc = poller_loop_open(&loop, b);
  if (rc < 0) {
    printf("%-7s not usable here: %s\n", poller_backend_name(b),
           poller_strerror(rc));
    return 0;
  }
  struct sockaddr_storage ss;
  socklen_t len;
  poller_sockaddr_parse("127.0.0.1:0", &ss, &len);
  struct echo_server srv = {0};
  rc = poller_listener_open(loop, &srv.listener, (struct sockaddr *)&ss, len,
                            0, echo_on_accept, &srv);
  if (rc == 0)
    rc = poller_listener_address(srv.listener, &ss, &len);
  if (rc < 0) {
    fprintf(stderr, "listen: %s\n", poller_strerror(rc));
    poller_loop_close(loop);
    return 1;
  }
  struct run run = {conns, pings, 0, 0, NULL, 0, 0};
  run.lat_us = malloc(sizeof *run.lat_us * (size_t)conns * (size_t)pings);
  struct client *cl = calloc((size_t)conns, sizeof *cl);
  poller_transport_cbs cbs = {.on_connect = on_connect,
                              .on_read = on_read,
                              .on_close = on_eof,
                              .on_error = on_error,
                              .on_high_water = on_high,
                              .on_drain = on_drain};
  uint64_t t0 = now_ns();
  for (int i = 0; i < conns; i++) {
    cl[i].run = &run;
    cl[i].id = (unsigned)i;
    cl[i].bulk = i < BULK_CONNS;
    rc = poller_transport_connect(loop, &cl[i].t, (struct sockaddr *)&ss, len,
                                  5000, &cbs, &cl[i]);
    if (rc < 0) {
      fprintf(stderr, "connect: %s\n", poller_strerror(rc));
      cl[i].done = 1;
      run.done++;
      run.failed++;
    }
  }
  while (run.done < conns &&
         (now_ns() - t0) / 1000000 < BACKEND_TIME_LIMIT_MS) {
    rc = poller_loop_run(loop, 100, 1);
    if (rc < 0) {
      fprintf(stderr, "loop: %s\n", poller_strerror(rc));
      break;
    }
  }
  double secs = (double)(now_ns() - t0) / 1e9;
  int failed = run.failed + (conns - run.done);
  if (run.done < conns)
    fprintf(stderr, "%s: %d connections unfinished after %d ms\n",
            poller_backend_name(b), conns - run.done, BACKEND_TIME_LIMIT_MS);
  for (int i = 0; i < conns; i++)
    if (!cl[i].done)
      poller_transport_close(cl[i].t, 0);
  /* Let the server side see the EOFs and close, then free everything. */
  poller_loop_run(loop, 200, 20);
  poller_listener_close(srv.listener);
  poller_loop_run(loop, 100, 5);
  poller_loop_close(loop);

  qsort(run.lat_us, run.nlat, sizeof *run.lat_us, cmp_double);
  double p50 = run.nlat ? run.lat_us[run.nlat / 2] : 0;
  double p99 = run.nlat ? run.lat_us[run.nlat * 99 / 100] : 0;
  /* Bytes moved: each echoed byte crossed the loopback twice. */
  double mb = (double)run.bytes * 2 / 1e6;
  printf("%-7s %5d conns %7zu msgs %8.1f MB %6.2f s %8.1f MB/s  "
         "p50 %6.1f us  p99 %7.1f us  %s\n",
         poller_backend_name(b), conns, run.nlat, mb, secs, mb / secs, p50,
         p99, failed ? "FAILED" : "ok");
  free(run.lat_us);
  free(cl);
  return failed ? 1 : 0;
}

int main(int argc, char **argv) {
  int conns = argc > 1 ? atoi(argv[1]) : 100;
  int pings = argc > 2 ? atoi(argv[2]) : 200;
  if (conns < BULK_CONNS || pings < 1) {
    fprintf(stderr, "usage: %s [connections >= %d] [pings >= 1]\n", argv[0],
            BULK_CONNS);
    return 2;
  }
#ifdef SIGPIPE /* Windows has none */
  signal(SIGPIPE, SIG_DFL); /* the transports never raise it */
#endif
  printf("poller demo: echo server on 127.0.0.1, %d connections x %d "
         "ping-pongs of %d bytes, then %d x %u MiB bulk, every byte "
         "checked\n",
         conns, pings, MSG, BULK_CONNS, BULK >> 20);
  unsigned avail = poller_available();
  int fail = 0;
  for (int b = POLLER_SELECT; b <= POLLER_AFD; b++)
    if (avail & (1u << b))
      fail |= run_backend((enum poller_backend)b, conns, pings);
  printf("%s\n", fail ? "FAILED" : "all backends ok");
  return fail;
}
