"""Two coroutines chained together.

The compute() coroutine is chained to the print_sum() coroutine: print_sum() waits
until compute() has completed before it prints the sum.
"""

import asyncio

# The overview pauses for 1 second; the output is the same with a shorter pause.
DELAY = 0.1


async def compute(x, y):
    print(f"Compute {x} + {y} ...")
    # Pause the coroutine, as a non-blocking I/O call would. In the meantime the
    # event loop can get on with other things.
    await asyncio.sleep(DELAY)
    # Actually return a result!
    return x + y


async def print_sum(x, y):
    # Suspend until compute() has a result.
    result = await compute(x, y)
    # This print() is not reached until there is a result.
    print(f"{x} + {y} = {result}")


def main():
    # Start an event loop, run print_sum() until it is complete, close the loop.
    asyncio.run(print_sum(1, 2))


if __name__ == "__main__":
    main()
