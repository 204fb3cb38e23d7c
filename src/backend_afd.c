/* SPDX-License-Identifier: MIT */
/*
 * backend_afd.c - the "afd" backend: Windows' AFD poll requests completed
 * through an I/O completion port, O(ready) per wait (the mechanism wepoll,
 * mio and libuv use; written here from its public descriptions).
 *
 * The mechanism.  The Winsock kernel driver (AFD) accepts a poll request,
 * the device control IOCTL_AFD_POLL, whose input names a set of socket
 * handles and the events wanted on each (AFD_POLL_RECEIVE, _SEND,
 * _DISCONNECT...).  It completes, like any overlapped I/O, when one of
 * them is ready, with the events found in the same structure.  The
 * request is issued on any handle of the AFD driver: the completion goes
 * to that handle's completion port.  This backend issues every request on
 * one socket of its own (the "port socket", created by the poller and
 * associated with its completion port), one request per watched socket,
 * naming the watched socket's base handle (SIO_BASE_HANDLE: under a
 * layered service provider the application's handle is not AFD's).  The
 * application's sockets are never associated with the port, so they stay
 * free for the application's own overlapped I/O.
 *
 * Modes.  A completed request is a report; the socket then has no request
 * until the next wait submits a new one (level: it completes at once
 * while the socket stays ready).  ONESHOT is native: after a report
 * nothing is submitted until the core re-arms.  ET is emulated by the core
 * (it probes with select, see platform_win32.c).
 *
 * Changes and removals.  A change of interest cancels the pending request
 * (CancelIoEx on the port socket, naming the request's status block) and
 * the next wait submits the new one.  A removal cancels too, and takes
 * effect at once: the request's state leaves the socket's slot and is
 * freed when its cancelled completion is dequeued (the kernel writes into
 * it until then), so nothing of the removed registration can be reported.
 * The state of each request is a separate allocation made by ctl, never by
 * wait.
 *
 * A socket closed behind poller's back completes its request with
 * AFD_POLL_LOCAL_CLOSE, reported as NVAL.
 */
#define WIN32_LEAN_AND_MEAN
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <winsock2.h>
#include <windows.h>
#include <winternl.h>

/* The IOCTL and its structures, as the AFD driver defines them. */
#define IOCTL_AFD_POLL 0x00012024
#define AFD_POLL_RECEIVE 0x0001
#define AFD_POLL_RECEIVE_EXPEDITED 0x0002
#define AFD_POLL_SEND 0x0004
#define AFD_POLL_DISCONNECT 0x0008
#define AFD_POLL_ABORT 0x0010
#define AFD_POLL_LOCAL_CLOSE 0x0020
#define AFD_POLL_ACCEPT 0x0080
#define AFD_POLL_CONNECT_FAIL 0x0100
#ifndef SIO_BASE_HANDLE
#define SIO_BASE_HANDLE 0x48000022
#endif
#ifndef STATUS_CANCELLED
#define STATUS_CANCELLED ((NTSTATUS)0xC0000120L)
#endif
#ifndef STATUS_PENDING
#define STATUS_PENDING ((NTSTATUS)0x00000103L)
#endif

typedef struct {
  HANDLE handle;
  ULONG events;
  NTSTATUS status;
} afd_poll_handle_info;

typedef struct {
  LARGE_INTEGER timeout;
  ULONG count;
  ULONG exclusive;
  afd_poll_handle_info handles[1];
} afd_poll_info;

typedef NTSTATUS(NTAPI *nt_ioctl_fn)(HANDLE, HANDLE, PVOID, PVOID,
                                     PIO_STATUS_BLOCK, ULONG, PVOID, ULONG,
                                     PVOID, ULONG);

/* One request's state.  iosb is what the completion returns (as the
 * OVERLAPPED pointer), so the entry is found from it. */
struct afd_req {
  IO_STATUS_BLOCK iosb;
  afd_poll_info info;
  int fd;
  HANDLE base;     /* the watched socket's base handle */
  unsigned want;   /* POLLER_* interest, 0 when unarmed */
  int pending;     /* a request is in the kernel */
  int orphan;      /* removed: free at its completion */
  int queued;      /* in the submit list */
  struct afd_req *next_orphan;
};

#define AFD_BATCH 256

struct afd_state {
  HANDLE port;
  SOCKET port_sock;
  HANDLE port_base;
  struct afd_req **submit; /* requests to (re)submit at the next wait */
  int nsubmit, capsubmit;
  struct afd_req **reqs; /* by e->bidx */
  int nreqs, capreqs;
  int norphans;          /* cancelled requests not yet dequeued */
  int nalloc;            /* requests allocated: bounds the submit list */
  OVERLAPPED_ENTRY entries[AFD_BATCH];
};

static nt_ioctl_fn nt_ioctl;

static int afd_load(void) {
  if (nt_ioctl)
    return 0;
  HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
  if (!ntdll)
    return -ENOSYS;
  nt_ioctl = (nt_ioctl_fn)(void (*)(void))GetProcAddress(
      ntdll, "NtDeviceIoControlFile");
  return nt_ioctl ? 0 : -ENOSYS;
}

static HANDLE base_handle(SOCKET s) {
  SOCKET base = INVALID_SOCKET;
  DWORD bytes;
  if (WSAIoctl(s, SIO_BASE_HANDLE, NULL, 0, &base, sizeof base, &bytes, NULL,
               NULL) != 0 ||
      base == INVALID_SOCKET)
    return NULL;
  return (HANDLE)base;
}

static int afd_probe(void) {
  int r = poller__win_startup();
  if (r < 0)
    return r;
  return afd_load();
}

static void afd_fini(poller *p);

static int afd_init(poller *p) {
  int r = afd_probe();
  if (r < 0)
    return r;
  struct afd_state *s = calloc(1, sizeof *s);
  if (!s)
    return -ENOMEM;
  s->port_sock = INVALID_SOCKET;
  p->bstate = s;
  s->port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 1);
  if (!s->port) {
    r = -poller__win_errno((int)GetLastError());
    goto fail;
  }
  s->port_sock = WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                            WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
  if (s->port_sock == INVALID_SOCKET) {
    r = -poller__win_errno(WSAGetLastError());
    goto fail;
  }
  s->port_base = base_handle(s->port_sock);
  if (!s->port_base ||
      !CreateIoCompletionPort(s->port_base, s->port, 0, 0)) {
    r = -ENOSYS;
    goto fail;
  }
  /* Completions of requests that complete at once must still be queued:
   * every report comes through the port. */
  return 0;
fail:
  afd_fini(p);
  return r;
}

/* Queues q for submission at the next wait.  Never allocates: a request
 * is at most once in the list, and ctl keeps room for every request
 * allocated (req_new), so the wait path can call it. */
static void submit_push(struct afd_state *s, struct afd_req *q) {
  if (q->queued)
    return;
  s->submit[s->nsubmit++] = q;
  q->queued = 1;
}

static struct afd_req *req_new(struct afd_state *s) {
  if (s->nalloc + 1 > s->capsubmit) {
    int cap = s->capsubmit ? s->capsubmit * 2 : 64;
    struct afd_req **a = realloc(s->submit, (size_t)cap * sizeof *a);
    if (!a)
      return NULL;
    s->submit = a;
    s->capsubmit = cap;
  }
  struct afd_req *q = calloc(1, sizeof *q);
  if (q)
    s->nalloc++;
  return q;
}

static void req_free(struct afd_state *s, struct afd_req *q) {
  s->nalloc--;
  free(q);
}

static ULONG afd_events(unsigned want) {
  ULONG ev = AFD_POLL_ABORT | AFD_POLL_CONNECT_FAIL | AFD_POLL_LOCAL_CLOSE;
  if (want & (POLLER_IN | POLLER_RDHUP))
    ev |= AFD_POLL_RECEIVE | AFD_POLL_ACCEPT | AFD_POLL_DISCONNECT;
  if (want & POLLER_OUT)
    ev |= AFD_POLL_SEND;
  if (want & POLLER_PRI)
    ev |= AFD_POLL_RECEIVE_EXPEDITED;
  return ev;
}

static unsigned poller_bits(ULONG ev) {
  unsigned bits = 0;
  if (ev & (AFD_POLL_RECEIVE | AFD_POLL_ACCEPT))
    bits |= POLLER_IN;
  if (ev & AFD_POLL_SEND)
    bits |= POLLER_OUT;
  if (ev & AFD_POLL_RECEIVE_EXPEDITED)
    bits |= POLLER_PRI;
  if (ev & AFD_POLL_DISCONNECT)
    bits |= POLLER_IN | POLLER_RDHUP;
  if (ev & AFD_POLL_ABORT)
    bits |= POLLER_HUP | POLLER_ERR;
  if (ev & AFD_POLL_CONNECT_FAIL)
    bits |= POLLER_ERR;
  if (ev & AFD_POLL_LOCAL_CLOSE)
    bits = POLLER_NVAL;
  return bits;
}

static void cancel(struct afd_state *s, struct afd_req *q) {
  if (q->pending)
    CancelIoEx(s->port_base, (LPOVERLAPPED)&q->iosb);
}

static int afd_ctl(poller *p, int fd, struct poller__fd *e, unsigned have,
                   unsigned want, int rearm) {
  struct afd_state *s = p->bstate;
  if (!want) {
    if (!have)
      return 0;
    struct afd_req *q = s->reqs[e->bidx];
    /* The slot is freed now; the request, once its cancelled completion
     * is dequeued (or at once when nothing is pending). */
    int i = e->bidx;
    s->nreqs--;
    if (i != s->nreqs) {
      s->reqs[i] = s->reqs[s->nreqs];
      p->fds[s->reqs[i]->fd].bidx = i;
    }
    e->bidx = -1;
    q->want = 0;
    if (q->pending) {
      q->orphan = 1;
      s->norphans++;
      cancel(s, q);
    } else if (q->queued) {
      q->orphan = 1; /* the submit list drops and frees it */
    } else {
      req_free(s, q);
    }
    return 0;
  }
  if (!have) {
    if (!poller__win_is_socket(fd)) {
      p->stats.syscalls++;
      return poller__platform_fd_open(fd) ? -ENOTSOCK : -EBADF;
    }
    HANDLE base = base_handle((SOCKET)(uintptr_t)(unsigned)fd);
    if (!base)
      return -poller__win_errno(WSAGetLastError());
    if (s->nreqs == s->capreqs) {
      int cap = s->capreqs ? s->capreqs * 2 : 64;
      struct afd_req **a = realloc(s->reqs, (size_t)cap * sizeof *a);
      if (!a)
        return -ENOMEM;
      s->reqs = a;
      s->capreqs = cap;
    }
    struct afd_req *q = req_new(s);
    if (!q)
      return -ENOMEM;
    q->fd = fd;
    q->base = base;
    q->want = want;
    submit_push(s, q);
    e->bidx = s->nreqs;
    s->reqs[s->nreqs++] = q;
    return 0;
  }
  struct afd_req *q = s->reqs[e->bidx];
  if (want == q->want && !rearm)
    return 0;
  submit_push(s, q);
  q->want = want;
  cancel(s, q); /* its completion comes back cancelled: resubmitted */
  return 0;
}

/* Submits the request of q.  Returns 0, or a report for q in *bits when
 * the kernel refused it (a closed socket: NVAL). */
static int submit(poller *p, struct afd_state *s, struct afd_req *q) {
  q->info.timeout.QuadPart = INT64_MAX;
  q->info.count = 1;
  q->info.exclusive = FALSE;
  q->info.handles[0].handle = q->base;
  q->info.handles[0].events = afd_events(q->want);
  q->info.handles[0].status = 0;
  q->iosb.Status = STATUS_PENDING;
  p->stats.syscalls++;
  NTSTATUS st =
      nt_ioctl(s->port_base, NULL, NULL, &q->iosb, &q->iosb, IOCTL_AFD_POLL,
               &q->info, sizeof q->info, &q->info, sizeof q->info);
  if (st == STATUS_PENDING || st >= 0) {
    /* Success or pending: the completion is queued to the port either
     * way. */
    q->pending = 1;
    return 0;
  }
  return -1;
}

static int afd_wait_once(poller *p, poller_event *out, int max,
                         int timeout_ms, int *requeued) {
  struct afd_state *s = p->bstate;
  int k = 0;
  /* Submit what changed and what reported since the last wait.  A
   * request still pending (cancelled, its completion not yet dequeued)
   * is submitted when that completion arrives. */
  int keep = 0;
  for (int i = 0; i < s->nsubmit; i++) {
    struct afd_req *q = s->submit[i];
    if (q->orphan && !q->pending) {
      req_free(s, q);
      continue;
    }
    if (q->pending) {
      s->submit[keep++] = q;
      continue;
    }
    q->queued = 0;
    if (!q->want)
      continue; /* disarmed (ONESHOT fired) */
    if (submit(p, s, q) < 0 && k < max)
      out[k++] = (poller_event){
          .fd = q->fd, .events = POLLER_NVAL, .data = NULL, .gen = 0};
  }
  s->nsubmit = keep;
  if (k > 0)
    timeout_ms = 0;
  int room = max - k < AFD_BATCH ? max - k : AFD_BATCH;
  if (room <= 0)
    return k;
  ULONG n = 0;
  p->stats.syscalls++;
  if (!GetQueuedCompletionStatusEx(
          s->port, s->entries, (ULONG)room, &n,
          timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms, FALSE)) {
    DWORD err = GetLastError();
    if (err == WAIT_TIMEOUT)
      return k;
    return k > 0 ? k : -poller__win_errno((int)err);
  }
  for (ULONG i = 0; i < n; i++) {
    struct afd_req *q = (struct afd_req *)(void *)s->entries[i].lpOverlapped;
    if (!q)
      continue;
    q->pending = 0;
    if (q->orphan) {
      s->norphans--;
      if (!q->queued)
        req_free(s, q); /* else the submit list frees it */
      continue;
    }
    NTSTATUS st = q->iosb.Status;
    if (st == STATUS_CANCELLED || q->queued) {
      /* Cancelled for a change: the submit list has it. */
      submit_push(s, q);
      ++*requeued;
      continue;
    }
    unsigned bits = 0;
    if (st < 0)
      bits = POLLER_NVAL;
    else if (q->info.count >= 1)
      bits = poller_bits(q->info.handles[0].events);
    if (!(bits & POLLER_NVAL))
      bits &= q->want | POLLER_ERR | POLLER_HUP;
    if (q->want & POLLER_ONESHOT) {
      q->want = 0; /* native ONESHOT: nothing until the core re-arms */
    } else if (!(bits & POLLER_NVAL)) {
      submit_push(s, q); /* level: ask again at the next wait */
    }
    if (bits)
      out[k++] = (poller_event){
          .fd = q->fd, .events = bits, .data = NULL, .gen = 0};
  }
  return k;
}

static int afd_wait(poller *p, poller_event *out, int max, int timeout_ms) {
  /* A request cancelled for a change of interest comes back before its
   * replacement is submitted.  A blocking wait that got only such
   * completions returns 0 and the core waits again for the time left; a
   * zero-timeout wait must not miss the new request's answer, so it asks
   * again here, a bounded number of times. */
  for (int round = 0;; round++) {
    int requeued = 0;
    int k = afd_wait_once(p, out, max, timeout_ms, &requeued);
    if (k != 0 || !requeued || timeout_ms != 0 || round == 3)
      return k;
  }
}

static void afd_fini(poller *p) {
  struct afd_state *s = p->bstate;
  if (!s)
    return;
  /* Every pending request is cancelled and its completion awaited: the
   * kernel writes into the request's memory until then. */
  int pending = 0;
  for (int i = 0; i < s->nreqs; i++)
    if (s->reqs[i]->pending) {
      cancel(s, s->reqs[i]);
      pending++;
    }
  pending += s->norphans;
  while (pending > 0 && s->port) {
    ULONG n = 0;
    if (!GetQueuedCompletionStatusEx(s->port, s->entries, AFD_BATCH, &n, 5000,
                                     FALSE))
      break; /* leak rather than free memory the kernel may write */
    for (ULONG i = 0; i < n; i++) {
      struct afd_req *q = (struct afd_req *)(void *)s->entries[i].lpOverlapped;
      if (!q)
        continue;
      q->pending = 0;
      pending--;
      if (q->orphan && !q->queued)
        req_free(s, q);
    }
  }
  if (pending == 0) {
    for (int i = 0; i < s->nsubmit; i++)
      if (s->submit[i]->orphan)
        req_free(s, s->submit[i]);
    for (int i = 0; i < s->nreqs; i++)
      req_free(s, s->reqs[i]);
  }
  if (s->port_sock != INVALID_SOCKET)
    closesocket(s->port_sock);
  if (s->port)
    CloseHandle(s->port);
  free(s->submit);
  free(s->reqs);
  free(s);
  p->bstate = NULL;
}

static int afd_reinit(poller *p) {
  (void)p;
  return -ENOSYS; /* no fork on Windows: poller.h */
}

const struct poller__backend poller__backend_afd = {
    .id = POLLER_AFD,
    .name = "afd",
    .caps = POLLER_ONESHOT | POLLER__CAP_SYNC_ADD | POLLER__CAP_EDGE_PROBE,
    .probe = afd_probe,
    .init = afd_init,
    .fini = afd_fini,
    .ctl = afd_ctl,
    .wait = afd_wait,
    .fd = NULL,
    .reinit = afd_reinit,
};
