# SPDX-License-Identifier: MIT
"""The references the low-level Poller holds, and its guards against other
threads and forks, on every backend usable here: what a garbage-collector
finalizer, a fileno() method written in Python, a kernel that refuses a
change, or a fork taken while another thread polls can do to it."""
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest

import poller

BACKENDS = ["select", "poll", "epoll", "uring", "kqueue"]


def wait_until_polling(p, deadline=30.0):
    """Returns once another thread is inside p.poll(): only then does
    reading the registrations from this thread raise RuntimeError."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            p.depth(0)
        except RuntimeError:
            return
        time.sleep(0.001)
    raise AssertionError("the polling thread never started its wait")


class Lifetimes:
    def make(self):
        p = poller.Poller(self.BACKEND)
        self.addCleanup(p.close)
        return p

    def pair(self):
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        return a, b

    def test_select_keys_survives_finalizer_that_unregisters(self):
        """select_keys() takes its reference to a registration's data
        before allocating the result tuple: the allocation may run the
        garbage collector, and a finalizer that unregisters every fd then
        must not free the data being returned.  Run in a child interpreter,
        since the failure is a use after free."""
        code = textwrap.dedent(f"""
            import gc, socket, sys, weakref
            import poller
            for attempt in range(5):
                p = poller.Poller({self.BACKEND!r})
                pairs = [socket.socketpair() for _ in range(8)]
                refs = []
                for a, b in pairs:
                    d = type("Data", (), {{}})()
                    refs.append(weakref.ref(d))
                    p.register(a, poller.IN, d)
                    del d
                    b.send(b"x")
                class Bomb:
                    def __init__(self):
                        self.cycle = self
                    def __del__(self):
                        for a, b in pairs:
                            try:
                                p.unregister(a)
                            except OSError:
                                pass
                # Empties the free list of 2-tuples, so the result's tuples
                # are new GC allocations, which run the collector.
                keep = [(i, i) for i in range(5000)]
                Bomb()
                old = gc.get_threshold()
                gc.set_threshold(1)
                try:
                    res = p.select_keys(5)
                finally:
                    gc.set_threshold(*old)
                alive = sum(r() is not None for r in refs)
                if len(res) > alive:
                    sys.exit(f"{{len(res)}} keys returned, {{alive}} alive")
                for key, ev in res:
                    assert type(key).__name__ == "Data" and ev == 1
                del res, keep
                for a, b in pairs:
                    a.close()
                    b.close()
                p.close()
        """)
        env = dict(os.environ)
        r = subprocess.run([sys.executable, "-c", code], capture_output=True,
                           text=True, env=env, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])

    def test_flush_refusal_releases_references_at_unregister(self):
        """flush() applies a queued change the kernel refuses (the fd was
        closed behind the poller): libpoller keeps the registration,
        disarmed, until unregister(), which releases the references to its
        data (the whole stack), not leaked."""
        p = self.make()
        a, b = socket.socketpair()
        self.addCleanup(b.close)
        d1, d2 = object(), object()
        base = sys.getrefcount(d1), sys.getrefcount(d2)
        fd = a.fileno()
        p.push(a, poller.IN, d1)
        p.flush()                            # in the kernel now
        p.push(a, poller.OUT, d2)            # a change, queued
        a.close()
        try:
            p.flush()
        except OSError:
            pass                             # epoll: EBADF, disarmed
        p.unregister(fd)
        try:
            p.poll(0)
        except OSError:
            pass
        p.close()
        self.assertEqual((sys.getrefcount(d1), sys.getrefcount(d2)), base)

    def test_flush_refusal_keeps_registration(self):
        """After a flush whose change the kernel refused (epoll: EBADF),
        the registration stays (disarmed) with its references until
        unregister(), which succeeds and releases them, and the poller
        stays usable."""
        p = self.make()
        a, b = socket.socketpair()
        self.addCleanup(b.close)
        fd = a.fileno()
        data = object()
        base = sys.getrefcount(data)
        p.register(a, poller.IN, data)
        p.flush()
        p.modify(a, poller.OUT)
        a.close()
        try:
            p.flush()
        except OSError:
            pass
        self.assertEqual(p.count(), 1)
        p.unregister(fd)
        self.assertEqual(sys.getrefcount(data), base)
        self.assertEqual(p.count(), 0)
        c, d = self.pair()
        p.register(c, poller.IN)
        d.send(b"x")
        self.assertEqual(p.poll(5), [(c.fileno(), poller.IN)])

    def test_close_with_refused_report_pending(self):
        """A registration refused at a wait whose report did not fit in
        maxevents (an always-ready regular file took the one slot) is still
        pending when the poller is closed: its data's reference is released
        all the same.  libpoller leaves every other wait's slots to the
        kernel's reports, so both parities of the wait count are tried."""
        for extra_waits in (0, 1):
            p = poller.Poller(self.BACKEND)
            f = tempfile.TemporaryFile()
            self.addCleanup(f.close)
            a, b = socket.socketpair()
            self.addCleanup(b.close)
            data = object()
            base = sys.getrefcount(data)
            p.register(f, poller.IN)         # always ready: fills max=1
            p.register(a, poller.IN, data)
            for _ in range(1 + extra_waits):
                p.poll(0)
            p.modify(a, poller.OUT)
            a.close()
            p.poll(0, maxevents=1)
            p.close()
            self.assertEqual(sys.getrefcount(data), base, extra_waits)

    def test_unregister_with_refused_report_pending(self):
        """A registration refused at a wait whose report did not fit in
        maxevents, then unregistered before the next wait: unregister()
        releases the data at once, and the report libpoller still holds
        (with the data's old address) is not turned into a reference to the
        freed object at the next waits.  Run in a child interpreter, since
        the failure is a use after free."""
        code = textwrap.dedent(f"""
            import socket, sys, tempfile, weakref
            import poller
            for extra_waits in (0, 1):
                p = poller.Poller({self.BACKEND!r})
                f = tempfile.TemporaryFile()
                a, b = socket.socketpair()
                fd = a.fileno()
                class Data:
                    pass
                d = Data()
                ref = weakref.ref(d)
                p.register(f, poller.IN)      # always ready: fills max=1
                p.register(a, poller.IN, d)
                del d
                for _ in range(1 + extra_waits):
                    p.poll(0)
                p.modify(a, poller.OUT)
                a.close()
                p.poll(0, maxevents=1)
                try:
                    p.unregister(fd)
                except FileNotFoundError:
                    pass
                if ref() is not None:
                    sys.exit("the data outlived unregister()")
                junk = [Data() for _ in range(1000)]  # reuse the memory
                for _ in range(3):
                    for key, ev in p.select_keys(0):
                        if isinstance(key, Data):
                            sys.exit("a key of an unregistered fd")
                p.close()
                f.close()
                b.close()
        """)
        r = subprocess.run([sys.executable, "-c", code], capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])

    def test_guard_checked_after_fileno(self):
        """fileno() is Python code: it can let another thread start a poll.
        The "no changes during another thread's poll" guard is checked
        after the fd is obtained, so every method raises RuntimeError and
        the table is left alone."""
        p = self.make()
        a, b = self.pair()
        p.register(a, poller.IN)
        c, d = self.pair()
        threads = []

        class Sneaky:
            def fileno(self):
                t = threading.Thread(target=p.poll, args=(60,))
                t.start()
                threads.append(t)
                wait_until_polling(p)
                return c.fileno()

        calls = {
            "register": lambda: p.register(Sneaky(), poller.IN),
            "push": lambda: p.push(Sneaky(), poller.IN),
            "modify": lambda: p.modify(Sneaky(), poller.OUT),
            "unregister": lambda: p.unregister(Sneaky()),
            "pop": lambda: p.pop(Sneaky()),
            "get": lambda: p.get(Sneaky()),
            "depth": lambda: p.depth(Sneaky()),
        }
        for name, call in calls.items():
            with self.subTest(method=name):
                if name in ("modify", "unregister", "pop", "get"):
                    p.register(c, poller.IN)  # so only the guard can refuse
                try:
                    with self.assertRaises(RuntimeError):
                        call()
                finally:
                    # Data, not wakeup(), ends the poll: the test is about
                    # the guard, not about wakeups.
                    b.send(b"x")
                    for t in threads:
                        t.join()
                    threads.clear()
                    a.recv(10)
                self.assertEqual(p.depth(c),
                                 1 if name in ("modify", "unregister", "pop",
                                               "get") else 0)
                if p.depth(c):
                    p.unregister(c)

    def test_forked_child_of_polling_thread_can_reinit_and_close(self):
        """A fork taken while another thread is inside poll(): in the child
        that thread does not exist, so the poller must not stay "busy"; the
        child can reinit(), poll() and close() it."""
        p = self.make()
        a, b = self.pair()
        p.register(a, poller.IN, "data")
        t = threading.Thread(target=p.poll, args=(60,))
        t.start()
        try:
            wait_until_polling(p)
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    p.reinit()
                    got = p.poll(5)
                    ok = got == [(a.fileno(), poller.IN)]
                    p.close()
                    code = 0 if ok and p.closed else 2
                except BaseException:
                    code = 3
                finally:
                    os._exit(code)
            b.send(b"x")  # for the child's poll; ends the thread's too
        finally:
            b.send(b"x")
            t.join()
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)


def _cases(base):
    out = {}
    for name in BACKENDS:
        attrs = {"BACKEND": name}
        if name not in poller.available():
            attrs["setUp"] = (lambda n: lambda self: self.skipTest(
                f"backend {n} not usable here"))(name)
        cls = type(f"{base.__name__}_{name}", (base, unittest.TestCase), attrs)
        out[cls.__name__] = cls
    return out


globals().update(_cases(Lifetimes))

if __name__ == "__main__":
    unittest.main()
