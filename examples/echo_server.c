/* SPDX-License-Identifier: MIT */
/*
 * echo_server.c - an echo server on the poller loop.
 *
 * Usage: echo_server [address] [seconds]
 *   address: 127.0.0.1:7000 (default), [::1]:7000 or unix:/path
 *   seconds: stop after this long (default: run until killed)
 *
 * The logic (echo with per-client back-pressure) is in echo_logic.h.
 */
#include "echo_logic.h"
#include "poller_transport.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  const char *addr = argc > 1 ? argv[1] : "127.0.0.1:7000";
  int seconds = argc > 2 ? atoi(argv[2]) : -1;
  struct sockaddr_storage ss;
  socklen_t len;
  int rc = poller_sockaddr_parse(addr, &ss, &len);
  if (rc < 0) {
    fprintf(stderr, "%s: %s\n", addr, poller_strerror(rc));
    return 2;
  }
  poller_loop *loop;
  rc = poller_loop_open(&loop, POLLER_AUTO);
  if (rc < 0) {
    fprintf(stderr, "loop: %s\n", poller_strerror(rc));
    return 1;
  }
  struct echo_server srv = {0};
  rc = poller_listener_open(loop, &srv.listener, (struct sockaddr *)&ss, len,
                            0, echo_on_accept, &srv);
  if (rc < 0) {
    fprintf(stderr, "listen on %s: %s\n", addr, poller_strerror(rc));
    poller_loop_close(loop);
    return 1;
  }
  /* With port 0 the kernel picked one: print the real address. */
  char name[128];
  poller_listener_address(srv.listener, &ss, &len);
  poller_sockaddr_format((struct sockaddr *)&ss, len, name, sizeof name);
  printf("echo server on %s (%s)\n", name,
         poller_backend_name(poller_backend(poller_loop_poller(loop))));
  fflush(stdout);
  rc = poller_loop_run(loop, seconds < 0 ? -1 : seconds * 1000, -1);
  printf("accepted %llu connections\n", srv.accepted);
  poller_listener_close(srv.listener);
  poller_loop_close(loop);
  return rc < 0 ? 1 : 0;
}
