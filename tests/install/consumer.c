/* SPDX-License-Identifier: MIT */
/*
 * consumer.c - a program built against an installed poller (by
 * tests/install/run.sh, once with pkg-config and once with CMake's
 * find_package).  It includes every public header, checks that the library
 * it runs with is the one its headers describe, and sees one readiness
 * report through the core and one through the loop.  Prints the run-time
 * version on success; exits 1 with a message on any failure.
 */
#define _POSIX_C_SOURCE 200809L /* pipe, read, write */
#include <poller.h>
#include <poller_loop.h>
#include <poller_transport.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int fail(const char *what, int err) {
  fprintf(stderr, "consumer: %s: %s\n", what, poller_strerror(err));
  return 1;
}

static void on_readable(poller_loop *loop, int fd, unsigned events,
                        void *arg) {
  char c;
  if ((events & POLLER_IN) && read(fd, &c, 1) == 1)
    *(int *)arg = 1;
  poller_io_stop(loop, fd);
}

int main(void) {
  if (poller_version() != POLLER_VERSION) {
    fprintf(stderr, "consumer: headers say %d, library says %d\n",
            POLLER_VERSION, poller_version());
    return 1;
  }

  int fds[2];
  if (pipe(fds) < 0)
    return fail("pipe", -1);
  if (write(fds[1], "x", 1) != 1)
    return fail("write", -1);

  /* The core: the pipe is readable at once. */
  poller *p;
  int r = poller_open(&p, POLLER_AUTO);
  if (r < 0)
    return fail("poller_open", r);
  if ((r = poller_add(p, fds[0], POLLER_IN, NULL)) < 0)
    return fail("poller_add", r);
  poller_event ev[4];
  r = poller_wait(p, ev, 4, 10000);
  if (r != 1 || ev[0].fd != fds[0] || !(ev[0].events & POLLER_IN))
    return fail("poller_wait", r < 0 ? r : -1);
  poller_close(p);

  /* The loop: one callback, then nothing is left and run returns. */
  poller_loop *loop;
  if ((r = poller_loop_open(&loop, POLLER_AUTO)) < 0)
    return fail("poller_loop_open", r);
  int seen = 0;
  if ((r = poller_io_start(loop, fds[0], POLLER_IN, on_readable, &seen)) < 0)
    return fail("poller_io_start", r);
  if ((r = poller_loop_run(loop, 10000, -1)) < 0)
    return fail("poller_loop_run", r);
  if (!seen)
    return fail("the loop's io watcher", -1);
  poller_loop_close(loop);

  /* The transport header's helpers. */
  struct sockaddr_storage ss;
  socklen_t len;
  char buf[64];
  if ((r = poller_sockaddr_parse("127.0.0.1:7", &ss, &len)) < 0 ||
      (r = poller_sockaddr_format((struct sockaddr *)&ss, len, buf,
                                  sizeof buf)) < 0)
    return fail("poller_sockaddr_parse/format", r);
  if (strcmp(buf, "127.0.0.1:7") != 0)
    return fail("poller_sockaddr_format", -1);

  printf("%s\n", poller_version_string());
  return 0;
}
