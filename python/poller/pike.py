# SPDX-License-Identifier: MIT
"""pike's BasePoller and Transport over libpoller.

A Transport wraps a non-blocking socket.  The poller watches every channel
for reading, and for writing only while it is connecting or while a write
is deferred (pike's rule), so an idle connection never wakes the loop.

The poller is the low-level poller._poller.Poller (any backend), driven
from Python: poll() waits once and hands the ready fds to
process_readables and process_writables.
"""
import errno
import os
import socket
import sys
import time

from ._poller import Poller, IN, OUT, ERR, HUP

# Errors of a non-blocking socket that mean "not now", not "broken".
_RETRY = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINPROGRESS, errno.EINTR)


class Transport:
    """A connection watched by a BasePoller.  Subclasses override the
    handle_* methods.  `connected` is False until the connect completed
    (handle_connect_event) and again once the connection is closed; pass
    connected=True for a socket that is already connected (an accepted
    one)."""

    def __init__(self, sock=None, poller=None, connected=False):
        self.socket = sock
        self.connected = connected
        self.poller = poller
        self.error = None

    def fileno(self):
        return self.socket.fileno()

    def connect(self, address):
        """Starts a non-blocking connect; completion comes as
        handle_connect_event when the socket turns writable."""
        self.socket.setblocking(False)
        err = self.socket.connect_ex(address)
        if err and err not in _RETRY:
            raise OSError(err, os.strerror(err))

    def handle_connect_event(self):
        """The socket turned writable while connecting: SO_ERROR tells
        whether the connect succeeded (then handle_connect) or failed: then
        it raises the OSError, as pike's does, and the poller hands it to
        handle_error."""
        err = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))
        # Reading SO_ERROR clears it, and some kqueue emulations (libkqueue)
        # read it themselves to fill in the event: without a peer the
        # connect failed all the same, with its errno lost.
        try:
            self.socket.getpeername()
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise
            raise OSError(errno.ENOTCONN, "connect failed (its error was "
                          "consumed before SO_ERROR was read)") from None
        self.connected = True
        self.handle_connect()

    def handle_connect(self):
        pass

    def handle_read(self):
        pass

    def handle_write(self):
        pass

    def handle_close(self):
        """Stops watching the socket and closes it."""
        self.connected = False
        if self.poller is not None:
            self.poller.del_channel(self)
        if self.socket is not None:
            self.socket.close()

    def handle_error(self):
        """Called by the poller inside its `except` block when a handler
        raised (a failed connect included), so the exception is
        sys.exc_info()[1], as in pike: it is kept in self.error and the
        transport is closed."""
        self.error = sys.exc_info()[1]
        self.handle_close()


class BasePoller:
    """pike's BasePoller: add_channel, del_channel, defer_write, loop,
    poll, process_readables and process_writables, over one libpoller
    backend ("auto" by default)."""

    def __init__(self, backend="auto"):
        self._poller = Poller(backend)
        self.connections = {}          # fd -> Transport
        self.deferred_writers = set()  # fds with a deferred write

    def _mask(self, fd, t):
        if not t.connected or fd in self.deferred_writers:
            return IN | OUT
        return IN

    def add_channel(self, transport):
        """Begins watching the transport for read (and connect) events."""
        fd = transport.fileno()
        if fd < 0:
            raise ValueError("transport has no open socket")
        self._poller.register(fd, self._mask(fd, transport))
        transport.poller = self
        transport._poller_fd = fd
        self.connections[fd] = transport

    def del_channel(self, transport):
        """Stops watching the transport (also after its socket was closed:
        the fd it was added with is remembered)."""
        fd = getattr(transport, "_poller_fd", None)
        if fd is None or self.connections.get(fd) is not transport:
            return
        del self.connections[fd]
        transport._poller_fd = None
        self.deferred_writers.discard(fd)
        if not self._poller.closed:
            try:
                self._poller.unregister(fd)
            except OSError:
                pass

    def defer_write(self, transport):
        """handle_write runs once the transport is writable."""
        fd = getattr(transport, "_poller_fd", None)
        if fd is None or self.connections.get(fd) is not transport:
            raise KeyError(transport)
        if fd not in self.deferred_writers:
            self.deferred_writers.add(fd)
            self._poller.modify(fd, self._mask(fd, transport))

    def loop(self, timeout=None, count=None):
        """Runs poll() until count iterations were made, timeout seconds
        passed, or no channel is left.  Returns the iterations made."""
        end = None if timeout is None else time.monotonic() + timeout
        n = 0
        while self.connections:
            if count is not None and n >= count:
                break
            left = None
            if end is not None:
                left = end - time.monotonic()
                if left <= 0:
                    break
            self.poll(left)
            n += 1
        return n

    def poll(self, timeout=None):
        """One iteration: waits up to timeout seconds (None blocks), then
        calls process_readables with the fds that have data (or an error or
        hang-up, which handle_read sees as a failed or empty read) and
        process_writables with the fds that are writable (or, while a
        connect is in progress, failed: SO_ERROR then tells)."""
        events = self._poller.poll(timeout)
        self.process_readables([fd for fd, ev in events if ev & (IN | ERR | HUP)])
        conns = self.connections
        self.process_writables([
            fd for fd, ev in events
            if ev & OUT or (ev & (ERR | HUP) and fd in conns
                            and not conns[fd].connected)])

    def process_readables(self, readables):
        """handle_read for each connected transport in readables; then
        handle_error (called with no argument inside the except block, as
        pike does) if it raised, or handle_close if it left the transport
        no longer connected."""
        for fd in readables:
            t = self.connections.get(fd)
            if t is None or not t.connected:
                continue  # a connect in progress completes as writable
            try:
                t.handle_read()
            except OSError as exc:
                if exc.errno not in _RETRY:
                    t.handle_error()
                continue
            except Exception:
                t.handle_error()
                continue
            if self.connections.get(fd) is t and not t.connected:
                t.handle_close()

    def process_writables(self, writables):
        """For each transport t in writables: if t is not marked as
        connected, handle_connect_event; otherwise handle_write, after
        taking t off the deferred writers (so writability is watched again
        only if it defers another write); handle_error (no argument, inside
        the except block) if a handler raised."""
        for fd in writables:
            t = self.connections.get(fd)
            if t is None:
                continue
            try:
                if not t.connected:
                    t.handle_connect_event()
                else:
                    self.deferred_writers.discard(fd)
                    try:
                        t.handle_write()
                    except OSError as exc:
                        if exc.errno not in _RETRY:
                            raise
                        self.deferred_writers.add(fd)  # still to be written
            except Exception:
                t.handle_error()
            if self.connections.get(fd) is t:
                self._poller.modify(fd, self._mask(fd, t))

    def close(self):
        """Stops watching every channel (their sockets stay open)."""
        for t in list(self.connections.values()):
            self.del_channel(t)
        self._poller.close()
