/* SPDX-License-Identifier: MIT */
/*
 * echo.c - the echo benchmark over 127.0.0.1 TCP.  The server is one of
 * the drivers (driver.h); the load client runs in its own process (forked)
 * with a hand-written epoll loop, holds C connections of 64-byte
 * ping-pong for a bounded time, and reports the requests it completed.
 * The server reports its CPU time per request (getrusage).
 *
 * Usage: echo --driver NAME[:ARG] [--conns C] [--seconds S]
 * Output: "name conns requests_per_s server_cpu_us_per_request"
 */
#define _GNU_SOURCE
#include "driver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MSG 64

static int *conn_fd;
static char *closed;
static int nclosed, nconns;

/* The server side: echo what arrives; count peers that closed. */
void bench_on_read(int idx) {
  char buf[4096];
  ssize_t n = read(conn_fd[idx], buf, sizeof buf);
  if (n > 0) {
    if (write(conn_fd[idx], buf, (size_t)n) != n) {
      /* 64-byte ping-pong never fills a socket buffer. */
    }
  } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
    if (!closed[idx]) {
      closed[idx] = 1;
      nclosed++;
    }
  }
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The load client: C connections, one 64-byte message in flight each. */
static long client(int port, int conns, double seconds) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int ep = epoll_create1(0);
  int *fds = calloc((size_t)conns, sizeof *fds);
  int *got = calloc((size_t)conns, sizeof *got);
  char msg[MSG];
  memset(msg, 'p', sizeof msg);
  for (int i = 0; i < conns; i++) {
    fds[i] = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fds[i], (struct sockaddr *)&a, sizeof a) < 0)
      return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
  }
  for (int i = 0; i < conns; i++)
    if (write(fds[i], msg, MSG) != MSG)
      return -1;
  long requests = 0;
  double end = now_s() + seconds;
  struct epoll_event evs[512];
  while (now_s() < end) {
    int n = epoll_wait(ep, evs, 512, 100);
    for (int k = 0; k < n; k++) {
      int i = (int)evs[k].data.u32;
      char buf[MSG];
      ssize_t r = read(fds[i], buf, (size_t)(MSG - got[i]));
      if (r <= 0)
        continue;
      got[i] += (int)r;
      if (got[i] == MSG) {
        got[i] = 0;
        requests++;
        if (write(fds[i], msg, MSG) != MSG)
          return -1;
      }
    }
  }
  for (int i = 0; i < conns; i++)
    close(fds[i]);
  return requests;
}

int main(int argc, char **argv) {
  const char *name = "poller:epoll";
  double seconds = 2;
  nconns = 100;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--driver") && i + 1 < argc)
      name = argv[++i];
    else if (!strcmp(argv[i], "--conns") && i + 1 < argc)
      nconns = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
      seconds = atof(argv[++i]);
    else
      return 2;
  }
  char base[64], *arg;
  const struct bench_driver *drv = bench_find(name, base, sizeof base, &arg);
  if (!drv)
    return 2;
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  if ((rlim_t)nconns * 2 + 64 > rl.rlim_cur) {
    printf("%s %d skipped: open-file limit\n", name, nconns);
    return 0;
  }
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0 ||
      getsockname(ls, (struct sockaddr *)&a, &al) < 0)
    return 1;
  int port = ntohs(a.sin_port);
  int pfd[2];
  if (pipe(pfd) < 0)
    return 1;
  pid_t pid = fork();
  if (pid == 0) {
    close(ls);
    long req = client(port, nconns, seconds);
    if (write(pfd[1], &req, sizeof req) != sizeof req)
      _exit(1);
    _exit(req < 0);
  }
  conn_fd = calloc((size_t)nconns, sizeof *conn_fd);
  closed = calloc((size_t)nconns, 1);
  for (int i = 0; i < nconns; i++) {
    conn_fd[i] = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
    if (conn_fd[i] < 0)
      return 1;
    setsockopt(conn_fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  if (drv->init(arg) < 0 || drv->watch(nconns, conn_fd) < 0) {
    printf("%s %d skipped: driver unavailable\n", name, nconns);
    kill(pid, SIGKILL);
    return 0;
  }
  struct rusage r0, r1;
  getrusage(RUSAGE_SELF, &r0);
  double t0 = now_s();
  while (nclosed < nconns)
    drv->run_once();
  double el = now_s() - t0;
  getrusage(RUSAGE_SELF, &r1);
  long req = 0;
  if (read(pfd[0], &req, sizeof req) != sizeof req || req <= 0) {
    fprintf(stderr, "%s: the client failed\n", name);
    return 1;
  }
  int status;
  waitpid(pid, &status, 0);
  double cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) +
               (double)(r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
               (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6 +
               (double)(r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
  printf("%s %d %.0f %.2f\n", name, nconns, (double)req / el,
         cpu * 1e6 / (double)req);
  drv->fini();
  return 0;
}
