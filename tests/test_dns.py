"""loop.getaddrinfo / loop.getnameinfo: same results and errors as the socket module.

Only numeric hosts, ``localhost`` (from /etc/hosts) and AI_NUMERICHOST lookups are
used, so no test depends on a DNS server.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from ferro_testutil import asyncio_records
from io_testutil import run

pytestmark = pytest.mark.timeout(30)


def _outcome(func, *args, **kwargs):
    """("ok", result) or (exception type, str(exception), errno) of a call."""
    try:
        return ("ok", func(*args, **kwargs))
    except Exception as exc:  # noqa: BLE001 - comparing outcomes
        return (type(exc), str(exc), getattr(exc, "errno", None))


async def _aoutcome(coro_factory):
    try:
        return ("ok", await coro_factory())
    except Exception as exc:  # noqa: BLE001 - comparing outcomes
        return (type(exc), str(exc), getattr(exc, "errno", None))


GETADDRINFO_CASES = [
    pytest.param(("127.0.0.1", 80), {}, id="ipv4"),
    pytest.param(("::1", 443), {}, id="ipv6"),
    pytest.param(("localhost", 8080), {"type": socket.SOCK_STREAM}, id="localhost-stream"),
    pytest.param(("127.0.0.1", "80"), {"proto": socket.IPPROTO_UDP}, id="port-str-udp"),
    pytest.param(("127.0.0.1", "http"), {"type": socket.SOCK_STREAM}, id="service-name"),
    pytest.param((b"127.0.0.1", b"22"), {}, id="bytes"),
    pytest.param((None, 0), {"flags": socket.AI_PASSIVE, "type": socket.SOCK_STREAM}, id="passive"),
    pytest.param((None, 5000), {"family": socket.AF_INET}, id="loopback-default"),
    pytest.param(("127.0.0.1", None), {"family": socket.AF_INET}, id="port-None"),
    pytest.param(
        ("localhost", 1), {"family": socket.AF_INET, "flags": socket.AI_CANONNAME}, id="canonname"
    ),
    pytest.param(("not a host", 80), {"flags": socket.AI_NUMERICHOST}, id="gaierror-noname"),
    pytest.param(("127.0.0.1", "no-such-service-xyz"), {}, id="gaierror-service"),
    pytest.param(("127.0.0.1", 80), {"family": 12345}, id="gaierror-family"),
    pytest.param(("127.0.0.1", 80), {"type": 12345}, id="gaierror-socktype"),
    pytest.param((123, 80), {}, id="typeerror-host"),
    pytest.param(("127.0.0.1", 1.5), {}, id="port-float"),
    pytest.param(("127.0.0.1", 2**70), {}, id="overflow-port"),
]


@pytest.mark.parametrize("args, kwargs", GETADDRINFO_CASES)
def test_getaddrinfo_matches_socket_module(loop, args, kwargs):
    expected = _outcome(socket.getaddrinfo, *args, **kwargs)
    got = run(loop, _aoutcome(lambda: loop.getaddrinfo(*args, **kwargs)))
    assert got == expected
    if got[0] == "ok":
        assert isinstance(got[1], list)


def test_getaddrinfo_gaierror_type(loop):
    with pytest.raises(socket.gaierror) as info:
        run(loop, loop.getaddrinfo("not a host", 80, flags=socket.AI_NUMERICHOST))
    assert info.value.errno == socket.EAI_NONAME


def test_getaddrinfo_options_are_keyword_only(loop):
    with pytest.raises(TypeError):
        loop.getaddrinfo("127.0.0.1", 80, socket.AF_INET)


def test_getaddrinfo_debug_logging(debug_loop, asyncio_logger_caplog):
    run(debug_loop, debug_loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM))
    msgs = [r.getMessage() for r in asyncio_records(asyncio_logger_caplog, min_level=10)]
    expected = "Get address info 127.0.0.1:80, type=<SocketKind.SOCK_STREAM: 1>"
    assert expected in msgs
    assert any(
        m.startswith("Getting address info 127.0.0.1:80, type=<SocketKind.SOCK_STREAM: 1> took ")
        for m in msgs
    )


GETNAMEINFO_CASES = [
    pytest.param((("127.0.0.1", 80),), id="ipv4-default-flags"),
    pytest.param((("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV), id="numeric"),
    pytest.param((("::1", 443, 0, 0), socket.NI_NUMERICHOST), id="ipv6"),
    pytest.param((("127.0.0.1", 53), socket.NI_DGRAM), id="dgram"),
    pytest.param((("127.0.0.1",),), id="typeerror-short-tuple"),
    pytest.param(("127.0.0.1",), id="typeerror-not-tuple"),
    pytest.param((("not a host", 80), socket.NI_NUMERICHOST), id="gaierror"),
    pytest.param((("127.0.0.1", 80), "flags"), id="typeerror-flags"),
]


@pytest.mark.parametrize("args", GETNAMEINFO_CASES)
def test_getnameinfo_matches_socket_module(loop, args):
    full = args if len(args) == 2 else (*args, 0)
    expected = _outcome(socket.getnameinfo, *full)
    got = run(loop, _aoutcome(lambda: loop.getnameinfo(*args)))
    assert got == expected


def test_getnameinfo_flags_keyword(loop):
    got = run(
        loop,
        loop.getnameinfo(("127.0.0.1", 8080), flags=socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
    )
    assert got == ("127.0.0.1", "8080")


def test_concurrent_lookups(loop):
    async def main():
        return await asyncio.gather(
            *(loop.getaddrinfo("127.0.0.1", p, type=socket.SOCK_STREAM) for p in range(1, 21))
        )

    results = run(loop, main())
    assert [r[0][4] for r in results] == [("127.0.0.1", p) for p in range(1, 21)]
