"""A future and a coroutine interact.

The future is resolved with the result of the coroutine, which causes the callback
added to the future to run: it prints the result and stops the event loop.
"""

import asyncio

# The overview pauses for 1 second; the output is the same with a shorter pause.
DELAY = 0.1


async def slow_operation(future):
    """Resolve the future when this coroutine's own work is done."""
    # Imagine a pause for some non-blocking network I/O here.
    await asyncio.sleep(DELAY)
    # Resolve the future with an arbitrary result.
    future.set_result("A result set by the slow_operation coroutine!")


def got_result(future):
    """A callback: its only argument is the resolved future.

    It prints the future's result, then stops the event loop.
    """
    print(future.result())
    future.get_loop().stop()


def main():
    loop = asyncio.new_event_loop()
    try:
        # The future that stands for the result nobody knows yet.
        future = loop.create_future()
        # Wrap the coroutine in a task, to run it once the event loop starts.
        loop.create_task(slow_operation(future))
        # got_result runs once the coroutine has resolved the future.
        future.add_done_callback(got_result)
        # Run the event loop until got_result calls loop.stop().
        loop.run_forever()
    finally:
        loop.close()


if __name__ == "__main__":
    main()
