"""add_reader/add_writer and their removal (asyncio's selector_events, on epoll)."""

from __future__ import annotations

import asyncio
import errno
import os
import socket

import pytest


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def run_laps(loop, laps):
    for _ in range(laps):
        loop.call_soon(loop.stop)
        loop.run_forever()


def test_reader_is_level_triggered(loop, pair):
    a, b = pair
    calls = []

    def on_readable():
        calls.append(len(calls))
        if len(calls) == 5:
            loop.stop()

    b.send(b"x")
    loop.add_reader(a.fileno(), on_readable)
    guard = loop.call_later(2, loop.stop)
    loop.run_forever()
    guard.cancel()
    # The data is never read, so the reader fires on lap after lap.
    assert calls == [0, 1, 2, 3, 4]
    assert loop.remove_reader(a.fileno()) is True


def test_reader_fires_when_data_arrives_and_stops_when_read(loop, pair):
    a, b = pair
    received = []

    def on_readable():
        data = a.recv(100)
        received.append(data)
        if data == b"two":
            loop.stop()
        else:
            loop.call_later(0.01, b.send, b"two")

    loop.add_reader(a, on_readable)
    loop.call_later(0.01, b.send, b"one")
    guard = loop.call_later(2, loop.stop)
    loop.run_forever()
    guard.cancel()
    assert received == [b"one", b"two"]
    # Nothing more to read: the reader stays quiet.
    run_laps(loop, 3)
    assert received == [b"one", b"two"]
    assert loop.remove_reader(a) is True


def test_reader_passes_args(loop, pair):
    a, b = pair
    seen = []

    def on_readable(*args):
        seen.append(args)
        loop.remove_reader(a)
        loop.stop()

    b.send(b"x")
    loop.add_reader(a, on_readable, 1, "two")
    guard = loop.call_later(2, loop.stop)
    loop.run_forever()
    guard.cancel()
    assert seen == [(1, "two")]


@pytest.mark.parametrize("as_object", [False, True], ids=["fd", "socket"])
def test_writer(loop, pair, as_object):
    a, _ = pair
    target = a if as_object else a.fileno()
    calls = []

    def on_writable():
        calls.append(None)
        if len(calls) == 3:
            loop.stop()

    loop.add_writer(target, on_writable)
    guard = loop.call_later(2, loop.stop)
    loop.run_forever()
    guard.cancel()
    assert len(calls) == 3  # an idle socket is writable on every lap
    assert loop.remove_writer(target) is True
    assert loop.remove_writer(target) is False
    run_laps(loop, 2)
    assert len(calls) == 3


def test_socket_object_and_fd_are_the_same_registration(loop, pair):
    a, _ = pair
    loop.add_reader(a, print)
    assert loop.remove_reader(a.fileno()) is True
    assert loop.remove_reader(a) is False
    loop.add_writer(a.fileno(), print)
    assert loop.remove_writer(a) is True


def test_remove_returns_false_when_nothing_registered(loop, pair):
    a, _ = pair
    assert loop.remove_reader(a) is False
    assert loop.remove_writer(a) is False
    assert loop.remove_reader(a.fileno()) is False
    loop.add_reader(a, print)
    assert loop.remove_writer(a) is False  # only the reader is registered
    assert loop.remove_reader(a) is True
    assert loop.remove_reader(a) is False


def test_reader_and_writer_on_the_same_fd(loop, pair):
    a, b = pair
    seen = []
    b.send(b"x")
    loop.add_reader(a, seen.append, "read")
    loop.add_writer(a, seen.append, "write")
    run_laps(loop, 2)
    assert seen.count("read") >= 1
    assert seen.count("write") >= 1
    assert loop.remove_reader(a) is True
    seen.clear()
    run_laps(loop, 2)
    assert seen and set(seen) == {"write"}
    assert loop.remove_writer(a) is True


def test_add_reader_again_replaces_the_callback(loop, pair):
    a, b = pair
    seen = []
    b.send(b"x")
    loop.add_reader(a, seen.append, "old")
    loop.add_reader(a, seen.append, "new")
    run_laps(loop, 2)
    assert seen and set(seen) == {"new"}
    assert loop.remove_reader(a) is True
    assert loop.remove_reader(a) is False


def test_reader_can_remove_itself(loop, pair):
    a, b = pair
    seen = []

    def once():
        seen.append("once")
        loop.remove_reader(a)

    b.send(b"x")
    loop.add_reader(a, once)
    run_laps(loop, 3)
    assert seen == ["once"]


def test_reader_removed_before_its_lap_does_not_run(loop, pair):
    a, b = pair
    seen = []
    b.send(b"x")
    loop.add_reader(a, seen.append, "read")
    loop.remove_reader(a)
    run_laps(loop, 2)
    assert seen == []


def test_reader_wakes_a_sleeping_loop(loop, pair):
    a, b = pair
    fut = loop.create_future()
    loop.add_reader(a, lambda: fut.done() or fut.set_result(a.recv(10)))
    loop.call_later(0.05, b.send, b"wake")
    guard = loop.call_later(5, loop.stop)
    assert loop.run_until_complete(fut) == b"wake"
    guard.cancel()
    loop.remove_reader(a)


def test_pipe_reader_sees_eof(loop):
    r, w = os.pipe()
    os.set_blocking(r, False)
    chunks = []

    def on_readable():
        data = os.read(r, 100)
        chunks.append(data)
        if not data:
            loop.remove_reader(r)
            loop.stop()

    try:
        loop.add_reader(r, on_readable)
        os.write(w, b"data")
        loop.call_later(0.01, os.close, w)
        guard = loop.call_later(2, loop.stop)
        loop.run_forever()
        guard.cancel()
    finally:
        os.close(r)
    assert chunks == [b"data", b""]


def test_close_forgets_readers(loop_factory, pair):
    a, _ = pair
    loop = loop_factory()
    loop.add_reader(a, print)
    loop.add_writer(a, print)
    loop.close()
    # The descriptor is still ours and still open.
    assert a.fileno() >= 0
    a.send(b"still usable")


# -- errors, compared with the stock loop ------------------------------------------------


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_closed_socket(assert_raises_like_asyncio, method):
    sock = socket.socket()
    sock.close()  # fileno() is now -1
    assert assert_raises_like_asyncio(lambda lp: getattr(lp, method)(sock, print))


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_closed_fd(assert_raises_like_asyncio, method):
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    assert assert_raises_like_asyncio(lambda lp: getattr(lp, method)(r, print))


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
@pytest.mark.parametrize(
    "target", [object(), "3", 3.0, None, -1], ids=["object", "str", "float", "None", "-1"]
)
def test_invalid_objects(assert_raises_like_asyncio, method, target):
    assert assert_raises_like_asyncio(lambda lp: getattr(lp, method)(target, print))


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_regular_file(assert_raises_like_asyncio, method, tmp_path):
    # epoll refuses regular files (EPERM); asyncio lets that OSError through.
    with open(tmp_path / "file", "wb") as f:
        assert assert_raises_like_asyncio(lambda lp: getattr(lp, method)(f.fileno(), print))


def test_failed_registration_leaves_nothing_behind(loop, tmp_path):
    with open(tmp_path / "file", "wb") as f:
        with pytest.raises(OSError) as info:
            loop.add_reader(f.fileno(), print)
        assert info.value.errno == errno.EPERM
        assert loop.remove_reader(f.fileno()) is False


@pytest.mark.parametrize("method", ["remove_reader", "remove_writer"])
@pytest.mark.parametrize("target", [object(), "3", None, -1], ids=["object", "str", "None", "-1"])
def test_remove_with_invalid_objects(assert_raises_like_asyncio, method, target):
    assert assert_raises_like_asyncio(lambda lp: getattr(lp, method)(target))


def outcomes(*calls):
    """What each call returned, or its exception's type and text."""
    got = []
    for call in calls:
        try:
            got.append(call())
        except Exception as e:
            got.append(f"{type(e).__name__}: {e}")
    return got


@pytest.mark.parametrize("direction", ["reader", "writer"])
def test_a_socket_closed_while_watched_is_found_by_its_object(loop, pair, direction):
    # asyncio's selector keeps the object a descriptor was registered with, and finds a closed
    # one (fileno() -1) by identity: anyio closes a socket, then removes its reader.
    a, _ = pair
    add, remove = getattr(loop, f"add_{direction}"), getattr(loop, f"remove_{direction}")
    other = "writer" if direction == "reader" else "reader"
    add(a, print)
    a.close()
    bad = "ValueError: Invalid file descriptor: -1"
    assert outcomes(
        lambda: add(a, print),  # still registered: only its callback changes
        lambda: remove(a),
        lambda: remove(a),  # forgotten with its registration
        lambda: getattr(loop, f"remove_{other}")(a),
    ) == [None, True, bad, bad]


@pytest.mark.parametrize("direction", ["reader", "writer"])
def test_a_closed_socket_is_removed_when_its_number_names_another(loop, pair, direction):
    a, _ = pair
    number = a.fileno()
    getattr(loop, f"add_{direction}")(a, print)
    c, d = reuse_number(a)
    with c, d:
        remove = getattr(loop, f"remove_{direction}")
        assert (remove(a), remove(number)) == (True, False)


def test_a_closed_socket_watched_both_ways_fails_as_on_asyncio(loop, pair):
    # With a reader and a writer, removing one asks epoll to modify a descriptor it no longer
    # has: the selector raises and drops the whole registration.
    a, _ = pair
    number = a.fileno()
    loop.add_reader(a, print)
    loop.add_writer(a, print)
    a.close()
    bad = "ValueError: Invalid file descriptor: -1"
    assert outcomes(
        lambda: loop.remove_reader(a),
        lambda: loop.remove_writer(a),
        lambda: loop.remove_reader(number),
        lambda: loop.remove_writer(number),
    ) == ["OSError: [Errno 9] Bad file descriptor", bad, False, False]


def test_a_second_direction_on_a_closed_socket_fails_as_on_asyncio(loop, pair):
    a, _ = pair
    number = a.fileno()
    loop.add_reader(a, print)
    a.close()
    assert outcomes(
        lambda: loop.add_writer(a, print),
        lambda: loop.remove_reader(number),
    ) == ["OSError: [Errno 9] Bad file descriptor", False]


def test_a_descriptor_watched_by_number_is_not_found_by_a_closed_object(loop, pair):
    a, _ = pair
    number = a.fileno()
    loop.add_reader(number, print)
    a.close()
    assert outcomes(lambda: loop.remove_reader(a), lambda: loop.remove_reader(number)) == [
        "ValueError: Invalid file descriptor: -1",
        True,
    ]


def test_closed_loop_refuses_readers(loop, pair):
    a, _ = pair
    loop.add_reader(a, print)
    loop.close()
    for method in ("add_reader", "add_writer"):
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            getattr(loop, method)(a, print)
    assert loop.remove_reader(a) is False
    assert loop.remove_writer(a) is False


def test_io_is_seen_while_callbacks_keep_the_loop_busy(loop, pair):
    # A chain of ready callbacks never lets the poll block; readiness must still be noticed.
    a, b = pair
    fired = []
    laps = 0

    def spin():
        nonlocal laps
        laps += 1
        if fired or laps > 2_000_000:
            loop.stop()
        else:
            loop.call_soon(spin)

    loop.add_reader(a, lambda: fired.append(laps))
    loop.call_soon(spin)
    loop.call_later(0.01, b.send, b"x")
    loop.run_forever()
    loop.remove_reader(a)
    assert fired, "the reader never ran while the loop was busy"


# --- removals, and descriptor numbers that name another file by the next lap -----------------
# oxloop applies a removal at the next poll (a reader watched again before then costs no
# system call); none of that may be visible.


def reuse_number(old: socket.socket) -> tuple[socket.socket, socket.socket]:
    """Close `old` and return a new connected pair whose first socket has `old`'s number."""
    number = old.fileno()
    c, d = socket.socketpair()
    old.close()
    os.dup2(c.fileno(), number)
    c.close()
    c = socket.socket(fileno=number)
    c.setblocking(False)
    d.setblocking(False)
    return c, d


def test_removed_reader_stays_quiet(loop, pair):
    a, b = pair
    calls = []
    loop.add_reader(a, calls.append, "old")
    loop.remove_reader(a)
    b.send(b"x")
    run_laps(loop, 5)
    assert calls == []


def test_reader_removed_and_added_in_one_lap(loop, pair):
    a, b = pair
    calls = []
    loop.add_reader(a, calls.append, "old")
    loop.remove_reader(a)
    loop.add_reader(a, calls.append, "new")
    b.send(b"x")
    run_laps(loop, 2)
    assert calls == ["new", "new"]
    assert loop.remove_reader(a) is True


def test_reader_removed_and_a_writer_added_in_one_lap(loop, pair):
    a, _ = pair
    calls = []
    loop.add_reader(a, calls.append, "reader")
    loop.remove_reader(a)
    loop.add_writer(a, calls.append, "writer")
    run_laps(loop, 2)
    assert calls == ["writer", "writer"]
    assert loop.remove_writer(a) is True


def test_a_reused_number_is_watched(loop, pair):
    a, _ = pair
    calls = []
    loop.add_reader(a.fileno(), calls.append, "old")
    loop.remove_reader(a.fileno())
    c, d = reuse_number(a)  # the old file is closed: the kernel forgets it
    with c, d:
        loop.add_reader(c.fileno(), calls.append, "new")
        d.send(b"x")
        run_laps(loop, 2)
        assert calls == ["new", "new"]
        loop.remove_reader(c.fileno())


def test_a_closed_duplicate_wakes_nobody(loop, pair):
    # The removed reader's file stays open through a duplicate, so epoll keeps a registration
    # for it that no epoll_ctl can reach once the number names another file.
    a, b = pair
    keep = a.dup()
    calls = []
    loop.add_reader(a.fileno(), calls.append, "old")
    loop.remove_reader(a.fileno())
    c, d = reuse_number(a)
    with keep, c, d:
        loop.add_reader(c.fileno(), calls.append, "new")
        b.send(b"x")  # the old file is readable, the new one is not
        run_laps(loop, 5)
        assert calls == []
        d.send(b"y")
        run_laps(loop, 1)
        assert calls == ["new"]
        loop.remove_reader(c.fileno())


def test_sock_recv_on_a_reused_number(loop, pair):
    a, b = pair

    async def main():
        loop.call_soon(b.send, b"one")
        assert await loop.sock_recv(a, 10) == b"one"
        # Same lap: a's wait has just ended; its number now names another socket.
        c, d = reuse_number(a)
        with c, d:
            loop.call_later(0.01, d.send, b"two")
            return await asyncio.wait_for(loop.sock_recv(c, 10), 5)

    assert loop.run_until_complete(main()) == b"two"


def test_sock_recv_again_on_the_same_socket(loop, pair):
    a, b = pair

    async def main():
        got = []
        for i in range(50):
            loop.call_soon(b.send, b"%d" % i)
            got.append(await asyncio.wait_for(loop.sock_recv(a, 10), 5))
        return got

    assert loop.run_until_complete(main()) == [b"%d" % i for i in range(50)]


@pytest.mark.parametrize("seed", range(20))
def test_random_watch_sequences_fire_as_on_asyncio(loop_factory, seed):
    """Random additions and removals of readers and writers, data sent and drained, sockets
    closed and their numbers given to new ones, laps run: each lap fires the same callbacks on
    both loops (the registry defers removals and takes them back; none of it may show)."""
    import random

    def play(make_loop):
        rng = random.Random(seed)
        loop = make_loop()
        pairs = [socket.socketpair() for _ in range(4)]
        for a, b in pairs:
            a.setblocking(False)
            b.setblocking(False)
        fired = []
        laps = []
        try:
            for _ in range(300):
                i = rng.randrange(len(pairs))
                a, b = pairs[i]
                action = rng.randrange(9)
                if action == 0:
                    loop.add_reader(a.fileno(), fired.append, ("r", i))
                elif action == 1:
                    loop.remove_reader(a.fileno())
                elif action == 2:
                    loop.add_writer(a.fileno(), fired.append, ("w", i))
                elif action == 3:
                    loop.remove_writer(a.fileno())
                elif action == 4:
                    b.send(b"x")
                elif action == 5:
                    try:
                        a.recv(4096)
                    except BlockingIOError:
                        pass
                elif action == 6:
                    # The socket closes (its watches removed first, as a transport does) and
                    # its number goes to a new socket.
                    loop.remove_reader(a.fileno())
                    loop.remove_writer(a.fileno())
                    b.close()
                    pairs[i] = reuse_number(a)
                else:
                    loop.call_soon(loop.stop)
                    loop.run_forever()
                    laps.append(sorted(fired))
                    fired.clear()
            for a, b in pairs:
                loop.remove_reader(a.fileno())
                loop.remove_writer(a.fileno())
        finally:
            loop.close()
            for a, b in pairs:
                a.close()
                b.close()
        return laps

    stock = play(asyncio.new_event_loop)
    ours = play(loop_factory)
    assert ours == stock
