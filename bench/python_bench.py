# SPDX-License-Identifier: MIT
"""Python benchmark: poller's selectors against the standard library.

1. select() cost: N registered socket pairs (read side registered for
   EVENT_READ), K of them readable, median time per select() call over
   repeated runs, for poller.EpollSelector, poller.URingSelector,
   selectors.EpollSelector and a raw select.epoll().poll() loop.
2. asyncio TCP echo: C connections of 64-byte ping-pong for a bounded time
   on the default loop, on asyncio.SelectorEventLoop(poller.DefaultSelector())
   and on uvloop (Debian's python3-uvloop) when installed.

Usage: python3 bench/python_bench.py [--quick]
(--quick: 100 and 1,000 sockets, fewer repetitions, 1 s echo runs; about
10 s.  The full run takes about 2 minutes.)  Run it with the interpreter
the extension was built for (python/run-tests.sh builds it for Debian's
/usr/bin/python3 by default).  All traffic is on 127.0.0.1 and stops by
itself; socket counts are sized from RLIMIT_NOFILE.
"""
import asyncio
import gc
import os
import resource
import select
import selectors
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import poller  # noqa: E402

QUICK = "--quick" in sys.argv


def time_select(make, n, k, reps, nogc=False):
    pairs = [socket.socketpair() for _ in range(n)]
    if nogc:
        gc.disable()
    try:
        sel = make()
        raw = isinstance(sel, type(select.epoll())) if hasattr(select, "epoll") else False
        for a, b in pairs:
            if raw:
                sel.register(a.fileno(), select.EPOLLIN)
            else:
                sel.register(a, selectors.EVENT_READ)
        step = max(1, n // k)
        for i in range(0, n, step)[:k]:
            pairs[i][1].send(b"x")
        call = (lambda: sel.poll(0, n)) if raw else (lambda: sel.select(0))
        got = len(call())
        assert got == k, (got, k)
        samples = []
        for _ in range(reps):
            t0 = time.perf_counter()
            for _ in range(20):
                call()
            samples.append((time.perf_counter() - t0) / 20)
        sel.close()
        return statistics.median(samples) * 1e6
    finally:
        gc.enable()
        for a, b in pairs:
            a.close()
            b.close()


def select_table():
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    sizes = [100, 1000] if QUICK else [100, 1000, 9000]
    sizes = [n for n in sizes if 2 * n + 64 <= limit]
    drivers = [("raw select.epoll().poll()", select.epoll),
               ("selectors.EpollSelector", selectors.EpollSelector),
               ("poller.EpollSelector", poller.EpollSelector)]
    if "uring" in poller.available():
        drivers.append(("poller.URingSelector", poller.URingSelector))
    reps = 5 if QUICK else 25
    print("| registered | ready | driver | median us per select() | ratio to selectors.EpollSelector | ratio to raw epoll |")
    print("|---|---|---|---|---|---|")
    for n in sizes:
        for k in sorted({1, min(100, n), n}):
            res = {name: time_select(make, n, k, reps) for name, make in drivers}
            base = res["selectors.EpollSelector"]
            rawt = res["raw select.epoll().poll()"]
            for name, _ in drivers:
                print(f"| {n} | {k} | {name} | {res[name]:.1f} | {res[name] / base:.2f} | {res[name] / rawt:.2f} |")
    # With every socket ready, most of the difference to raw epoll is the
    # cyclic GC: the 2-tuples of the result hold SelectorKeys (tracked
    # objects) where raw epoll's hold ints, so each young-generation
    # collection triggered by the result's own allocations visits the keys.
    # The same case with the collector off shows the rest.
    n = sizes[-1]
    print()
    print(f"All {n} ready, cyclic GC disabled during the timing:")
    print()
    print("| registered | ready | driver | median us per select() | ratio to selectors.EpollSelector | ratio to raw epoll |")
    print("|---|---|---|---|---|---|")
    res = {name: time_select(make, n, n, reps, nogc=True) for name, make in drivers}
    base = res["selectors.EpollSelector"]
    rawt = res["raw select.epoll().poll()"]
    for name, _ in drivers:
        print(f"| {n} | {n} | {name} | {res[name]:.1f} | {res[name] / base:.2f} | {res[name] / rawt:.2f} |")


async def echo_run(conns, seconds):
    async def handle(reader, writer):
        try:
            while data := await reader.read(64):
                writer.write(data)
        except ConnectionError:
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    count = 0
    stop = time.monotonic() + seconds

    async def client():
        nonlocal count
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        msg = b"x" * 64
        while time.monotonic() < stop:
            writer.write(msg)
            await reader.readexactly(64)
            count += 1
        writer.close()
        await writer.wait_closed()

    t0 = time.monotonic()
    await asyncio.gather(*(client() for _ in range(conns)))
    el = time.monotonic() - t0
    server.close()
    await server.wait_closed()
    return count / el


def echo_table():
    conns, seconds = 100, (1 if QUICK else 5)
    loops = [("asyncio default loop", asyncio.new_event_loop),
             ("asyncio + poller.DefaultSelector",
              lambda: asyncio.SelectorEventLoop(poller.DefaultSelector()))]
    try:
        import uvloop
        loops.append(("uvloop", uvloop.new_event_loop))
    except ImportError:
        print("(uvloop not installed: python3-uvloop)")
    rounds = 3 if QUICK else 5
    print(f"| loop | median requests/s ({conns} connections, {seconds} s, {rounds} interleaved runs) | min | max | ratio to default |")
    print("|---|---|---|---|---|")
    results = {name: [] for name, _ in loops}
    # One untimed warm-up per loop: the first run of a process was seen
    # several times slower than the next, whichever loop came first.
    for name, make in loops:
        loop = make()
        try:
            loop.run_until_complete(echo_run(conns, 0.3))
        finally:
            loop.close()
    # Interleaved rounds, median per loop: a single run on this shared
    # machine was seen several times slower than the next, for every loop.
    for _ in range(rounds):
        for name, make in loops:
            loop = make()
            try:
                results[name].append(loop.run_until_complete(echo_run(conns, seconds)))
            finally:
                loop.close()
    base = statistics.median(results[loops[0][0]])
    for name, _ in loops:
        r = results[name]
        med = statistics.median(r)
        print(f"| {name} | {med:.0f} | {min(r):.0f} | {max(r):.0f} | {med / base:.2f} |")


def select_share():
    """How much of the echo's CPU time select() takes, per selector: the
    most a faster selector can save there."""
    seconds = 1 if QUICK else 3
    print(f"| selector | requests/s ({seconds} s) | CPU in select() per call (us) | share of the loop's CPU in select() |")
    print("|---|---|---|---|")
    for name, make in [("selectors.EpollSelector", selectors.EpollSelector),
                       ("poller.DefaultSelector", poller.DefaultSelector)]:
        sel = make()
        orig = sel.select
        acc = [0.0, 0]

        def timed(timeout=None, orig=orig, acc=acc):
            t0 = time.thread_time()
            try:
                return orig(timeout)
            finally:
                acc[0] += time.thread_time() - t0
                acc[1] += 1

        sel.select = timed
        loop = asyncio.SelectorEventLoop(sel)
        try:
            c0 = time.thread_time()
            rate = loop.run_until_complete(echo_run(100, seconds))
            cpu = time.thread_time() - c0
        finally:
            loop.close()
        print(f"| {name} | {rate:.0f} | {1e6 * acc[0] / max(acc[1], 1):.1f} | {100 * acc[0] / cpu:.1f}% |")


if __name__ == "__main__":
    print(f"python {sys.version.split()[0]}, poller backends: {', '.join(poller.available())}")
    print()
    print("### select() cost")
    select_table()
    print()
    print("### asyncio TCP echo")
    echo_table()
    print()
    print("Where the echo's time goes (one run each, CPU time of the loop's thread):")
    print()
    select_share()
