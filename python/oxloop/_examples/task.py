"""A coroutine wrapped in a task.

When the coroutine returns a result the task is resolved, which causes the callback
added to the task to run: it prints the result and stops the event loop.
"""

import asyncio

# The overview pauses for 1 second; the output is the same with a shorter pause.
DELAY = 0.1


async def slow_operation():
    """This coroutine *returns* its eventual result."""
    # Imagine a pause for some non-blocking network I/O here.
    await asyncio.sleep(DELAY)
    # A *lot* more conventional, and no faffing about with future instances.
    return "A return value from the slow_operation coroutine!"


def got_result(future):
    """A callback: its only argument is the resolved future, here a Task.

    It prints the result, then stops the event loop.
    """
    print(future.result())
    future.get_loop().stop()


def main():
    loop = asyncio.new_event_loop()
    try:
        # Wrap the coroutine in a task, to run it once the event loop starts.
        task = loop.create_task(slow_operation())
        # got_result runs once the coroutine has returned and resolved the task.
        task.add_done_callback(got_result)
        # Run the event loop until got_result calls loop.stop().
        loop.run_forever()
    finally:
        loop.close()


if __name__ == "__main__":
    main()
