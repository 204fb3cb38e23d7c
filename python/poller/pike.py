"""pike's BasePoller and Transport over libpoller.

A Transport wraps a non-blocking socket.  The poller watches every channel
for reading, and for writing only while it is connecting or while a write
is deferred (pike's rule), so an idle connection never wakes the loop.
"""
import errno
import socket
import time

from ._poller import Poller, IN, OUT, ERR, HUP


class Transport:
    """A connection watched by a BasePoller.  Subclasses override the
    handle_* methods."""

    def __init__(self, sock=None, poller=None):
        self.socket = sock
        self.connected = False
        self.poller = poller

    def fileno(self):
        return self.socket.fileno()

    def connect(self, address):
        """Starts a non-blocking connect; completion comes as
        handle_connect_event (or handle_error)."""
        self.socket.setblocking(False)
        err = self.socket.connect_ex(address)
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            raise OSError(err, errno.errorcode.get(err, str(err)))

    def handle_connect_event(self):
        err = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.handle_error(OSError(err, errno.errorcode.get(err, str(err))))
            return
        self.connected = True
        self.handle_connect()

    def handle_connect(self):
        pass

    def handle_read(self):
        pass

    def handle_write(self):
        pass

    def handle_close(self):
        if self.poller is not None:
            self.poller.del_channel(self)
        self.socket.close()

    def handle_error(self, exc=None):
        self.handle_close()


class BasePoller:
    """pike's BasePoller: add_channel, del_channel, defer_write, loop,
    poll, process_readables and process_writables."""

    def __init__(self, backend="auto"):
        self._poller = Poller(backend)
        self.connections = {}
        self.deferred_writers = set()

    def _mask(self, t):
        mask = IN
        if not t.connected or t.fileno() in self.deferred_writers:
            mask |= OUT
        return mask

    def add_channel(self, transport):
        """Begins watching the transport for read (and connect) events."""
        fd = transport.fileno()
        transport.poller = self
        self.connections[fd] = transport
        self._poller.register(fd, self._mask(transport))

    def del_channel(self, transport):
        """Stops watching the transport."""
        fd = transport.fileno()
        if self.connections.pop(fd, None) is None:
            return
        self.deferred_writers.discard(fd)
        try:
            self._poller.unregister(fd)
        except OSError:
            pass

    def defer_write(self, transport):
        """handle_write runs once the transport is writable."""
        fd = transport.fileno()
        if fd in self.connections and fd not in self.deferred_writers:
            self.deferred_writers.add(fd)
            self._poller.modify(fd, self._mask(transport))

    def loop(self, timeout=None, count=None):
        """Runs until count iterations, timeout seconds, or no channels."""
        end = None if timeout is None else time.monotonic() + timeout
        n = 0
        while self.connections:
            if count is not None and n >= count:
                break
            if end is not None and time.monotonic() >= end:
                break
            self.poll(None if end is None else max(0.0, end - time.monotonic()))
            n += 1
        return n

    def poll(self, timeout=None):
        """One iteration: wait, then process readables and writables."""
        events = self._poller.poll(timeout)
        readables = [fd for fd, ev in events if ev & (IN | ERR | HUP)]
        writables = [fd for fd, ev in events if ev & (OUT | ERR | HUP)]
        self.process_readables(readables)
        self.process_writables(writables)

    def process_readables(self, readables):
        for fd in readables:
            t = self.connections.get(fd)
            if t is None or not t.connected:
                continue
            try:
                t.handle_read()
            except Exception as exc:
                t.handle_error(exc)
                continue
            if fd in self.connections and t.socket.fileno() < 0:
                t.handle_close()

    def process_writables(self, writables):
        for fd in writables:
            t = self.connections.get(fd)
            if t is None:
                continue
            try:
                if not t.connected:
                    t.handle_connect_event()
                    if fd in self.connections:
                        self._poller.modify(fd, self._mask(t))
                else:
                    self.deferred_writers.discard(fd)
                    self._poller.modify(fd, self._mask(t))
                    t.handle_write()
            except Exception as exc:
                t.handle_error(exc)

    def close(self):
        self._poller.close()
