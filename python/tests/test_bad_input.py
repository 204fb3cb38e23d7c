# SPDX-License-Identifier: MIT
"""Bad input to poller's selector classes, compared with the standard
library: each case is run on poller's class and on the standard library's
counterpart (SelectSelector, PollSelector, EpollSelector for the kernel-
object backends) and must raise the same exception class (and errno), and
the selector must stay usable afterwards.  Where poller deliberately
differs, a separate test asserts poller's behaviour and says why."""
import errno
import selectors
import socket
import unittest

import poller

BACKENDS = ["select", "poll", "epoll", "uring", "kqueue"]
STDLIB = {"select": "SelectSelector", "poll": "PollSelector",
          "epoll": "EpollSelector", "uring": "EpollSelector",
          "kqueue": "KqueueSelector"}
R, W = selectors.EVENT_READ, selectors.EVENT_WRITE


def outcome(fn):
    """What fn() did: ("ok",) or (exception class, errno)."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - the class is the result
        return (type(exc), getattr(exc, "errno", None))
    return ("ok",)


class SameAsStdlib:
    """Each case runs on a fresh selector of both kinds."""

    def setUp(self):
        if self.BACKEND not in poller.available():
            self.skipTest(f"backend {self.BACKEND} not usable here")
        if not hasattr(selectors, STDLIB[self.BACKEND]):
            self.skipTest(f"selectors.{STDLIB[self.BACKEND]} missing here")
        self.ours = poller.SELECTORS[self.BACKEND]
        self.theirs = getattr(selectors, STDLIB[self.BACKEND])

    def pair(self):
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        return a, b

    def check(self, case, prepare=None):
        """case(selector, a, b) on both classes: same outcome; then the
        poller selector still registers, selects and unregisters."""
        results = []
        for cls in (self.theirs, self.ours):
            s = cls()
            self.addCleanup(s.close)
            a, b = self.pair()
            if prepare:
                prepare(s, a, b)
            results.append(outcome(lambda: case(s, a, b)))
            if cls is self.ours:
                c, d = self.pair()
                key = s.register(c, R, "still usable")
                d.send(b"x")
                self.assertEqual(s.select(1), [(key, R)])
                s.unregister(c)
        self.assertEqual(results[1], results[0],
                         f"poller's {self.ours.__name__} differs from "
                         f"selectors.{self.theirs.__name__}")
        return results[1]

    def test_negative_fd(self):
        self.assertEqual(self.check(lambda s, a, b: s.register(-1, R)),
                         (ValueError, None))

    def test_bad_masks(self):
        for mask in (0, 4, 1 << 20, -1):
            with self.subTest(mask=mask):
                self.assertEqual(self.check(lambda s, a, b: s.register(a, mask)),
                                 (ValueError, None))

    def test_wrong_types(self):
        self.assertEqual(self.check(lambda s, a, b: s.register("x", R)),
                         (ValueError, None))  # selectors: "Invalid file object"
        self.assertEqual(self.check(lambda s, a, b: s.register(1.5, R)),
                         (ValueError, None))
        self.assertEqual(self.check(lambda s, a, b: s.register(a, "r")),
                         (TypeError, None))
        self.assertEqual(self.check(lambda s, a, b: s.select("soon")),
                         (TypeError, None))
        self.assertEqual(self.check(lambda s, a, b: s.select(1e300)),
                         (OverflowError, None))

    def test_unknown_fd(self):
        for op in (lambda s, a, b: s.unregister(a),
                   lambda s, a, b: s.modify(a, R),
                   lambda s, a, b: s.get_key(a),
                   lambda s, a, b: s.get_map()[a]):
            self.assertEqual(self.check(op), (KeyError, None))

    def test_register_twice(self):
        self.assertEqual(
            self.check(lambda s, a, b: s.register(a, W),
                       prepare=lambda s, a, b: s.register(a, R)),
            (KeyError, None))

    def test_unregister_twice(self):
        def prepare(s, a, b):
            s.register(a, R)
            s.unregister(a)
        self.assertEqual(self.check(lambda s, a, b: s.unregister(a), prepare),
                         (KeyError, None))

    def test_timeout_beyond_int32_ms(self):
        """30 days: selectors.SelectSelector accepts it (select.select takes
        any timeout CPython's clock can hold), PollSelector and
        EpollSelector raise OverflowError (more than INT32_MAX ms).  A ready
        fd makes the call return at once where it is accepted."""
        def case(s, a, b):
            s.register(a, R)
            b.send(b"x")
            try:
                s.select(30 * 86400.0)
            finally:
                s.unregister(a)
        expected = ("ok",) if self.BACKEND == "select" else (OverflowError, None)
        self.assertEqual(self.check(case), expected)

    def test_unregister_after_close_of_fd(self):
        def prepare(s, a, b):
            s.register(a, R)
            a.close()
        self.assertEqual(self.check(lambda s, a, b: s.unregister(a), prepare),
                         ("ok",))


class PollerDifferences:
    """Where poller deliberately differs from some of the standard library's
    classes; each test says which and why."""

    def setUp(self):
        if self.BACKEND not in poller.available():
            self.skipTest(f"backend {self.BACKEND} not usable here")
        self.s = poller.SELECTORS[self.BACKEND]()
        self.addCleanup(self.s.close)
        self.a, self.b = socket.socketpair()
        self.addCleanup(self.a.close)
        self.addCleanup(self.b.close)

    def test_closed_fd_refused_at_register(self):
        """EpollSelector raises EBADF at register; SelectSelector and
        PollSelector accept the fd and fail (or report POLLNVAL) at
        select().  libpoller checks the fd at register on every backend
        (stale registrations: h2o#1427), with EpollSelector's error, and
        drops the key."""
        c, d = socket.socketpair()
        fd = c.fileno()
        c.close()
        d.close()
        with self.assertRaises(OSError) as cm:
            self.s.register(fd, R)
        self.assertEqual(cm.exception.errno, errno.EBADF)
        with self.assertRaises(KeyError):
            self.s.get_key(fd)
        self.assertEqual(self.s.select(0), [])

    def test_modify_to_bad_mask_is_refused_and_keeps_the_key(self):
        """The standard library's EpollSelector and PollSelector accept
        modify(fd, 0) and modify(fd, 4) (they do not check the mask),
        SelectSelector raises ValueError and leaves the fd unregistered.
        BaseSelector documents ValueError for invalid events: poller raises
        it on every class and keeps the registration as it was."""
        key = self.s.register(self.a, R, "d")
        for mask in (0, 4, -1):
            with self.assertRaises(ValueError):
                self.s.modify(self.a, mask)
            self.assertEqual(self.s.get_key(self.a), key)
        self.b.send(b"x")
        self.assertEqual(self.s.select(1), [(key, R)])

    def test_use_after_close(self):
        """After close(), EpollSelector's select() raises ValueError (its
        epoll object is closed); SelectSelector and PollSelector, which
        have no kernel object, go on working.  poller's classes all behave
        as EpollSelector: ValueError for select and register, get_map()
        None, and unregister/close are harmless."""
        self.s.register(self.a, R)
        self.s.close()
        self.assertIsNone(self.s.get_map())
        with self.assertRaises(ValueError):
            self.s.select(0)
        with self.assertRaises(ValueError):
            self.s.register(self.b, R)
        with self.assertRaises(RuntimeError):
            self.s.get_key(self.a)  # as BaseSelectorImpl: no map
        self.s.close()

    def test_fd_closed_after_modify_without_unregister(self):
        """The fd is closed between a modify() (applied lazily, at the next
        select) and the select: the kernel refuses the change (epoll:
        EBADF) or the backend finds the fd closed (select, poll: NVAL).
        Either way the key is reported once as ready, then no more, and
        unregister() still succeeds; every reference to the data is
        released (the refused registration stays, disarmed, until
        unregister())."""
        import sys
        data = object()
        base = sys.getrefcount(data)
        self.s.register(self.a, R, data)
        key = self.s.modify(self.a, W, data)
        self.a.close()
        self.assertEqual(self.s.select(0), [(key, W)])
        self.assertEqual(self.s.select(0), [])
        self.assertIs(self.s.unregister(self.a), key)
        del key
        self.assertEqual(sys.getrefcount(data), base)
        self.assertEqual(self.s._selector.count(), 0)

    def test_modify_of_closed_fd_raises_and_drops_key(self):
        """modify() of an fd closed behind the selector: EpollSelector
        raises OSError(EBADF) and drops the key (bpo-30014); poller's
        classes all do (the epoll-like ones exactly as EpollSelector).
        SelectSelector and PollSelector of the standard library accept the
        change and fail, or report the fd, at the next select()."""
        c, d = socket.socketpair()
        self.addCleanup(d.close)
        fd = c.fileno()
        self.s.register(fd, R)
        c.close()
        with self.assertRaises(OSError) as cm:
            self.s.modify(fd, W)
        self.assertEqual(cm.exception.errno, errno.EBADF)
        with self.assertRaises(KeyError):
            self.s.get_key(fd)
        self.assertEqual(self.s.select(0), [])
        if self.BACKEND in ("epoll", "uring"):
            theirs = selectors.EpollSelector()
            self.addCleanup(theirs.close)
            e, f = socket.socketpair()
            self.addCleanup(f.close)
            fd = e.fileno()
            theirs.register(fd, R)
            e.close()
            with self.assertRaises(OSError) as cm:
                theirs.modify(fd, W)
            self.assertEqual(cm.exception.errno, errno.EBADF)
            with self.assertRaises(KeyError):
                theirs.get_key(fd)

    def test_data_only_modify_seen_by_next_select(self):
        key = self.s.register(self.a, R, "old")
        self.b.send(b"x")
        new = self.s.modify(self.a, R, "new")
        self.assertIsNot(new, key)
        self.assertEqual(self.s.select(1), [(new, R)])


class ClassNames(unittest.TestCase):
    def test_module_repr_and_pickle(self):
        """The selector classes belong to the poller module (not abc, as
        type() under ABCMeta would say): reprs name it, and the classes
        pickle by reference."""
        import pickle
        for name, cls in list(poller.SELECTORS.items()) + [
                ("default", poller.DefaultSelector)]:
            with self.subTest(backend=name):
                self.assertEqual(cls.__module__, "poller")
                self.assertEqual(repr(cls), f"<class 'poller.{cls.__name__}'>")
                self.assertIs(pickle.loads(pickle.dumps(cls)), cls)
                self.assertIs(getattr(poller, cls.__qualname__), cls)


def _cases(base):
    out = {}
    for name in BACKENDS:
        cls = type(f"{base.__name__}_{name}", (base, unittest.TestCase),
                   {"BACKEND": name})
        out[cls.__name__] = cls
    return out


globals().update(_cases(SameAsStdlib))
globals().update(_cases(PollerDifferences))

if __name__ == "__main__":
    unittest.main()
