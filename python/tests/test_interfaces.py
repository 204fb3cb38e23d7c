# SPDX-License-Identifier: MIT
"""greenhouse's poller classes, pike's BasePoller, the low-level Poller and
bad input, on every backend usable here."""
import errno
import os
import signal
import sys
import socket
import threading
import time
import unittest

import poller
from poller import pike

BACKENDS = ["select", "poll", "epoll", "uring", "kqueue"]


def refused_error(backend):
    """The error a refused connect reaches handle_error with.  libkqueue
    (kqueue on Linux) reads SO_ERROR itself, which clears it, so there the
    transport only learns that the socket has no peer (ENOTCONN); native
    kqueue keeps ConnectionRefusedError."""
    if backend == "kqueue" and sys.platform.startswith("linux"):
        return OSError
    return ConnectionRefusedError


def connect_to_closed_port(test, transport_class, timeout):
    """Connects a transport_class channel to a closed 127.0.0.1 port on a
    pike.BasePoller of test.BACKEND and runs the loop for up to timeout
    seconds, so that the refusal reaches the channel's handlers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    bp = pike.BasePoller(test.BACKEND)
    test.addCleanup(bp.close)
    t = transport_class(socket.socket())
    test.addCleanup(t.socket.close)
    t.connect(("127.0.0.1", port))
    bp.add_channel(t)
    bp.loop(timeout=timeout)


def backend_cases(base):
    """One TestCase per backend; unusable backends are skipped with the
    reason."""
    out = {}
    for name in BACKENDS:
        attrs = {"BACKEND": name}
        if name not in poller.available():
            attrs["setUp"] = (lambda n: lambda self: self.skipTest(
                f"backend {n} not usable here"))(name)
        out[f"{base.__name__}_{name}"] = type(
            f"{base.__name__}_{name}", (base, unittest.TestCase), attrs)
    return out


class GreenhouseTests:
    def make(self):
        p = poller._GREENHOUSE[self.BACKEND]()
        self.addCleanup(p.close)
        return p

    def pair(self):
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        return a, b

    def test_masks(self):
        p = self.make()
        self.assertTrue(p.INMASK & poller.IN)
        self.assertEqual(p.OUTMASK, poller.OUT)
        self.assertTrue(p.ERRMASK & poller.ERR)

    def test_register_poll(self):
        p = self.make()
        a, b = self.pair()
        p.register(a, p.INMASK)
        self.assertEqual(p.poll(0), [])
        b.send(b"x")
        got = p.poll(2)
        self.assertEqual([fd for fd, m in got], [a.fileno()])
        self.assertTrue(got[0][1] & p.INMASK)

    def test_registration_stack(self):
        p = self.make()
        a, b = self.pair()
        p.register(a.fileno(), p.INMASK)
        p.register(a.fileno(), p.OUTMASK)      # pushed: OUT in force
        got = dict(p.poll(1))
        self.assertTrue(got[a.fileno()] & p.OUTMASK)
        b.send(b"x")
        p.unregister(a.fileno())               # popped: IN again
        got = dict(p.poll(1))
        self.assertEqual(got[a.fileno()] & (p.INMASK | p.OUTMASK), poller.IN)
        p.unregister(a.fileno())               # last entry: unregistered
        self.assertEqual(p.poll(0), [])
        with self.assertRaises(KeyError):
            p.unregister(a.fileno())

    def test_default_mask_is_everything(self):
        p = self.make()
        a, b = self.pair()
        p.register(a)
        got = dict(p.poll(1))
        self.assertTrue(got[a.fileno()] & poller.OUT)

    def test_poll_timeout_seconds(self):
        p = self.make()
        a, b = self.pair()
        p.register(a, p.INMASK)
        t0 = time.monotonic()
        self.assertEqual(p.poll(0.1), [])
        self.assertGreaterEqual(time.monotonic() - t0, 0.1)


    def test_bad_input(self):
        p = self.make()
        a, b = self.pair()
        with self.assertRaises(ValueError):
            p.register(-1, p.INMASK)
        with self.assertRaises(ValueError):
            p.register(a, 0)
        with self.assertRaises(ValueError):
            p.register(a, 1 << 20)
        with self.assertRaises(TypeError):
            p.register("fd", p.INMASK)
        with self.assertRaises(TypeError):
            p.register(a, "in")
        with self.assertRaises(KeyError):
            p.unregister(a)
        with self.assertRaises(TypeError):
            p.poll("soon")
        c, d = socket.socketpair()
        fd = c.fileno()
        c.close()
        d.close()
        with self.assertRaises(OSError) as cm:
            p.register(fd, p.INMASK)
        self.assertEqual(cm.exception.errno, errno.EBADF)
        # Still usable after every error above.
        p.register(a, p.INMASK)
        b.send(b"x")
        self.assertEqual([fd for fd, _ in p.poll(1)], [a.fileno()])
        p.close()
        with self.assertRaises(ValueError):
            p.poll(0)

    def test_poll_none_blocks_until_ready(self):
        p = self.make()
        a, b = self.pair()
        p.register(a, p.INMASK)
        t = threading.Timer(0.05, b.send, (b"x",))
        t.start()
        self.addCleanup(t.join)
        self.assertEqual([fd for fd, _ in p.poll(None)], [a.fileno()])

    def test_err_mask_on_hangup(self):
        p = self.make()
        a, b = self.pair()
        p.register(a, p.INMASK | p.ERRMASK)
        b.close()
        got = dict(p.poll(1))
        self.assertIn(a.fileno(), got)
        self.assertTrue(got[a.fileno()] & (p.INMASK | p.ERRMASK))


class BestAndDefault(unittest.TestCase):
    def test_best_set_get(self):
        b = poller.best()
        self.assertIsInstance(b, poller.Select)
        self.addCleanup(b.close)
        self.assertIs(poller.set(b), b)
        self.assertIs(poller.get(), b)
        fresh = poller.set()
        self.addCleanup(fresh.close)
        self.assertIsNot(fresh, b)
        self.assertIs(poller.get(), fresh)


class LowLevelTests:
    def make(self):
        p = poller.Poller(self.BACKEND)
        self.addCleanup(p.close)
        return p

    def test_backend_name(self):
        self.assertEqual(self.make().backend, self.BACKEND)

    def test_constants_are_the_select_modules(self):
        # The low-level bits are poll(2)'s, as the select module spells
        # them, so a mask built from select's constants means the same.
        import select
        pairs = [("IN", "POLLIN"), ("PRI", "POLLPRI"), ("OUT", "POLLOUT"),
                 ("ERR", "POLLERR"), ("HUP", "POLLHUP"),
                 ("NVAL", "POLLNVAL"), ("RDHUP", "POLLRDHUP")]
        if hasattr(select, "EPOLLET"):
            pairs += [("ET", "EPOLLET"), ("ONESHOT", "EPOLLONESHOT")]
        for ours, theirs in pairs:
            if not hasattr(select, theirs):
                continue
            with self.subTest(ours):
                self.assertEqual(getattr(poller._poller, ours) & 0xffffffff,
                                 getattr(select, theirs) & 0xffffffff)

    def test_register_select_pollout_watches_out(self):
        # register(fd, select.POLLOUT) watches writability, not PRI: an
        # idle connected socket is writable at once and has no urgent data.
        import select
        p = self.make()
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        p.register(a, select.POLLOUT)
        got = dict(p.poll(5))
        self.assertIn(a.fileno(), got)
        self.assertTrue(got[a.fileno()] & select.POLLOUT)
        self.assertFalse(got[a.fileno()] & select.POLLPRI)

    def test_register_select_pollpri_does_not_watch_out(self):
        # select.POLLPRI means urgent data only: a writable socket without
        # urgent data is not reported (it used to mean OUT, which spins).
        import select
        p = self.make()
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        p.register(a, select.POLLPRI)
        self.assertEqual(p.poll(0.05), [])

    def test_bad_input(self):
        p = self.make()
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        with self.assertRaises(ValueError):
            p.register(-1, poller.IN)
        with self.assertRaises(ValueError):
            p.register(a, 0)                   # empty mask
        with self.assertRaises(ValueError):
            p.register(a, 1 << 20)             # stray high bits
        with self.assertRaises(ValueError):
            p.register(a, -1)
        with self.assertRaises(TypeError):
            p.register("nope", poller.IN)
        with self.assertRaises(TypeError):
            p.poll("soon")
        with self.assertRaises(ValueError):
            p.poll(float("nan"))
        with self.assertRaises(FileNotFoundError):
            p.unregister(a)                    # unknown fd
        with self.assertRaises(FileNotFoundError):
            p.modify(a, poller.IN)
        c, d = socket.socketpair()
        fd = c.fileno()
        c.close()
        d.close()
        with self.assertRaises(OSError) as cm:
            p.register(fd, poller.IN)          # closed fd
        self.assertEqual(cm.exception.errno, errno.EBADF)
        p.register(a, poller.IN)
        with self.assertRaises(FileExistsError):
            p.register(a, poller.IN)
        p.unregister(a)
        with self.assertRaises(FileNotFoundError):
            p.unregister(a)                    # twice
        self.assertEqual(p.poll(0), [])        # still usable
        p.close()
        with self.assertRaises(ValueError):
            p.poll(0)                          # after close
        p.close()                              # twice is harmless

    def test_selector_bad_input(self):
        import selectors
        s = poller.SELECTORS[self.BACKEND]()
        self.addCleanup(s.close)
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        with self.assertRaises(ValueError):
            s.register(-1, selectors.EVENT_READ)
        with self.assertRaises(ValueError):
            s.register(a, 0)
        with self.assertRaises(ValueError):
            s.register(a, 4)
        with self.assertRaises(KeyError):
            s.unregister(a)
        s.register(a, selectors.EVENT_READ)
        with self.assertRaises(KeyError):
            s.register(a, selectors.EVENT_READ)
        a.close()
        s.unregister(a)                        # after close: succeeds
        self.assertEqual(s.select(0), [])

    def test_constructor_bad_input(self):
        with self.assertRaises(ValueError):
            poller.Poller("no-such-backend")
        with self.assertRaises(TypeError):
            poller.Poller(3.5)
        with self.assertRaises(ValueError):
            poller.Poller(99)

    def test_push_pop_get_depth(self):
        p = self.make()
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        p.push(a, poller.IN, "first")
        p.push(a, poller.OUT, "second")
        self.assertEqual(p.depth(a), 2)
        self.assertEqual(p.get(a), (poller.OUT, "second"))
        self.assertEqual(p.pop(a), 1)
        self.assertEqual(p.get(a), (poller.IN, "first"))
        self.assertEqual(p.pop(a), 0)
        with self.assertRaises(FileNotFoundError):
            p.get(a)
        with self.assertRaises(FileNotFoundError):
            p.pop(a)

    def test_references_released(self):
        p = self.make()
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        data, other = object(), object()
        base = sys.getrefcount(data), sys.getrefcount(other)
        p.register(a, poller.IN, data)
        self.assertEqual(sys.getrefcount(data), base[0] + 1)
        p.modify(a, poller.IN, other)          # data-only change
        self.assertEqual((sys.getrefcount(data), sys.getrefcount(other)),
                         (base[0], base[1] + 1))
        p.push(b, poller.IN, data)
        p.push(b, poller.OUT, data)
        p.unregister(b)                        # the whole stack
        self.assertEqual(sys.getrefcount(data), base[0])
        p.push(b, poller.IN, data)
        p.push(b, poller.OUT, data)
        p.close()                              # every registration
        self.assertEqual((sys.getrefcount(data), sys.getrefcount(other)), base)

    def test_cycle_through_data_is_collected(self):
        import gc
        import weakref

        class Holder:
            pass

        h = Holder()
        h.poller = poller.Poller(self.BACKEND)
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        h.poller.register(a, poller.IN, h)     # h -> Poller -> h
        ref = weakref.ref(h)
        del h
        gc.collect()
        self.assertIsNone(ref())

    def test_timeouts(self):
        p = self.make()
        t0 = time.monotonic()
        self.assertEqual(p.poll(0), [])
        self.assertEqual(p.poll(0.0001), [])  # rounded up to 1 ms
        with self.assertRaises(OverflowError):
            p.poll(1e300)
        p.wakeup()
        self.assertEqual(p.poll(-1), [])       # negative blocks: the wakeup ends it
        p.wakeup()
        self.assertEqual(p.wait(None), [])     # wait is poll
        self.assertLess(time.monotonic() - t0, 2)

    def test_other_thread_cannot_change_registrations_during_poll(self):
        p = self.make()
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        p.register(a, poller.IN)
        started = threading.Event()
        result = []

        def waiter():
            started.set()
            result.append(p.poll(2.0))

        t = threading.Thread(target=waiter)
        t.start()
        started.wait()
        time.sleep(0.1)
        try:
            with self.assertRaises(RuntimeError):
                p.register(b, poller.IN)
            with self.assertRaises(RuntimeError):
                p.modify(a, poller.OUT)
            with self.assertRaises(RuntimeError):
                p.unregister(a)
            with self.assertRaises(RuntimeError):
                p.get(a)
            with self.assertRaises(RuntimeError):
                p.close()
        finally:
            p.wakeup()
            t.join()
        self.assertEqual(result, [[]])
        p.unregister(a)                        # allowed again
        self.assertEqual(p.count(), 0)

    def test_reinit_in_forked_child(self):
        p = self.make()
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        p.register(a, poller.IN, "data")
        b.send(b"x")
        pid = os.fork()
        if pid == 0:  # the child: exit status says what it saw
            code = 1
            try:
                p.reinit()
                got = p.poll(1)
                code = 0 if (got == [(a.fileno(), poller.IN)] and
                             p.get(a) == (poller.IN, "data")) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        self.assertEqual(p.poll(1), [(a.fileno(), poller.IN)])  # parent unaffected

    def test_concurrent_poll_raises(self):
        p = self.make()
        started = threading.Event()
        result = []

        def waiter():
            started.set()
            result.append(p.poll(1.0))

        t = threading.Thread(target=waiter)
        t.start()
        started.wait()
        time.sleep(0.1)
        with self.assertRaises(RuntimeError):
            p.poll(0)
        p.wakeup()
        t.join()
        self.assertEqual(result, [[]])

    def test_signal_that_raises_interrupts(self):
        p = self.make()

        def boom(signum, frame):
            raise KeyboardInterrupt

        old = signal.signal(signal.SIGALRM, boom)
        self.addCleanup(signal.signal, signal.SIGALRM, old)
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        t0 = time.monotonic()
        with self.assertRaises(KeyboardInterrupt):
            p.poll(5)
        self.assertLess(time.monotonic() - t0, 2.5)
        self.assertEqual(p.poll(0), [])

    def test_signal_that_returns_keeps_waiting(self):
        p = self.make()
        calls = []
        old = signal.signal(signal.SIGALRM, lambda s, f: calls.append(s))
        self.addCleanup(signal.signal, signal.SIGALRM, old)
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        t0 = time.monotonic()
        self.assertEqual(p.poll(0.5), [])
        el = time.monotonic() - t0
        self.assertEqual(calls, [signal.SIGALRM])
        self.assertGreaterEqual(el, 0.5)
        self.assertLess(el, 1.2)


class PikeTests:
    def test_connect_read_deferred_write_close(self):
        srv = socket.socket()
        self.addCleanup(srv.close)
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        events = []

        class Client(pike.Transport):
            def handle_connect(self):
                events.append("connect")
                self.out = b"ping"
                self.poller.defer_write(self)

            def handle_write(self):
                self.socket.send(self.out)
                events.append("write")

            def handle_read(self):
                data = self.socket.recv(100)
                if data:
                    events.append(("read", data))
                else:
                    events.append("close")
                    self.handle_close()

        bp = pike.BasePoller(self.BACKEND)
        self.addCleanup(bp.close)
        c = Client(socket.socket())
        self.addCleanup(c.socket.close)
        c.connect(srv.getsockname())
        bp.add_channel(c)
        # Not connected yet: writability is watched (connect completion).
        bp.loop(timeout=2, count=1)
        self.assertEqual(events[:1], ["connect"])
        peer, _ = srv.accept()
        self.addCleanup(peer.close)
        bp.loop(timeout=2, count=1)
        self.assertIn("write", events)
        self.assertEqual(peer.recv(10), b"ping")
        # No deferred write: an idle connection does not wake the loop.
        self.assertEqual(bp._poller.get(c.fileno())[0], poller.IN)
        peer.send(b"pong")
        bp.loop(timeout=2, count=1)
        self.assertIn(("read", b"pong"), events)
        peer.close()
        bp.loop(timeout=2)
        self.assertEqual(events[-1], "close")
        self.assertEqual(bp.connections, {})

    def test_connect_refused_is_an_error(self):
        errors = []

        class Client(pike.Transport):
            def handle_connect(self):
                errors.append("connected?!")

            def handle_error(self):  # pike's signature
                errors.append(sys.exc_info()[1])
                self.handle_close()

        connect_to_closed_port(self, Client, timeout=2)
        self.assertEqual(len(errors), 1)
        self.assertIsInstance(errors[0], refused_error(self.BACKEND))


class PikeMoreTests:
    def server(self):
        srv = socket.socket()
        self.addCleanup(srv.close)
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        return srv

    def test_not_connected_after_read_closes(self):
        """A handle_read that leaves the transport not connected makes
        process_readables call handle_close (pike's rule)."""
        srv = self.server()
        closes = []

        class Client(pike.Transport):
            def handle_read(self):
                if not self.socket.recv(100):
                    self.connected = False

            def handle_close(self):
                closes.append(self.fileno())
                super().handle_close()

        bp = pike.BasePoller(self.BACKEND)
        self.addCleanup(bp.close)
        c = Client(socket.socket())
        self.addCleanup(c.socket.close)
        c.connect(srv.getsockname())
        bp.add_channel(c)
        peer, _ = srv.accept()
        bp.loop(timeout=2, count=1)
        self.assertTrue(c.connected)
        peer.close()
        bp.loop(timeout=2)
        self.assertEqual(len(closes), 1)
        self.assertFalse(c.connected)
        self.assertEqual(bp.connections, {})

    def test_handler_exception_goes_to_handle_error(self):
        srv = self.server()

        class Client(pike.Transport):
            def handle_read(self):
                raise ZeroDivisionError

        bp = pike.BasePoller(self.BACKEND)
        self.addCleanup(bp.close)
        c = Client(socket.socket())
        self.addCleanup(c.socket.close)
        c.connect(srv.getsockname())
        bp.add_channel(c)
        peer, _ = srv.accept()
        self.addCleanup(peer.close)
        bp.loop(timeout=2, count=1)
        peer.send(b"x")
        bp.loop(timeout=2)
        self.assertIsInstance(c.error, ZeroDivisionError)
        self.assertEqual(bp.connections, {})
        self.assertEqual(c.socket.fileno(), -1)

    def test_writability_watched_only_while_needed(self):
        srv = self.server()
        writes = []

        class Client(pike.Transport):
            def handle_write(self):
                writes.append(self.socket.send(b"data"))

        bp = pike.BasePoller(self.BACKEND)
        self.addCleanup(bp.close)
        c = Client(socket.socket())
        self.addCleanup(c.socket.close)
        c.connect(srv.getsockname())
        bp.add_channel(c)
        fd = c.fileno()
        self.assertEqual(bp._poller.get(fd)[0], poller.IN | poller.OUT)  # connecting
        peer, _ = srv.accept()
        self.addCleanup(peer.close)
        bp.loop(timeout=2, count=1)
        self.assertTrue(c.connected)
        self.assertEqual(bp._poller.get(fd)[0], poller.IN)      # idle
        self.assertEqual(bp.loop(timeout=0.1), 1)               # nothing to do
        self.assertEqual(writes, [])
        bp.defer_write(c)
        self.assertEqual(bp._poller.get(fd)[0], poller.IN | poller.OUT)
        bp.loop(timeout=2, count=1)
        self.assertEqual(writes, [4])
        self.assertEqual(bp._poller.get(fd)[0], poller.IN)
        self.assertEqual(peer.recv(10), b"data")

    def test_echo_between_two_transports(self):
        """A server transport made from an accepted socket (connected=True)
        and a client; the client's deferred write reaches the server, which
        echoes it back with a deferred write of its own."""
        srv = self.server()
        got = []

        class Peer(pike.Transport):
            def __init__(self, *a, **kw):
                super().__init__(*a, **kw)
                self.out = b""

            def handle_read(self):
                data = self.socket.recv(4096)
                if not data:
                    self.connected = False
                    return
                self.on_data(data)

            def handle_write(self):
                n = self.socket.send(self.out)
                self.out = self.out[n:]
                if self.out:
                    self.poller.defer_write(self)

        class Server(Peer):
            def on_data(self, data):
                self.out += data
                self.poller.defer_write(self)

        class Client(Peer):
            def handle_connect(self):
                self.out = b"hello" * 1000
                self.poller.defer_write(self)

            def on_data(self, data):
                got.append(data)
                if sum(map(len, got)) == 5000:
                    self.handle_close()

        bp = pike.BasePoller(self.BACKEND)
        self.addCleanup(bp.close)
        c = Client(socket.socket())
        self.addCleanup(c.socket.close)
        c.connect(srv.getsockname())
        bp.add_channel(c)
        conn, _ = srv.accept()
        conn.setblocking(False)
        s = Server(conn, connected=True)
        self.addCleanup(conn.close)
        bp.add_channel(s)
        bp.loop(timeout=5, count=200)
        self.assertEqual(b"".join(got), b"hello" * 1000)
        self.assertNotIn(c, bp.connections.values())

    def test_del_channel_after_socket_closed(self):
        srv = self.server()
        bp = pike.BasePoller(self.BACKEND)
        self.addCleanup(bp.close)
        c = pike.Transport(socket.socket())
        self.addCleanup(c.socket.close)
        c.connect(srv.getsockname())
        bp.add_channel(c)
        c.socket.close()
        bp.del_channel(c)
        self.assertEqual(bp.connections, {})
        self.assertEqual(bp._poller.count(), 0)
        with self.assertRaises(KeyError):
            bp.defer_write(c)


class PikeDocumentedSubclass:
    """A Transport subclass written as pike documents it: handle_error
    takes no argument (pike calls it inside its except block, so the error
    is sys.exc_info()), and process_writables calls handle_write for every
    connected transport in writables, deferred write or not."""

    def connected_pair(self, cls):
        srv = socket.socket()
        self.addCleanup(srv.close)
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        bp = pike.BasePoller(self.BACKEND)
        self.addCleanup(bp.close)
        t = cls(socket.socket())
        self.addCleanup(t.socket.close)
        t.connect(srv.getsockname())
        bp.add_channel(t)
        peer, _ = srv.accept()
        self.addCleanup(peer.close)
        bp.loop(timeout=5, count=1)
        self.assertTrue(t.connected)
        return bp, t, peer

    def test_handler_error_reaches_pike_style_handle_error(self):
        seen = []

        class Conn(pike.Transport):
            def handle_read(self):
                raise ZeroDivisionError("from handle_read")

            def handle_error(self):
                seen.append(sys.exc_info()[1])
                self.handle_close()

        bp, t, peer = self.connected_pair(Conn)
        peer.send(b"x")
        bp.loop(timeout=5)                     # no TypeError
        self.assertEqual(len(seen), 1)
        self.assertIsInstance(seen[0], ZeroDivisionError)
        self.assertEqual(bp.connections, {})

    def test_failed_connect_reaches_pike_style_handle_error(self):
        seen = []

        class Conn(pike.Transport):
            def handle_error(self):
                seen.append(sys.exc_info()[1])
                self.handle_close()

        connect_to_closed_port(self, Conn, timeout=5)
        self.assertEqual(len(seen), 1)
        self.assertIsInstance(seen[0], refused_error(self.BACKEND))

    def test_process_writables_writes_connected_without_deferred_write(self):
        writes = []

        class Conn(pike.Transport):
            def handle_write(self):
                writes.append(self.socket.send(b"w"))

        bp, t, peer = self.connected_pair(Conn)
        self.assertNotIn(t.fileno(), bp.deferred_writers)
        bp.process_writables([t.fileno()])
        self.assertEqual(writes, [1])
        self.assertEqual(peer.recv(10), b"w")
        # Writability is still watched only for deferred writes.
        self.assertEqual(bp._poller.get(t.fileno())[0], poller.IN)


globals().update(backend_cases(PikeDocumentedSubclass))
globals().update(backend_cases(GreenhouseTests))
globals().update(backend_cases(PikeMoreTests))
globals().update(backend_cases(LowLevelTests))
globals().update(backend_cases(PikeTests))

if __name__ == "__main__":
    unittest.main()
