/* SPDX-License-Identifier: MIT */
/*
 * readme_example.c - the README's short example, completed: serve() is
 * the function the README shows (keep the two identical), main() gives it
 * a listening socket.  tests/install/run.sh builds this file against an
 * installed poller with pkg-config, connects clients and checks that what
 * they send is printed once, in full, and nothing else.
 *
 * Usage: readme_example [port]   (default 0: the kernel picks one; the
 * first line printed is "listening on 127.0.0.1:PORT")
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>

/* ---- the README's example starts here ---- */
#include <poller.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

/* Accepts clients on listen_fd (a listening socket, best non-blocking)
 * and copies what they send to stdout.  Returns -errno on failure. */
int serve(int listen_fd) {
  poller *p;
  int r = poller_open(&p, POLLER_AUTO); /* epoll on Linux */
  if (r < 0)
    return r;
  r = poller_add(p, listen_fd, POLLER_IN, NULL); /* -EEXIST, -EBADF... */
  poller_event ev[64];
  while (r >= 0) {
    r = poller_wait(p, ev, 64, -1); /* timeout in ms: -1 blocks */
    for (int i = 0; i < r; i++) {
      int fd = ev[i].fd;
      if (!poller_current(p, &ev[i])) /* deleted earlier in this batch */
        continue;
      if (fd == listen_fd) { /* a new client: watch it too */
        int c = accept(listen_fd, NULL, NULL);
        if (c >= 0 && poller_add(p, c, POLLER_IN, NULL) < 0)
          close(c);
        continue;
      }
      char buf[4096];
      ssize_t n = read(fd, buf, sizeof buf); /* ready: does not block */
      if (n > 0) {
        fwrite(buf, 1, (size_t)n, stdout);
        fflush(stdout);
      } else { /* end of file or error: delete before close */
        poller_del(p, fd);
        close(fd);
      }
    }
  }
  poller_close(p);
  return r;
}
/* ---- the README's example ends here ---- */

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
      listen(fd, 64) < 0 || getsockname(fd, (struct sockaddr *)&a, &len) < 0 ||
      fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
    perror("listening socket");
    return 1;
  }
  printf("listening on 127.0.0.1:%d\n", ntohs(a.sin_port));
  fflush(stdout);
  int r = serve(fd);
  fprintf(stderr, "serve: %s\n", poller_strerror(r));
  return 1;
}
