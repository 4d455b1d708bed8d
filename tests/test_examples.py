"""The examples print the same, line for line, on the stock loop and on oxloop."""

from __future__ import annotations

import http.server
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import clean_env, default_sigint

ROOT = Path(__file__).resolve().parent.parent

# What the overview's programs print.
EXPECTED = {
    "compute": "Compute 1 + 2 ...\n1 + 2 = 3\n",
    "future": "A result set by the slow_operation coroutine!\n",
    "task": "A return value from the slow_operation coroutine!\n",
    "factorial": (
        "Task A: Compute factorial(2)...\n"
        "Task B: Compute factorial(2)...\n"
        "Task C: Compute factorial(2)...\n"
        "Task A: factorial(2) = 2\n"
        "Task B: Compute factorial(3)...\n"
        "Task C: Compute factorial(3)...\n"
        "Task B: factorial(3) = 6\n"
        "Task C: Compute factorial(4)...\n"
        "Task C: factorial(4) = 24\n"
    ),
    # With no URL: the headers of its own server's page.
    "headers": (
        "HTTP header> HTTP/1.0 200 OK\n"
        "HTTP header> Server: oxloop-example\n"
        "HTTP header> Content-Type: text/html; charset=utf-8\n"
        "HTTP header> Content-Length: 0\n"
    ),
    # With --demo: it serves, its own client sends one line, it stops.
    "echo_server": (
        "Serving on ('127.0.0.1', PORT)\n"
        "Connection from ('127.0.0.1', PORT)\n"
        "Data received: 'Hello, World!\\n'\n"
        "Send: 'Hello, World!\\n'\n"
        "Close the client socket\n"
        "The client got back 'Hello, World!\\n'\n"
    ),
}

# The command-line arguments of the examples in EXPECTED, as the demo gives them.
ARGS = {"echo_server": ["--demo"]}

# How long a server may take to exit after SIGINT; it takes milliseconds.
SIGINT_TIMEOUT = 5


def normalise(output):
    """The output with the port numbers the system picked replaced by PORT."""
    return re.sub(r"\('127\.0\.0\.1', \d+\)", "('127.0.0.1', PORT)", output)


def command(name, kind, *args):
    """The command that runs examples/NAME.py on the stock loop or on oxloop."""
    prefix = [sys.executable] if kind == "asyncio" else [sys.executable, "-m", "oxloop"]
    return [*prefix, f"examples/{name}.py", *args]


def run_example(run_python, name, kind, *args, env=None):
    result = run_python(command(name, kind, *args), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


@pytest.mark.parametrize("name", list(EXPECTED))
def test_example(name, loop_kind, run_python):
    args = ARGS.get(name, [])
    stock = normalise(run_example(run_python, name, "asyncio", *args))
    assert stock == EXPECTED[name]
    if loop_kind == "oxloop":
        assert normalise(run_example(run_python, name, "oxloop", *args)) == stock


# -- headers.py against a server of the test's --

# What the test's HTTP server answers to HEAD: no Date or Server header, so that the
# output is known in advance.
HTTP_HEADERS = [
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Content-Length", "21"),
    ("X-Example", "Do not stand in the shadow"),
]
EXPECTED_HEADERS = "HTTP header> HTTP/1.0 200 OK\n" + "".join(
    f"HTTP header> {name}: {value}\n" for name, value in HTTP_HEADERS
)


class FixedHeadersHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_HEAD(self):
        self.server.requests.append((self.requestline, self.headers["Host"]))
        self.send_response_only(200)  # send_response() would add Server and Date
        for name, value in HTTP_HEADERS:
            self.send_header(name, value)
        self.end_headers()

    def log_message(self, format, *args):
        pass


def serve_http(context=None):
    """An HTTP server on 127.0.0.1 in a thread (HTTPS with an SSL context); stop it later."""
    server = http.server.HTTPServer(("127.0.0.1", 0), FixedHeadersHandler)
    server.requests = []
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        server.server_close()
        thread.join()

    return server, stop


@pytest.fixture
def http_server():
    server, stop = serve_http()
    yield server
    stop()


def test_headers(loop_kind, run_python, http_server):
    port = http_server.server_address[1]
    url = f"http://127.0.0.1:{port}/path/page.html?x=1"
    stock = run_example(run_python, "headers", "asyncio", url)
    assert stock == EXPECTED_HEADERS
    request = ("HEAD /path/page.html?x=1 HTTP/1.0", "127.0.0.1")
    assert http_server.requests == [request]
    if loop_kind == "oxloop":
        assert run_example(run_python, "headers", "oxloop", url) == stock
        assert http_server.requests == [request, request]


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1 and localhost: (certificate, key) files."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is missing")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    request = ["openssl", "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=localhost"]
    request += ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    request += ["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]
    request += ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(request, check=True, capture_output=True)
    return cert, key


def test_headers_https(loop_kind, run_python, certificate):
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server, stop = serve_http(context)
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}/"
        # ssl=True verifies the server's certificate against the default CA file.
        env = {"SSL_CERT_FILE": str(cert)}
        stock = run_example(run_python, "headers", "asyncio", url, env=env)
        assert stock == EXPECTED_HEADERS
        if loop_kind == "oxloop":
            assert run_example(run_python, "headers", "oxloop", url, env=env) == stock
    finally:
        stop()


# -- echo_server.py, talked to as the overview does with netcat, stopped with Ctrl-C --

ECHO_LINES = [b"Hello, World!\n", b"Do not become an echo of someone else's opinion\n"]


def expected_echo_output():
    lines = ["Serving on ('127.0.0.1', PORT)", "Connection from ('127.0.0.1', PORT)"]
    for data in ECHO_LINES:
        message = data.decode()
        lines += [
            "Connection from ('127.0.0.1', PORT)",
            f"Data received: {message!r}",
            f"Send: {message!r}",
            "Close the client socket",
        ]
    return "".join(f"{line}\n" for line in lines)


def receive_all(sock):
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def run_echo_server(kind):
    """Serve on a free port, echo ECHO_LINES, stop with SIGINT; return the normalised output.

    A client that has connected but sent nothing is still connected at SIGINT: the
    server stops all the same, and the client sees the connection end.
    """
    proc = subprocess.Popen(
        command("echo_server", kind, "--port", "0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
        cwd=ROOT,
        preexec_fn=default_sigint,  # noqa: PLW1509 (only sets a signal disposition)
    )
    try:
        serving = proc.stdout.readline()
        match = re.fullmatch(r"Serving on \('127\.0\.0\.1', (\d+)\)\n", serving)
        assert match, f"{serving!r}, then {proc.communicate(timeout=SIGINT_TIMEOUT)}"
        address = ("127.0.0.1", int(match[1]))
        with socket.create_connection(address, timeout=SIGINT_TIMEOUT) as idle:
            for data in ECHO_LINES:
                with socket.create_connection(address, timeout=SIGINT_TIMEOUT) as client:
                    client.sendall(data)
                    # The server closes the connection after its echo.
                    assert receive_all(client) == data
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=SIGINT_TIMEOUT)
            assert receive_all(idle) == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (proc.returncode, err) == (0, "")
    return normalise(serving + out)


def test_echo_server(loop_kind):
    stock = run_echo_server("asyncio")
    assert stock == expected_echo_output()
    if loop_kind == "oxloop":
        assert run_echo_server("oxloop") == stock


@pytest.mark.parametrize("name", list(EXPECTED))
def test_example_is_the_packaged_one(name):
    # `python -m oxloop` runs the copies in the package; examples/ must show the same code.
    shipped = ROOT / "python" / "oxloop" / "_examples" / f"{name}.py"
    assert (ROOT / "examples" / f"{name}.py").read_text() == shipped.read_text()


def test_demo_prints_every_example(oxloop_module, run_python):
    from oxloop.__main__ import DEMO, demo_header

    result = run_python([sys.executable, "-m", "oxloop"])
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert [name for name, _, _ in DEMO] == list(EXPECTED)
    assert {name: list(args) for name, args, _ in DEMO if args} == ARGS
    output = normalise(result.stdout)
    position = 0
    for name, args, title in DEMO:
        section = f"{demo_header(name, title, args)}\n{EXPECTED[name]}"
        found = output.find(section, position)
        assert found >= 0, f"{name}'s output is missing or out of order:\n{output}"
        position = found + len(section)
