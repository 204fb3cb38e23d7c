"""CPython's own Lib/test/test_selectors.py run against every poller
selector class, exactly as CPython runs it against its own selectors, plus
an asyncio check on poller.DefaultSelector."""
import asyncio
import signal
import socket
import sys
import unittest

import poller
try:
    from test import test_selectors as cpython_tests
except ImportError as exc:  # fail loudly: this suite is the point
    raise ImportError(
        f"CPython's test.test_selectors is missing for {sys.executable} "
        "(Debian: apt-get install libpython3.11-testsuite)") from exc


def _modify_unregister(self):
    """CPython's test_modify_unregister (bpo-30014) patches the stdlib
    class's _selector_cls; this is the same test on poller's class: a
    failing modify() leaves the fd unregistered."""
    import selectors
    from unittest import mock
    with mock.patch.object(self.SELECTOR, "_selector_cls") as m:
        m.return_value.modify = mock.Mock(side_effect=ZeroDivisionError)
        s = self.SELECTOR()
        self.addCleanup(s.close)
        rd, wr = self.make_socketpair()
        s.register(rd, selectors.EVENT_READ)
        self.assertEqual(len(s._map), 1)
        with self.assertRaises(ZeroDivisionError):
            s.modify(rd, selectors.EVENT_WRITE)
        self.assertEqual(len(s._map), 0)


def _register_file_always_ready(self):
    """CPython's EpollSelectorTestCase.test_register_file expects epoll's
    EPERM for a regular file; libpoller deliberately accepts it on every
    backend and reports it always ready, as select and poll do (asio#111).
    This asserts that documented difference."""
    import selectors
    import tempfile
    s = self.SELECTOR()
    self.addCleanup(s.close)
    with tempfile.NamedTemporaryFile() as f:
        key = s.register(f, selectors.EVENT_READ | selectors.EVENT_WRITE)
        self.assertEqual(s.select(0), [(key, selectors.EVENT_READ | selectors.EVENT_WRITE)])
        s.unregister(f)
        self.assertEqual(s.select(0), [])


def _backend_case(name, cls, scalable):
    bases = (cpython_tests.BaseSelectorTestCase,)
    if scalable:
        bases = (cpython_tests.ScalableSelectorMixIn,) + bases
    kq = cpython_tests.KqueueSelectorTestCase
    attrs = {"SELECTOR": cls, "test_modify_unregister": _modify_unregister,
             # CPython runs these two on KqueueSelector only; libpoller
             # checks a closed fd at register on every backend and applies
             # the timeout with nothing registered on every backend.
             "test_register_bad_fd": kq.test_register_bad_fd,
             "test_empty_select_timeout": kq.test_empty_select_timeout,
             "test_register_file": _register_file_always_ready}
    if name not in poller.available():
        attrs["setUp"] = lambda self: self.skipTest(f"backend {name} not usable here")
    return type(f"{cls.__name__}TestCase", bases + (unittest.TestCase,), attrs)


# select's sets grow past FD_SETSIZE in libpoller, so the select class is
# scalable too (CPython's own SelectSelector is not).
SelectSelectorTestCase = _backend_case("select", poller.SelectSelector, True)
PollSelectorTestCase = _backend_case("poll", poller.PollSelector, True)
EpollSelectorTestCase = _backend_case("epoll", poller.EpollSelector, True)
URingSelectorTestCase = _backend_case("uring", poller.URingSelector, True)
KqueueSelectorTestCase = _backend_case(
    "kqueue", getattr(poller, "KqueueSelector", None)
    or type("KqueueSelector", (), {}), True)
DefaultSelectorTestCase = _backend_case(
    poller.DefaultSelector._backend, poller.DefaultSelector, True)
DefaultSelectorTestCase.__name__ = DefaultSelectorTestCase.__qualname__ = \
    "DefaultSelectorTestCase"


class AsyncioOnPoller:
    """asyncio.SelectorEventLoop(<poller selector>()): TCP echo, a
    subprocess and a signal handler, on each backend (DefaultSelector is
    the epoll one here)."""

    def setUp(self):
        if self.BACKEND not in poller.available():
            self.skipTest(f"backend {self.BACKEND} not usable here")
        self.loop = asyncio.SelectorEventLoop(poller.SELECTORS[self.BACKEND]())
        asyncio.set_event_loop(self.loop)

    def tearDown(self):
        self.loop.close()
        asyncio.set_event_loop(None)

    def test_tcp_echo(self):
        handlers = []

        async def handle(reader, writer):
            handlers.append(asyncio.current_task())
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
            writer.close()
            await writer.wait_closed()

        async def main():
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            payload = bytes(range(256)) * 400
            writer.write(payload)
            await writer.drain()
            got = await asyncio.wait_for(reader.readexactly(len(payload)), 10)
            writer.close()
            await writer.wait_closed()
            await asyncio.wait_for(asyncio.gather(*handlers), 10)
            server.close()
            await server.wait_closed()
            return got, payload

        got, payload = self.loop.run_until_complete(main())
        self.assertEqual(got, payload)

    def test_subprocess(self):
        async def main():
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", "print('hi'); raise SystemExit(3)",
                stdout=asyncio.subprocess.PIPE)
            out, _ = await asyncio.wait_for(proc.communicate(), 20)
            return out, proc.returncode

        watcher = asyncio.SafeChildWatcher() if sys.version_info < (3, 12) else None
        if watcher is not None:
            watcher.attach_loop(self.loop)
            asyncio.set_child_watcher(watcher)
        try:
            out, rc = self.loop.run_until_complete(main())
        finally:
            if watcher is not None:
                asyncio.set_child_watcher(None)
                watcher.close()
        self.assertEqual(out.strip(), b"hi")
        self.assertEqual(rc, 3)

    def test_signal_handler(self):
        got = []

        async def main():
            fut = self.loop.create_future()
            self.loop.add_signal_handler(signal.SIGUSR1, lambda: fut.set_result(True))
            self.loop.call_later(0.05, lambda: signal.raise_signal(signal.SIGUSR1))
            got.append(await asyncio.wait_for(fut, 5))
            self.loop.remove_signal_handler(signal.SIGUSR1)

        self.loop.run_until_complete(main())
        self.assertEqual(got, [True])


for _name in ("select", "poll", "epoll", "uring", "kqueue"):
    _cls = type(f"AsyncioOnPoller_{_name}", (AsyncioOnPoller, unittest.TestCase),
                {"BACKEND": _name})
    globals()[_cls.__name__] = _cls
del _name, _cls  # or the loader would find the last class twice


class AsyncioDefaultSelector(unittest.TestCase):
    def test_default_selector_is_the_preferred_backend(self):
        order = [b for b in ("epoll", "kqueue", "poll", "select")
                 if b in poller.available()]
        with poller.DefaultSelector() as s:
            self.assertEqual(s._selector.backend, order[0])


if __name__ == "__main__":
    unittest.main()
