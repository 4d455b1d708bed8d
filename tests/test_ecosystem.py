"""The libraries oxloop's users run on it (aiohttp, websockets, uvicorn, httpx, asyncpg), each as
a server and a client on one loop (asyncpg against a throwaway PostgreSQL server), over TCP and
TLS: every scenario runs on the stock loop and on oxloop with the same assertions. Bodies and
messages up to 1 MB or more take the transports past their write buffers' high-water marks, so
flow control (pause/resume of writing, drain) runs too; each scenario ends with the library's own
shutdown.

The packages come from tests/requirements.txt (scripts/test.sh installs them, and PostgreSQL
when it is missing); a missing one skips its tests.
"""

from __future__ import annotations

import asyncio
import glob
import io
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
from test_tls import client_context, server_context
from tls_certs import make_certs

aiohttp = pytest.importorskip("aiohttp")
websockets = pytest.importorskip("websockets")
httpx = pytest.importorskip("httpx")
web = pytest.importorskip("aiohttp.web")
uvicorn = pytest.importorskip("uvicorn")

SIZES = (0, 1, 1000, 65536, 1_000_000)  # up to well past every high-water mark


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


def _contexts(certs, tls):
    """test_tls's server and client contexts, or (None, None) without TLS."""
    return (server_context(certs), client_context(certs)) if tls else (None, None)


def _run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, 60))


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_aiohttp_server_and_client(loop, certs, tls):
    """aiohttp's web server and ClientSession: request bodies of every size echoed with a
    prefix over one keep-alive connection, a streamed response, and a websocket."""

    async def echo(request):
        return web.Response(body=b"got:" + await request.read())

    async def stream(request):
        response = web.StreamResponse()
        await response.prepare(request)
        for i in range(100):
            await response.write(b"%d," % i)
        await response.write_eof()
        return response

    async def ws(request):
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            await sock.send_str(msg.data.upper())
        return sock

    async def main():
        server_ctx, client_ctx = _contexts(certs, tls)
        app = web.Application(client_max_size=2_000_000)
        app.router.add_post("/", echo)
        app.router.add_get("/stream", stream)
        app.router.add_get("/ws", ws)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
        await site.start()
        port = runner.addresses[0][1]
        base = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        try:
            connector = aiohttp.TCPConnector(limit=1, ssl=client_ctx if tls else False)
            async with aiohttp.ClientSession(connector=connector) as session:
                for size in SIZES:
                    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
                    async with session.post(base + "/", data=body) as r:
                        assert r.status == 200
                        assert await r.read() == b"got:" + body
                async with session.get(base + "/stream") as r:
                    assert await r.text() == "".join(f"{i}," for i in range(100))
                async with session.ws_connect(base + "/ws") as sock:
                    for word in ("abc", "x" * 100_000):
                        await sock.send_str(word)
                        assert (await sock.receive()).data == word.upper()
        finally:
            await runner.cleanup()

    _run(loop, main())


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_websockets_server_and_client(loop, certs, tls):
    """websockets' asyncio server and client: text and binary messages from empty to 1 MB,
    each echoed reversed, then a clean close seen by both ends."""
    closed = []

    async def handler(conn):
        async for message in conn:
            await conn.send(message[::-1])
        closed.append(conn.close_code)

    async def main():
        server_ctx, client_ctx = _contexts(certs, tls)
        async with websockets.serve(handler, "127.0.0.1", 0, ssl=server_ctx, max_size=None) as srv:
            port = srv.sockets[0].getsockname()[1]
            uri = f"{'wss' if tls else 'ws'}://127.0.0.1:{port}"
            async with websockets.connect(uri, ssl=client_ctx, max_size=None) as conn:
                for size in SIZES:
                    for message in ("é" * size, bytes(range(256)) * (size // 256)):
                        await conn.send(message)
                        assert await conn.recv() == message[::-1]
            for _ in range(100):
                if closed:
                    break
                await asyncio.sleep(0.01)
        assert closed == [1000]

    _run(loop, main())


def test_uvicorn_with_httpx(loop):
    """An ASGI app served by uvicorn on a socket of ours, called by httpx's AsyncClient:
    request bodies read in chunks, a streamed response body, then uvicorn's graceful
    shutdown."""

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        received = 0
        while True:
            message = await receive()
            received += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = [(b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for part in (b"got ", str(received).encode()):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def main():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        try:
            for _ in range(500):
                if server.started:
                    break
                await asyncio.sleep(0.01)
            assert server.started
            async with httpx.AsyncClient() as client:
                for size in SIZES:
                    r = await client.post(f"http://127.0.0.1:{port}/", content=b"y" * size)
                    assert (r.status_code, r.text) == (200, f"got {size}")
        finally:
            server.should_exit = True
            await serving
            sock.close()

    _run(loop, main())


def _pg_tool(name):
    """A PostgreSQL server program: on PATH, or where Debian keeps it (the newest version)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return shutil.which(name) or (found[-1] if found else None)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server of its own on 127.0.0.1 (trust authentication, no fsync), for this
    module; its port. As root it runs as the postgres user (PostgreSQL refuses root)."""
    initdb, server = _pg_tool("initdb"), _pg_tool("postgres")
    if not (initdb and server):
        pytest.skip("PostgreSQL is not installed (initdb, postgres)")
    base = tempfile.mkdtemp(prefix="oxloop-pg-")
    run_as = []
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base)
            pytest.skip("running as root, and there is no postgres user to run PostgreSQL as")
        os.chown(base, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(base, "data")
    port = _free_port()
    proc = None
    try:
        subprocess.run(
            [*run_as, initdb, "-D", data, "-A", "trust", "-U", "postgres"],
            check=True,
            capture_output=True,
        )
        options = ["-k", base, "-h", "127.0.0.1", "-p", str(port), "-c", "fsync=off"]
        proc = subprocess.Popen(
            [*run_as, server, "-D", data, *options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the PostgreSQL server did not start") from None
                time.sleep(0.1)
        yield port
    finally:
        if proc is not None:
            try:  # a fast shutdown, sent to the server itself (not through runuser)
                with open(os.path.join(data, "postmaster.pid")) as f:
                    os.kill(int(f.readline()), signal.SIGINT)
            except (OSError, ValueError):
                proc.terminate()
            proc.wait(30)
        shutil.rmtree(base, ignore_errors=True)


def test_asyncpg(loop, postgres):
    """asyncpg: a connection and a pool against a PostgreSQL server: prepared statements,
    executemany, a transaction rolled back, COPY in and out, a 5 MB value, LISTEN/NOTIFY."""
    asyncpg = pytest.importorskip("asyncpg")

    async def main():
        dsn = {"host": "127.0.0.1", "port": postgres, "user": "postgres", "database": "postgres"}
        conn = await asyncpg.connect(**dsn)
        try:
            await conn.execute("create temp table t (i int, s text)")
            rows = [(i, "x" * i) for i in range(2000)]
            await conn.executemany("insert into t values ($1, $2)", rows)
            assert [tuple(r) for r in await conn.fetch("select i, s from t order by i")] == rows
            with pytest.raises(asyncpg.UniqueViolationError):
                async with conn.transaction():
                    await conn.execute("create temp table u (k int primary key)")
                    await conn.execute("insert into u values (1), (1)")
            assert await conn.fetchval("select to_regclass('pg_temp.u') is null")
            await conn.copy_records_to_table("t", records=[(-i, "c") for i in range(1, 50_001)])
            out = io.BytesIO()
            await conn.copy_from_query("select * from t where i < 0", output=out)
            assert out.getvalue().count(b"\n") == 50_000
            assert len(await conn.fetchval("select repeat('y', 5000000)")) == 5_000_000
            heard = asyncio.get_running_loop().create_future()
            await conn.add_listener("ch", lambda *args: heard.done() or heard.set_result(args[3]))
            pool = await asyncpg.create_pool(**dsn, min_size=2, max_size=5)
            try:
                doubled = await asyncio.gather(
                    *(pool.fetchval("select $1::int * 2", i) for i in range(200))
                )
                assert doubled == [2 * i for i in range(200)]
                await pool.execute("select pg_notify('ch', 'hello')")
            finally:
                await pool.close()
            assert await asyncio.wait_for(heard, 10) == "hello"
        finally:
            await conn.close()

    _run(loop, main())
