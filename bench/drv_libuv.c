/* SPDX-License-Identifier: MIT */
/* drv_libuv.c - libuv 1.44 (Debian's libuv1-dev): one uv_poll_t per fd;
 * the "setup" step is uv_poll_stop + uv_poll_start. */
#include "driver.h"

#include <stdlib.h>
#include <uv.h>

static uv_loop_t loop;
static uv_poll_t *h;
static int nfds;

static void on_poll(uv_poll_t *handle, int status, int events) {
  (void)status;
  (void)events;
  bench_on_read((int)(handle - h));
}

static int drv_init(const char *arg) {
  (void)arg;
  return uv_loop_init(&loop) == 0 ? 0 : -1;
}

static int drv_watch(int n, const int *fds) {
  nfds = n;
  h = calloc((size_t)n, sizeof *h);
  if (!h)
    return -1;
  for (int i = 0; i < n; i++)
    if (uv_poll_init(&loop, &h[i], fds[i]) < 0 ||
        uv_poll_start(&h[i], UV_READABLE, on_poll) < 0)
      return -1;
  return 0;
}

static void drv_rewatch(void) {
  for (int i = 0; i < nfds; i++) {
    uv_poll_stop(&h[i]);
    uv_poll_start(&h[i], UV_READABLE, on_poll);
  }
}

static void drv_run_once(void) { uv_run(&loop, UV_RUN_ONCE); }

static long long drv_syscalls(void) { return -1; }

static void drv_fini(void) {
  for (int i = 0; i < nfds; i++)
    uv_close((uv_handle_t *)&h[i], NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  free(h);
}

const struct bench_driver bench_libuv = {"libuv",      drv_init,
                                         drv_watch,    drv_rewatch,
                                         drv_run_once, drv_syscalls,
                                         drv_fini};
