/* SPDX-License-Identifier: MIT */
/*
 * echo_logic.h - the echo server's logic, shared by examples/echo_server.c,
 * examples/demo.c and the transport tests (which push 1,000 connections
 * through it).
 *
 * Every byte read is written back.  Back-pressure: when a client sends
 * faster than it reads, its write queue passes the high mark; the server
 * then stops reading from that client (poller_transport_pause) until the
 * queue drains, so a client cannot make the server buffer without bound.
 */
#ifndef POLLER_EXAMPLES_ECHO_LOGIC_H
#define POLLER_EXAMPLES_ECHO_LOGIC_H

#include "poller_transport.h"

#include <unistd.h>

struct echo_server {
  poller_listener *listener;
  unsigned long long accepted;
  unsigned long long refused; /* adopt failed (out of memory...) */
};

static void echo_on_read(poller_transport *t, const void *buf, size_t len) {
  /* A failed write is reported again through on_error, which ends the
   * connection; nothing else to do here. */
  (void)poller_transport_write(t, buf, len);
}

static void echo_on_high_water(poller_transport *t, size_t queued) {
  (void)queued;
  (void)poller_transport_pause(t);
}

static void echo_on_drain(poller_transport *t) {
  (void)poller_transport_resume(t);
}

/* The client finished sending: answer what is queued, then close. */
static void echo_on_close(poller_transport *t) { poller_transport_close(t, 1); }

static const poller_transport_cbs echo_cbs = {
    .on_read = echo_on_read,
    .on_close = echo_on_close,
    .on_high_water = echo_on_high_water,
    .on_drain = echo_on_drain,
    /* on_error NULL: the transport closes itself after an error. */
};

static void echo_on_accept(poller_listener *l, int fd, void *data) {
  struct echo_server *srv = data;
  poller_transport *t;
  if (poller_transport_adopt(poller_listener_loop(l), &t,
                             fd, &echo_cbs, srv) < 0) {
    close(fd);
    srv->refused++;
    return;
  }
  srv->accepted++;
}

#endif
