# SPDX-License-Identifier: MIT
"""CPython's own Lib/test/test_selectors.py run against every poller
selector class, exactly as CPython runs it against its own selectors, plus
an asyncio check on poller.DefaultSelector."""
import asyncio
import selectors
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


class AsTheClassItReplaces:
    """Runs CPython's test case for a standard library class on poller's
    class: SELECTOR is poller's, and for the duration of each test the
    standard library's name (selectors.EpollSelector, ...) is poller's class
    too, so the cases that patch `selectors.<Name>._selector_cls` (bpo-30014,
    test_modify_unregister) patch poller's class."""

    STDLIB_NAME = None

    def setUp(self):
        if self.BACKEND not in poller.available():
            self.skipTest(f"backend {self.BACKEND} not usable here")
        from unittest import mock
        patcher = mock.patch.object(selectors, self.STDLIB_NAME, self.SELECTOR,
                                    create=True)
        patcher.start()
        self.addCleanup(patcher.stop)
        super().setUp()


def _as(stdlib_case, cls, backend, name=None):
    """CPython's stdlib_case (for example EpollSelectorTestCase, with its
    class-specific tests) run on poller's cls."""
    name = name or stdlib_case.__name__
    attrs = {"SELECTOR": cls, "BACKEND": backend,
             "STDLIB_NAME": stdlib_case.__name__.replace("TestCase", ""),
             # CPython skips the case when the standard library lacks the
             # class (KqueueSelector on Linux); setUp decides here.
             "__unittest_skip__": False}
    if cls is None:
        attrs["SELECTOR"] = type("KqueueSelector", (), {})
    return type(name, (AsTheClassItReplaces, stdlib_case), attrs)


SelectSelectorTestCase = _as(cpython_tests.SelectSelectorTestCase,
                             poller.SelectSelector, "select")
PollSelectorTestCase = _as(cpython_tests.PollSelectorTestCase,
                           poller.PollSelector, "poll")
EpollSelectorTestCase = _as(cpython_tests.EpollSelectorTestCase,
                            poller.EpollSelector, "epoll")
KqueueSelectorTestCase = _as(cpython_tests.KqueueSelectorTestCase,
                             getattr(poller, "KqueueSelector", None), "kqueue")
# DefaultSelector is replaced as the class it is: EpollSelector here (the
# test case of the first usable of epoll, kqueue, poll, select).
_DEFAULT_CASE = {"epoll": cpython_tests.EpollSelectorTestCase,
                 "kqueue": cpython_tests.KqueueSelectorTestCase,
                 "poll": cpython_tests.PollSelectorTestCase,
                 "select": cpython_tests.SelectSelectorTestCase}
DefaultSelectorTestCase = _as(_DEFAULT_CASE[poller.DefaultSelector._backend],
                              poller.DefaultSelector,
                              poller.DefaultSelector._backend,
                              "DefaultSelectorTestCase")
# io_uring has no standard library class; URingSelector stands in for
# EpollSelector (same rules, regular files refused included).
URingSelectorTestCase = _as(cpython_tests.EpollSelectorTestCase,
                            poller.URingSelector, "uring",
                            "URingSelectorTestCase")


class PollerExtras:
    """Cases CPython runs on some classes only, run on every poller class:
    libpoller checks a closed fd at register and applies the timeout with
    nothing registered on every backend; a failing modify() leaves the fd
    unregistered on every class (bpo-30014, which CPython checks on the
    poll-like classes only); and select's sets grow past FD_SETSIZE, so
    SelectSelector is scalable too."""

    test_register_bad_fd = cpython_tests.KqueueSelectorTestCase.test_register_bad_fd
    test_empty_select_timeout = \
        cpython_tests.KqueueSelectorTestCase.test_empty_select_timeout
    make_socketpair = cpython_tests.BaseSelectorTestCase.make_socketpair

    def setUp(self):
        if self.BACKEND not in poller.available():
            self.skipTest(f"backend {self.BACKEND} not usable here")
        self.SELECTOR = poller.SELECTORS[self.BACKEND]

    def test_modify_unregister_any_class(self):
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


for _name in ("select", "poll", "epoll", "uring", "kqueue"):
    _attrs = {"BACKEND": _name}
    if _name == "select":  # the others run it in CPython's own case
        _attrs["test_above_fd_setsize"] = \
            cpython_tests.ScalableSelectorMixIn.test_above_fd_setsize
    _cls = type(f"PollerExtras_{_name}", (PollerExtras, unittest.TestCase),
                _attrs)
    globals()[_cls.__name__] = _cls
del _name, _cls, _attrs


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

    def test_add_reader_regular_file(self):
        """asyncio's add_reader on a regular file: with EpollSelector it
        raises PermissionError (epoll refuses the file); so it does on
        poller's epoll-like classes, instead of firing the callback on
        every pass of the loop."""
        if self.BACKEND not in ("epoll", "uring"):
            self.skipTest("select and poll report a regular file always "
                          "ready, as the standard library's classes do")
        import tempfile
        with tempfile.TemporaryFile() as f:
            with self.assertRaises(PermissionError):
                self.loop.add_reader(f.fileno(), lambda: None)

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
