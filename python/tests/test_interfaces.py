"""greenhouse's poller classes, pike's BasePoller, the low-level Poller and
bad input, on every backend usable here."""
import errno
import os
import signal
import socket
import threading
import time
import unittest

import poller
from poller import pike

BACKENDS = ["select", "poll", "epoll", "uring", "kqueue"]


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
        cls = {"select": poller.Select, "poll": poller.Poll,
               "epoll": poller.Epoll, "uring": poller.URing,
               "kqueue": poller.KQueue}[self.BACKEND]
        p = cls()
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
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        errors = []

        class Client(pike.Transport):
            def handle_connect(self):
                errors.append("connected?!")

            def handle_error(self, exc=None):
                errors.append(exc)
                self.handle_close()

        bp = pike.BasePoller(self.BACKEND)
        self.addCleanup(bp.close)
        c = Client(socket.socket())
        c.connect(("127.0.0.1", port))
        bp.add_channel(c)
        bp.loop(timeout=2)
        self.assertEqual(len(errors), 1)
        self.assertIsInstance(errors[0], ConnectionRefusedError)


globals().update(backend_cases(GreenhouseTests))
globals().update(backend_cases(LowLevelTests))
globals().update(backend_cases(PikeTests))

if __name__ == "__main__":
    unittest.main()
