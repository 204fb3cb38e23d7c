# SPDX-License-Identifier: MIT
"""poller: the interfaces of greenhouse's poller module, Python's selectors
module and pike's BasePoller, over libpoller (a C library: select, poll,
epoll, io_uring and kqueue behind one API).  greenhouse is a Python
green-thread library whose poller module gives select, poll and epoll one
interface with a per-fd registration stack; pike is a Python SMB2/3
protocol test framework whose transport module drives connections through
a BasePoller.

- selectors: SelectSelector, PollSelector, EpollSelector, URingSelector,
  KqueueSelector (where built) and DefaultSelector, drop-in subclasses of
  selectors.BaseSelector.
- greenhouse: Select, Poll, Epoll, URing, KQueue with register/unregister
  as a per-fd registration stack, poll(timeout) -> [(fd, mask)], best(),
  set() and get().
- pike: BasePoller and Transport (poller.pike).
"""
import errno as _errno
import os as _os
import selectors as _selectors
import stat as _stat

from . import _poller
from ._poller import Poller, available, __version__

__all__ = [
    "Poller", "available", "__version__",
    "SelectSelector", "PollSelector", "EpollSelector", "URingSelector",
    "DefaultSelector",
    "Select", "Poll", "Epoll", "URing", "best", "set", "get",
]  # plus KqueueSelector and KQueue where kqueue is usable

IN, OUT, PRI, ERR, HUP = _poller.IN, _poller.OUT, _poller.PRI, _poller.ERR, _poller.HUP
EVENT_READ, EVENT_WRITE = _selectors.EVENT_READ, _selectors.EVENT_WRITE
# selectors' EVENT_READ (1) and EVENT_WRITE (2) as libpoller's interest:
# libpoller's bits are poll(2)'s, where 2 is PRI.  Indexed by events & 3.
_SEL_TO_POLLER = (0, IN, OUT, IN | OUT)
_AVAILABLE = frozenset(available())


# ---- selectors ----

class _PollerSelector(_poller.SelectMixin, _selectors._BaseSelectorImpl):
    """A selectors.BaseSelector over one libpoller backend.  The
    SelectorKey is the registration's data, so select() builds its result
    in C without a lookup per ready fd."""

    _backend = "auto"
    _selector_cls = Poller
    # epoll refuses files it cannot poll (regular files, directories) with
    # EPERM, and selectors.EpollSelector passes that on; libpoller accepts
    # them as always ready, so the classes that replace EpollSelector check.
    _refuse_unpollable = False

    def __init__(self):
        super().__init__()
        self._selector = self._selector_cls(self._backend)

    def register(self, fileobj, events, data=None):
        key = super().register(fileobj, events, data)
        try:
            if self._refuse_unpollable:
                mode = _os.fstat(key.fd).st_mode
                if _stat.S_ISREG(mode) or _stat.S_ISDIR(mode):
                    raise PermissionError(_errno.EPERM,
                                          _os.strerror(_errno.EPERM))
            self._selector.register(key.fd, _SEL_TO_POLLER[events & 3],
                                    key)
        except BaseException:
            super().unregister(fileobj)
            raise
        return key

    def unregister(self, fileobj):
        key = super().unregister(fileobj)
        try:
            self._selector.unregister(key.fd)
        except OSError:
            # The fd was closed (and perhaps reused) since it was
            # registered: the key is gone all the same, as selectors
            # does (cpython#83420).
            pass
        return key

    def modify(self, fileobj, events, data=None):
        try:
            key = self._fd_to_key[self._fileobj_lookup(fileobj)]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None
        if events != key.events or data != key.data:
            if not events or (events & ~(EVENT_READ | EVENT_WRITE)):
                raise ValueError(f"Invalid events: {events!r}")
            new = key._replace(events=events, data=data)
            try:
                self._selector.modify(key.fd, _SEL_TO_POLLER[events & 3], new)
            except BaseException:
                super().unregister(fileobj)
                try:
                    self._selector.unregister(key.fd)
                except OSError:
                    pass
                raise
            self._fd_to_key[key.fd] = new
            key = new
        return key

    # select() is SelectMixin.select, in C: it waits on self._selector
    # with the GIL released, rounds the timeout up to whole ms, treats a
    # timeout <= 0 as "do not block", makes room for every registered fd
    # (as EpollSelector does) and builds [(key, events)] from the keys held
    # as registration data.
    select = _poller.SelectMixin.select

    def close(self):
        self._selector.close()
        super().close()


def _fileno(self):
    """The kernel object's descriptor (epoll, io_uring, kqueue)."""
    return self._selector.fileno()


def _selector_class(name, backend):
    attrs = {"_backend": backend,
             "__doc__": f"selectors interface over libpoller's {backend} backend",
             # type() under ABCMeta would name the module "abc": reprs and
             # pickling need the real one.
             "__module__": __name__, "__qualname__": name}
    if backend in ("epoll", "uring", "kqueue"):
        # As in the standard library, only selectors with a kernel object
        # have fileno().
        attrs["fileno"] = _fileno
    if backend in ("epoll", "uring"):
        attrs["_refuse_unpollable"] = True
    return type(name, (_PollerSelector,), attrs)


SelectSelector = _selector_class("SelectSelector", "select")
PollSelector = _selector_class("PollSelector", "poll")
EpollSelector = _selector_class("EpollSelector", "epoll")
URingSelector = _selector_class("URingSelector", "uring")
SELECTORS = {"select": SelectSelector, "poll": PollSelector,
             "epoll": EpollSelector, "uring": URingSelector}
# As in the standard library, KqueueSelector (and KQueue below) exist only
# where the backend is built in and usable.
if "kqueue" in _AVAILABLE:
    KqueueSelector = _selector_class("KqueueSelector", "kqueue")
    SELECTORS["kqueue"] = KqueueSelector

if "epoll" in _AVAILABLE:
    DefaultSelector = EpollSelector
elif "kqueue" in _AVAILABLE:
    DefaultSelector = KqueueSelector
elif "poll" in _AVAILABLE:
    DefaultSelector = PollSelector
else:
    DefaultSelector = SelectSelector


# ---- greenhouse ----

class Select:
    """greenhouse's poller interface: register(fd, mask=None) pushes onto
    the fd's registration stack, unregister(fd) pops it, poll(timeout)
    waits up to timeout seconds (None blocks) and returns [(fd, mask)]."""

    _backend = "select"
    INMASK = IN | PRI
    OUTMASK = OUT
    ERRMASK = ERR | HUP

    def __init__(self):
        self._poller = Poller(self._backend)

    def register(self, fd, mask=None):
        """Pushes mask (default: INMASK | OUTMASK | ERRMASK) onto fd's
        registration stack; fd is an int or has fileno()."""
        if mask is None:
            mask = self.INMASK | self.OUTMASK | self.ERRMASK
        self._poller.push(fd, mask)

    def unregister(self, fd):
        """Pops the top of fd's registration stack; KeyError when fd is
        not registered."""
        try:
            self._poller.pop(fd)
        except FileNotFoundError:
            raise KeyError(fd) from None

    def poll(self, timeout=None):
        """Waits up to timeout seconds (None blocks) and returns
        [(fd, mask)], mask an OR of INMASK, OUTMASK and ERRMASK bits."""
        return self._poller.poll(timeout)

    def fileno(self):
        return self._poller.fileno()

    def close(self):
        self._poller.close()


class Poll(Select):
    _backend = "poll"


class Epoll(Select):
    _backend = "epoll"


class URing(Select):
    _backend = "uring"


_GREENHOUSE = {"epoll": Epoll, "poll": Poll, "select": Select,
               "uring": URing}
if "kqueue" in _AVAILABLE:
    class KQueue(Select):
        _backend = "kqueue"

    _GREENHOUSE["kqueue"] = KQueue
_default = None


def best():
    """An instance of the best poller class here (epoll, kqueue, poll,
    select, in greenhouse's order of preference)."""
    for name in ("epoll", "kqueue", "poll", "select"):
        if name in _AVAILABLE:
            return _GREENHOUSE[name]()
    raise OSError("no poller backend is usable here")


def set(poller=None):
    """Sets the process-wide default poller (a new best() when None)."""
    global _default
    _default = poller if poller is not None else best()
    return _default


def get():
    """The process-wide default poller, made by best() on first use."""
    global _default
    if _default is None:
        _default = best()
    return _default
