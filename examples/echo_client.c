/* SPDX-License-Identifier: MIT */
/*
 * echo_client.c - sends messages to an echo server and checks the echo.
 *
 * Usage: echo_client [address] [messages] [size]
 *   defaults: 127.0.0.1:7000, 1000 messages of 100 bytes
 *
 * One message is in flight at a time (ping-pong).  Exits 1 when a byte
 * differs, the connection fails or the server closes early.
 */
#include "poller_transport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct state {
  int messages, size, done_msgs;
  size_t got; /* bytes of the current echo received */
  char *msg;
  int status; /* 0 running, 1 ok, -1 failed */
};

static void send_next(poller_transport *t, struct state *s) {
  /* Each message differs, so a stale or misordered echo is caught. */
  for (int i = 0; i < s->size; i++)
    s->msg[i] = (char)('a' + (s->done_msgs + i) % 26);
  s->got = 0;
  if (poller_transport_write(t, s->msg, (size_t)s->size) < 0)
    s->status = -1;
}

static void on_connect(poller_transport *t) {
  send_next(t, poller_transport_data(t));
}

static void on_read(poller_transport *t, const void *buf, size_t len) {
  struct state *s = poller_transport_data(t);
  if (s->got + len > (size_t)s->size ||
      memcmp(buf, s->msg + s->got, len) != 0) {
    fprintf(stderr, "wrong echo in message %d\n", s->done_msgs);
    s->status = -1;
    poller_transport_close(t, 0);
    return;
  }
  s->got += len;
  if (s->got < (size_t)s->size)
    return;
  if (++s->done_msgs == s->messages) {
    s->status = 1;
    poller_transport_close(t, 1);
    return;
  }
  send_next(t, s);
}

static void on_close(poller_transport *t) {
  struct state *s = poller_transport_data(t);
  fprintf(stderr, "server closed the connection\n");
  s->status = -1;
  poller_transport_close(t, 0);
}

static void on_error(poller_transport *t, int err) {
  struct state *s = poller_transport_data(t);
  fprintf(stderr, "connection: %s\n", poller_strerror(err));
  s->status = -1;
}

int main(int argc, char **argv) {
  const char *addr = argc > 1 ? argv[1] : "127.0.0.1:7000";
  struct state s = {argc > 2 ? atoi(argv[2]) : 1000,
                    argc > 3 ? atoi(argv[3]) : 100, 0, 0, NULL, 0};
  if (s.messages < 1 || s.size < 1) {
    fprintf(stderr, "usage: %s [address] [messages] [size]\n", argv[0]);
    return 2;
  }
  struct sockaddr_storage ss;
  socklen_t len;
  int rc = poller_sockaddr_parse(addr, &ss, &len);
  if (rc < 0) {
    fprintf(stderr, "%s: %s\n", addr, poller_strerror(rc));
    return 2;
  }
  s.msg = malloc((size_t)s.size);
  poller_loop *loop;
  if ((rc = poller_loop_open(&loop, POLLER_AUTO)) < 0) {
    fprintf(stderr, "loop: %s\n", poller_strerror(rc));
    return 1;
  }
  poller_transport_cbs cbs = {.on_connect = on_connect, .on_read = on_read,
                              .on_close = on_close, .on_error = on_error};
  poller_transport *t;
  rc = poller_transport_connect(loop, &t, (struct sockaddr *)&ss, len, 5000,
                                &cbs, &s);
  if (rc < 0) {
    fprintf(stderr, "connect: %s\n", poller_strerror(rc));
    return 1;
  }
  /* Runs until the transport is closed and freed: nothing left to watch. */
  poller_loop_run(loop, 30000, -1);
  poller_loop_close(loop);
  free(s.msg);
  if (s.status == 1)
    printf("%d messages of %d bytes echoed intact\n", s.messages, s.size);
  return s.status == 1 ? 0 : 1;
}
