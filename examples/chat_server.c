/* SPDX-License-Identifier: MIT */
/*
 * chat_server.c - a line-based chat on the poller loop: every line a
 * client sends is broadcast to all the other clients as "[id] line".
 *
 * Usage: chat_server [address] [seconds]   (default 127.0.0.1:7001)
 * Try it with a few terminals running: nc 127.0.0.1 7001
 *
 * Back-pressure policy, per client: a broadcast must not make the server
 * buffer without bound for a client that does not read, nor slow the
 * others down.  So every client's write queue has a high mark (64 KiB);
 * when a client's queue passes it, that slow client is dropped (its queue
 * discarded, connection closed) and the others go on.  A sender cannot
 * flood either: a line longer than LINE_MAX ends its connection.  (The
 * other classic policy, pausing the sender until every receiver drained,
 * lets one stuck reader stall the whole room; echo_logic.h shows pausing
 * for the one-to-one case.)
 */
#include "poller_transport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINE_MAX_LEN 1024
#define SLOW_CLIENT_QUEUE (64 * 1024)

struct client {
  struct client *prev, *next;
  poller_transport *t;
  unsigned id;
  size_t len;
  char line[LINE_MAX_LEN];
};

static struct client *clients;
static unsigned next_id = 1;
static unsigned long long dropped;

static void unlink_client(struct client *c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    clients = c->next;
  if (c->next)
    c->next->prev = c->prev;
  free(c);
}

/* Closes a client and forgets it; no callback of it runs afterwards. */
static void drop(struct client *c, int flush) {
  poller_transport_close(c->t, flush);
  unlink_client(c);
}

static void broadcast(struct client *from, const char *msg, size_t len) {
  struct client *next;
  for (struct client *c = clients; c; c = next) {
    /* on_high_water may drop c from inside the write: keep the next one
     * first. */
    next = c->next;
    if (c != from)
      (void)poller_transport_write(c->t, msg, len);
  }
}

static void on_read(poller_transport *t, const void *buf, size_t len) {
  struct client *c = poller_transport_data(t);
  const char *p = buf;
  for (size_t i = 0; i < len; i++) {
    if (c->len == LINE_MAX_LEN) {
      static const char msg[] = "line too long, bye\n";
      poller_transport_write(t, msg, sizeof msg - 1);
      drop(c, 1);
      return;
    }
    c->line[c->len++] = p[i];
    if (p[i] == '\n') {
      char out[LINE_MAX_LEN + 32];
      int n = snprintf(out, sizeof out, "[%u] %.*s", c->id, (int)c->len,
                       c->line);
      broadcast(c, out, (size_t)n);
      c->len = 0;
    }
  }
}

/* A receiver that does not keep up: drop it (see the policy above). */
static void on_high(poller_transport *t, size_t queued) {
  struct client *c = poller_transport_data(t);
  fprintf(stderr, "dropping slow client %u (%zu bytes queued)\n", c->id,
          queued);
  dropped++;
  drop(c, 0);
}

static void on_close(poller_transport *t) {
  struct client *c = poller_transport_data(t);
  char msg[64];
  int n = snprintf(msg, sizeof msg, "* %u left\n", c->id);
  drop(c, 1);
  broadcast(NULL, msg, (size_t)n);
}

static void on_error(poller_transport *t, int err) {
  struct client *c = poller_transport_data(t);
  (void)err;
  unlink_client(c); /* the transport closes itself after this */
}

static const poller_transport_cbs chat_cbs = {.on_read = on_read,
                                              .on_close = on_close,
                                              .on_error = on_error,
                                              .on_high_water = on_high};

static void on_accept(poller_listener *l, int fd, void *data) {
  (void)data;
  struct client *c = calloc(1, sizeof *c);
  if (!c || poller_transport_adopt(poller_listener_loop(l), &c->t, fd,
                                   &chat_cbs, c) < 0) {
    free(c);
    close(fd);
    return;
  }
  poller_transport_set_water(c->t, SLOW_CLIENT_QUEUE, 0);
  c->id = next_id++;
  char msg[64];
  int n = snprintf(msg, sizeof msg, "* %u joined\n", c->id);
  broadcast(NULL, msg, (size_t)n);
  c->next = clients;
  if (clients)
    clients->prev = c;
  clients = c;
  n = snprintf(msg, sizeof msg, "* welcome, you are %u\n", c->id);
  poller_transport_write(c->t, msg, (size_t)n);
}

int main(int argc, char **argv) {
  const char *addr = argc > 1 ? argv[1] : "127.0.0.1:7001";
  int seconds = argc > 2 ? atoi(argv[2]) : -1;
  struct sockaddr_storage ss;
  socklen_t len;
  int rc = poller_sockaddr_parse(addr, &ss, &len);
  if (rc < 0) {
    fprintf(stderr, "%s: %s\n", addr, poller_strerror(rc));
    return 2;
  }
  poller_loop *loop;
  if ((rc = poller_loop_open(&loop, POLLER_AUTO)) < 0) {
    fprintf(stderr, "loop: %s\n", poller_strerror(rc));
    return 1;
  }
  poller_listener *l;
  rc = poller_listener_open(loop, &l, (struct sockaddr *)&ss, len, 0,
                            on_accept, NULL);
  if (rc < 0) {
    fprintf(stderr, "listen on %s: %s\n", addr, poller_strerror(rc));
    return 1;
  }
  char name[128];
  poller_listener_address(l, &ss, &len);
  poller_sockaddr_format((struct sockaddr *)&ss, len, name, sizeof name);
  printf("chat server on %s\n", name);
  fflush(stdout);
  rc = poller_loop_run(loop, seconds < 0 ? -1 : seconds * 1000, -1);
  printf("%llu slow clients dropped\n", dropped);
  while (clients)
    drop(clients, 0);
  poller_listener_close(l);
  poller_loop_run(loop, 0, 1); /* frees the closed transports */
  poller_loop_close(loop);
  return rc < 0 ? 1 : 0;
}
