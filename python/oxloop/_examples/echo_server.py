"""A simple (yet poetic) echo server. ;-)

- ECHO -

Use your voice - say what you mean
Do not stand in the shadow
Do not become an echo of someone else's opinion
We must accept ourselves and each other
Even the perfect diamond
may have cracks and faults

A-L Andresen, 2014. (http://bit.ly/1nvhr8T)

Usage:

    python echo_server.py [PORT | --port PORT] [--demo]

It serves on 127.0.0.1, port 8888 unless told otherwise (0: any free port). Talk to it
with netcat, ``nc localhost 8888``, and stop it with Ctrl-C. With ``--demo`` it serves on
a free port, has a client of its own send one line, and stops once the client has the
echo: that is what ``python -m oxloop`` shows.
"""

import argparse
import asyncio

# The overview listens on every interface (''); this listens on loopback only, so trying
# the example opens nothing to the network.
HOST = "127.0.0.1"
PORT = 8888


class EchoProtocol(asyncio.Protocol):
    """The behaviour of the echo protocol.

    A new instance of this class is made for each new connection.
    """

    def connection_made(self, transport):
        """Called only once, when the new connection is made.

        The transport argument represents the connection to the client.
        """
        print(f"Connection from {transport.get_extra_info('peername')}")
        self.transport = transport

    def data_received(self, data):
        """Called when the client sends data (the data argument)."""
        message = data.decode(errors="replace")
        print(f"Data received: {message!r}")
        # Write the incoming data straight back to the client.
        print(f"Send: {message!r}")
        self.transport.write(data)
        # Calling self.transport.close() disconnects. For the connection to persist,
        # leave out the following lines.
        print("Close the client socket")
        self.transport.close()


async def say_hello(port):
    """The client of --demo: what ``nc localhost 8888`` does, typing one line."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(b"Hello, World!\n")
    # Read up to the end: the server hangs up after its echo.
    echo = await reader.read()
    print(f"The client got back {echo.decode()!r}")
    writer.close()
    await writer.wait_closed()


def parse_args():
    """The port to serve on, and whether to run the demo."""
    parser = argparse.ArgumentParser(description="The overview's echo server.")
    port = parser.add_mutually_exclusive_group()
    port.add_argument(
        "port", nargs="?", type=int, help=f"the port to serve on (default {PORT}; 0: any free one)"
    )
    port.add_argument("--port", type=int, dest="port_option", metavar="PORT", help="the same")
    parser.add_argument("--demo", action="store_true", help="echo one client's line, then stop")
    args = parser.parse_args()
    for given in (args.port, args.port_option):
        if given is not None:
            return given, args.demo
    return (0 if args.demo else PORT), args.demo


def main():
    port, demo = parse_args()
    loop = asyncio.new_event_loop()
    try:
        # Create the coroutine that sets up the server, and run it to set the server up.
        echo_coroutine = loop.create_server(EchoProtocol, HOST, port)
        server = loop.run_until_complete(echo_coroutine)
        # Flushed at once, for a program that waits for this line through a pipe.
        print(f"Serving on {server.sockets[0].getsockname()}", flush=True)
        try:
            if demo:
                # Run the event loop until the client is done.
                port = server.sockets[0].getsockname()[1]
                loop.run_until_complete(say_hello(port))
            else:
                # Run the event loop forever, waiting for new connections.
                loop.run_forever()
        except KeyboardInterrupt:
            # Unless we get Ctrl-C.
            pass
        finally:
            # Stop serving (existing connections remain open: server.wait_closed() would
            # wait for them too, on Python 3.12 and later).
            server.close()
    finally:
        # Shut down the loop.
        loop.close()


if __name__ == "__main__":
    main()
