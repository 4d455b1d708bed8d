"""loop.getaddrinfo/getnameinfo answer exactly what socket.getaddrinfo/getnameinfo answer.

The stock loop calls the socket functions in its executor; a loop that answers some
queries itself must give the same list, in the same order, with the same types
(AddressFamily and SocketKind enums), and raise the same errors.
"""

from __future__ import annotations

import socket

import pytest

HOSTS = {
    "127.0.0.1": "127.0.0.1",
    "::1": "::1",
    "None": None,
    "localhost": "localhost",
    "bytes": b"127.0.0.1",
    "0.0.0.0": "0.0.0.0",
    "::": "::",
    "v4-mapped": "::ffff:127.0.0.1",
    "scoped": "fe80::1%lo",
    "legacy 127.1": "127.1",
    "empty": "",
}

PORTS = ["80", 80, None, "http", 0, b"443"]

OPTIONS = [
    {},
    {"family": socket.AF_INET},
    {"family": socket.AF_INET6},
    {"family": socket.AF_UNSPEC, "type": socket.SOCK_STREAM},
    {"type": socket.SOCK_DGRAM},
    {"proto": socket.IPPROTO_TCP},
    {"family": socket.AF_INET, "type": socket.SOCK_STREAM, "proto": socket.IPPROTO_TCP},
    {"type": socket.SOCK_STREAM, "proto": socket.IPPROTO_UDP},
    {"flags": socket.AI_PASSIVE},
    {"flags": socket.AI_NUMERICHOST},
    {"flags": socket.AI_NUMERICSERV},
    {"flags": socket.AI_CANONNAME},
    {"flags": socket.AI_ADDRCONFIG},
    {"family": socket.AF_INET6, "flags": socket.AI_V4MAPPED | socket.AI_ALL},
]


def error_outcome(exc):
    return "error", type(exc), getattr(exc, "errno", None), str(exc)


def compare_all(loop, cases, sync_call, async_call):
    """Each case's result (its repr, which shows enum and tuple types) or error must match."""

    async def main():
        mismatches = []
        for case in cases:
            try:
                expected = "result", repr(sync_call(*case))
            except Exception as exc:  # noqa: BLE001 - the error is compared
                expected = error_outcome(exc)
            try:
                actual = "result", repr(await async_call(*case))
            except Exception as exc:  # noqa: BLE001 - the error is compared
                actual = error_outcome(exc)
            if actual != expected:
                mismatches.append(f"{case!r}:\n  loop:   {actual}\n  socket: {expected}")
        return mismatches

    mismatches = loop.run_until_complete(main())
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.parametrize("host", list(HOSTS.values()), ids=list(HOSTS))
def test_getaddrinfo(loop, host):
    cases = [(host, port, options) for port in PORTS for options in OPTIONS]
    compare_all(
        loop,
        cases,
        lambda host, port, options: socket.getaddrinfo(host, port, **options),
        lambda host, port, options: loop.getaddrinfo(host, port, **options),
    )


BAD_GETADDRINFO = [
    ("127.0.0.1", 1.5, {}),
    ("127.0.0.1", -1, {}),
    ("127.0.0.1", 70000, {}),
    ("127.0.0.1", "no-such-service", {}),
    (123, 80, {}),
    ("localhost", 80, {"flags": socket.AI_NUMERICHOST}),
    ("127.0.0.1", "http", {"flags": socket.AI_NUMERICSERV}),
    (None, None, {}),
    ("127.0.0.1", 80, {"family": socket.AF_INET6}),
    ("::1", 80, {"family": socket.AF_INET}),
    ("127.0.0.1", 80, {"type": 12345}),
    ("127.0.0.1", 80, {"flags": -1}),
]


def test_getaddrinfo_errors(loop):
    compare_all(
        loop,
        BAD_GETADDRINFO,
        lambda host, port, options: socket.getaddrinfo(host, port, **options),
        lambda host, port, options: loop.getaddrinfo(host, port, **options),
    )


NAMEINFO = [
    (("127.0.0.1", 80), 0),
    (("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
    (("127.0.0.1", 80), socket.NI_NUMERICHOST),
    (("127.0.0.1", 53), socket.NI_DGRAM),
    (("127.0.0.1", 0), 0),
    (("::1", 80), 0),
    (("::1", 80, 0, 0), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
    (("fe80::1%lo", 80, 0, 0), socket.NI_NUMERICHOST),
    (("localhost", 80), 0),
    (("0.0.0.0", 80), socket.NI_NUMERICHOST),
    # errors
    (("127.0.0.1",), 0),
    ("127.0.0.1", 0),
    (("127.0.0.1", "80"), 0),
    (("127.0.0.1", 80), "flags"),
]


def test_getnameinfo(loop):
    compare_all(loop, NAMEINFO, socket.getnameinfo, loop.getnameinfo)
