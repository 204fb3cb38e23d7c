/* SPDX-License-Identifier: MIT */
/*
 * poller_transport.h - buffered connections and listeners on a poller_loop,
 * after pike's BasePoller (add_channel, del_channel, defer_write and the
 * handle_connect_event / handle_read / handle_write / handle_close /
 * handle_error handlers).  pike is a Python SMB2/3 protocol test framework;
 * its transport module drives connections through a BasePoller.
 *
 * Conventions: as poller.h (0 or -errno, never errno).  Every callback runs
 * from the loop, on the loop's thread.  Closing a transport or listener,
 * this one or any other, is safe from inside any callback: the object is
 * freed later by the loop, and no callback runs for it once closed, even
 * for events of the same batch.  A call that fails never invokes a callback.
 *
 * A transport's lifetime: created by poller_transport_adopt or
 * poller_transport_connect; ends with poller_transport_close by the
 * application, or after on_error (the transport closes itself when the
 * handler returns).  After close the pointer must not be used.
 *
 * SIGPIPE is never raised by a transport, whatever its fd: sockets send
 * with MSG_NOSIGNAL (or the socket option SO_NOSIGPIPE where that is the
 * BSD way); other descriptors (pipes, ttys) are written with SIGPIPE
 * blocked in the calling thread, and a SIGPIPE the write caused is
 * consumed before the mask is restored.  A closed reader shows as -EPIPE.
 *
 * Windows: fds are Winsock sockets (the SOCKET value as an int, as
 * poller.h); transports and listeners work over TCP (IPv4 and IPv6),
 * with send and recv, Winsock errors mapped to -errno, and no SIGPIPE
 * (Winsock never raises one).  Adopting anything but a socket fails with
 * -ENOTSOCK; Unix domain addresses ("unix:...") parse, but connecting or
 * listening on one fails with -EAFNOSUPPORT.  The listener's spare
 * descriptor for EMFILE does not exist there, and SO_REUSEADDR is not
 * set (on Windows it would let another socket take the port).
 */
#ifndef POLLER_TRANSPORT_H
#define POLLER_TRANSPORT_H

#include "poller_loop.h"

#include <stddef.h>
#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <sys/socket.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct poller_transport poller_transport;
typedef struct poller_listener poller_listener;

/* The handlers of a transport.  Any of them may be NULL.
 *  on_connect: a connect completed (once; never together with on_error
 *              for the same attempt).
 *  on_read:    bytes arrived.  buf belongs to the transport and is valid
 *              only during the call.
 *  on_close:   the peer finished sending (EOF).  Reading stops; writing
 *              still works (a half-closed peer may still read), so the
 *              handler usually answers and/or calls poller_transport_close.
 *              With a NULL on_close the transport closes itself (flush).
 *  on_error:   a connect failed (-ECONNREFUSED, -ETIMEDOUT, -ENOENT...),
 *              the connection broke (-ECONNRESET, -EPIPE...), or the loop
 *              could no longer watch the fd (its registration was refused:
 *              -EBADF when the fd was closed behind the transport, -EIO
 *              when the kernel refused to keep watching it).  Called at
 *              most once; the transport is closed (queue discarded) when
 *              the handler returns.
 *  on_high_water: the write queue grew above the high mark (see
 *              poller_transport_set_water); called from inside
 *              poller_transport_write, as asyncio's pause_writing, so the
 *              producer may stop at once.
 *  on_drain:   after on_high_water, the queue fell to the low mark or
 *              below; the producer may resume. */
typedef struct poller_transport_cbs {
  void (*on_connect)(poller_transport *t);
  void (*on_read)(poller_transport *t, const void *buf, size_t len);
  void (*on_close)(poller_transport *t);
  void (*on_error)(poller_transport *t, int err);
  void (*on_high_water)(poller_transport *t, size_t queued);
  void (*on_drain)(poller_transport *t);
} poller_transport_cbs;

/* Counters of one transport (poller_transport_stats). */
typedef struct poller_transport_stats {
  unsigned long long bytes_read;    /* delivered to on_read */
  unsigned long long bytes_written; /* accepted by the kernel */
  size_t queued;                    /* bytes waiting in the write queue */
  size_t queue_mem;                 /* memory the queue holds now */
  size_t queue_mem_max;             /* the most it ever held */
  unsigned long long high_water;    /* on_high_water calls */
  unsigned long long drain;         /* on_drain calls */
} poller_transport_stats;

/* ---- addresses ---- */

/* Parses "A.B.C.D:port", "[v6]:port" or "unix:/path" (an abstract Linux
 * name as "unix:@name") into *ss and *len.  Numeric addresses only: no
 * name resolution, so it never blocks.
 * Returns 0; -EFAULT for NULL; -EINVAL for a malformed address or port;
 * -ENAMETOOLONG for a Unix path that does not fit sun_path. */
int poller_sockaddr_parse(const char *addr, struct sockaddr_storage *ss,
                          socklen_t *len);

/* Writes "A.B.C.D:port", "[v6]:port" or "unix:/path" for *sa into buf
 * (size bytes, truncated and NUL-terminated).  Returns 0; -EFAULT for NULL;
 * -EAFNOSUPPORT for another family. */
int poller_sockaddr_format(const struct sockaddr *sa, socklen_t len,
                           char *buf, size_t size);

/* ---- transports ---- */

/* Makes a transport of fd, a connected stream socket (or any stream fd),
 * and starts reading (a write-only fd, such as a pipe's write end, is
 * only written).  The transport owns fd from now on (it sets
 * O_NONBLOCK and FD_CLOEXEC, and closes fd at the end).
 * Returns 0 and stores the transport in *t; -EFAULT for NULL loop, t or
 * cbs; -EBADF for a bad fd; -ENOMEM; or poller_io_start's error.  On
 * failure fd is left open and *t is NULL. */
int poller_transport_adopt(poller_loop *loop, poller_transport **t, int fd,
                           const poller_transport_cbs *cbs, void *data);

/* Connects to sa (AF_INET, AF_INET6 or AF_UNIX) without blocking.  The
 * result comes later from the loop: exactly one of on_connect or on_error
 * (-ECONNREFUSED, -ENOENT for a missing Unix path, -ETIMEDOUT when
 * timeout_ms (> 0) passes first, -ENETUNREACH..., and -EAGAIN when the
 * kernel refused to start the connect at all: an AF_UNIX listener whose
 * backlog is full, or no ephemeral TCP port left; there is no retry, the
 * caller decides).  Completion is found by
 * writability plus getsockopt(SO_ERROR); a refused connect that epoll
 * reports as ERR|HUP without OUT counts as refused (tornado#223,
 * ponyc#5045).  Writes made before the connect completes are queued and
 * sent after it.
 * Returns 0; -EFAULT for NULL; -EINVAL for a bad length;
 * -EAFNOSUPPORT; -ENOMEM; -EMFILE/-ENFILE from socket(2).  After a failed
 * call no callback runs and *t is NULL. */
int poller_transport_connect(poller_loop *loop, poller_transport **t,
                             const struct sockaddr *sa, socklen_t len,
                             int timeout_ms, const poller_transport_cbs *cbs,
                             void *data);

/* Queues len bytes for sending, after everything queued before.  What the
 * kernel takes at once is written at once and the rest is copied (once)
 * into the queue; the transport watches writability only while the queue
 * is not empty (pike's defer_write).  May call on_high_water before it
 * returns.  len 0 is a no-op.
 * Returns 0; -EFAULT for NULL t or NULL buf with len > 0; -EPIPE after
 * poller_transport_shutdown or close was asked; -ENOMEM (nothing queued);
 * or the kernel's error (-ECONNRESET, -EPIPE...), which is also reported
 * once through on_error from the loop afterwards. */
int poller_transport_write(poller_transport *t, const void *buf, size_t len);

/* Sets the write queue's marks: on_high_water when the queue grows above
 * high, on_drain when it falls to low or below after that.  Defaults:
 * 64 KiB and 16 KiB (as asyncio).  Returns 0; -EFAULT; -EINVAL for
 * low > high. */
int poller_transport_set_water(poller_transport *t, size_t high, size_t low);

/* Stops delivering on_read (the socket is no longer watched for input, so
 * the kernel's buffers fill and TCP slows the peer down).  Idempotent.
 * Returns 0; -EFAULT; -EPIPE on a closed transport. */
int poller_transport_pause(poller_transport *t);

/* Resumes reading after poller_transport_pause.  Idempotent; no effect
 * after EOF.  Returns 0; -EFAULT; -EPIPE on a closed transport. */
int poller_transport_resume(poller_transport *t);

/* Half-closes: once the queue is flushed, shutdown(SHUT_WR), so the peer
 * reads EOF after the last byte.  Reading goes on until EOF.  Later writes
 * fail with -EPIPE.  Idempotent.  Returns 0; -EFAULT; -EPIPE on a closed
 * transport; -ENOTCONN while a connect is in progress. */
int poller_transport_shutdown(poller_transport *t);

/* Closes the transport.  flush != 0: stop reading, send what is queued,
 * then close the socket (no callback runs any more; a failure while
 * flushing is dropped).  flush == 0: close now, discarding the queue.
 * The memory is freed by the loop after the current callback returns.
 * Safe from any callback.  Calling it twice is a no-op. */
void poller_transport_close(poller_transport *t, int flush);

/* Returns the transport's fd (-1 once closed), its user data, its loop. */
int poller_transport_fd(const poller_transport *t);
void *poller_transport_data(const poller_transport *t);
void poller_transport_set_data(poller_transport *t, void *data);
poller_loop *poller_transport_loop(const poller_transport *t);

/* Returns the bytes waiting in the write queue (0 for NULL). */
size_t poller_transport_queued(const poller_transport *t);

/* Copies the transport's counters into *st.  Returns 0 or -EFAULT. */
int poller_transport_stats_get(const poller_transport *t,
                               poller_transport_stats *st);

/* ---- listeners ---- */

/* Called for each accepted connection.  fd is non-blocking and
 * close-on-exec, and belongs to the handler (typically passed to
 * poller_transport_adopt, or closed). */
typedef void (*poller_accept_cb)(poller_listener *l, int fd, void *data);

/* Binds a stream socket to sa (AF_INET, AF_INET6 with IPV6_V6ONLY, or
 * AF_UNIX; SO_REUSEADDR on TCP), listens with `backlog` (<= 0: SOMAXCONN)
 * and starts accepting.  Port 0 picks a free port: see
 * poller_listener_address.  A Unix path is not unlinked first.
 * Returns 0; -EFAULT; -EINVAL; -EADDRINUSE; -EACCES; -EMFILE; -ENOMEM...
 * (the kernel's error); *l is NULL on failure. */
int poller_listener_open(poller_loop *loop, poller_listener **l,
                         const struct sockaddr *sa, socklen_t len,
                         int backlog, poller_accept_cb cb, void *data);

/* Starts accepting on fd, a listening stream socket the listener owns
 * from now on (closes it at the end).  Returns 0; -EFAULT; -EBADF;
 * -EINVAL when fd does not listen; -ENOMEM; poller_io_start's errors.
 * On failure fd is left open. */
int poller_listener_adopt(poller_loop *loop, poller_listener **l, int fd,
                          poller_accept_cb cb, void *data);

/* Accepting: at most 64 connections per readiness report, so one busy
 * listener cannot starve the other fds of the loop.  EMFILE/ENFILE are
 * handled without spinning (libuv#315, #690): the listener
 * keeps a reserve descriptor (/dev/null); when accept fails for lack of
 * descriptors it closes the reserve, accepts the connection and closes it
 * at once (shedding it: the peer sees EOF), then reopens the reserve.
 * When that is impossible too, it stops watching the listening socket and
 * retries on a timer every 100 ms, so the loop sleeps instead of seeing
 * the same ready listener over and over. */

/* A listener whose registration was refused (POLLER_NVAL) watches
 * its socket again from the same 100 ms retry timer. */

/* Stores the bound address in *ss and *len (getsockname).  Returns 0; -EFAULT;
 * the kernel's error. */
int poller_listener_address(const poller_listener *l,
                            struct sockaddr_storage *ss, socklen_t *len);

/* Returns the listening fd (-1 once closed), and the listener's loop. */
int poller_listener_fd(const poller_listener *l);
poller_loop *poller_listener_loop(const poller_listener *l);

/* Returns the number of connections shed for lack of descriptors, and the
 * number of times accepting was paused on the retry timer. */
unsigned long long poller_listener_shed(const poller_listener *l);
unsigned long long poller_listener_paused(const poller_listener *l);

/* Stops accepting and closes the socket (and the reserve descriptor).  A
 * Unix socket's path is not removed.  Safe from any callback; the memory
 * is freed by the loop.  NULL and a second call are ignored. */
void poller_listener_close(poller_listener *l);

#ifdef __cplusplus
}
#endif
#endif /* POLLER_TRANSPORT_H */
