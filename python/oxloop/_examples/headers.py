"""Use a coroutine and the Streams API to get HTTP headers.

Usage:

    python headers.py http://example.com/path/page.html

With no URL, it starts a tiny HTTP server of its own on 127.0.0.1 (a free port) and gets
the headers from there: that is what ``python -m oxloop`` shows, without the network.
"""

import asyncio
import sys
import urllib.parse

# What the tiny local server answers to any request: always the same headers, so the
# output is always the same.
RESPONSE = (
    "HTTP/1.0 200 OK\r\n"
    "Server: oxloop-example\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
)


async def print_http_headers(url):
    url = urllib.parse.urlsplit(url)
    # An example of awaiting non-blocking network I/O.
    if url.scheme == "https":
        connect = asyncio.open_connection(url.hostname, url.port or 443, ssl=True)
    else:
        connect = asyncio.open_connection(url.hostname, url.port or 80)
    reader, writer = await connect
    # We get here once the connection is made. The reader and writer stream objects
    # represent what you'd expect given their names.
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    query = f"HEAD {path} HTTP/1.0\r\nHost: {url.hostname}\r\n\r\n"
    # Write data out (does not block).
    writer.write(query.encode("latin-1"))
    while True:
        # Another example of non-blocking network I/O, reading asynchronous input.
        line = await reader.readline()
        if not line:
            # The server closed the connection.
            break
        line = line.decode("latin1").rstrip()
        if not line:
            # The blank line that ends the headers.
            break
        print(f"HTTP header> {line}")
    # Ignore the body, close the socket.
    writer.close()
    await writer.wait_closed()


async def answer_request(reader, writer):
    """The tiny local server: read the request up to its blank line, answer, hang up."""
    while (await reader.readline()).strip():  # b"" at EOF ends it too
        pass
    writer.write(RESPONSE.encode("latin-1"))
    writer.close()
    await writer.wait_closed()


async def print_local_http_headers():
    """Serve on 127.0.0.1 (port 0: any free port) and print the headers served there."""
    server = await asyncio.start_server(answer_request, "127.0.0.1", 0)
    async with server:
        host, port = server.sockets[0].getsockname()
        await print_http_headers(f"http://{host}:{port}/")


def main():
    if len(sys.argv) < 2:
        asyncio.run(print_local_http_headers())
        return
    url = sys.argv[1]
    if urllib.parse.urlsplit(url).scheme in ("http", "https"):
        asyncio.run(print_http_headers(url))
    else:
        sys.exit(f"usage: python headers.py http://example.com/path/page.html (not {url!r})")


if __name__ == "__main__":
    main()
