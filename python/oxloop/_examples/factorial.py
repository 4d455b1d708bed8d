"""Three tasks running the same factorial coroutine side by side."""

import asyncio

# The overview pauses for 1 second at each step; the output is the same with a
# shorter pause.
DELAY = 0.1


async def factorial(name, number):
    f = 1
    for i in range(2, number + 1):
        print(f"Task {name}: Compute factorial({i})...")
        await asyncio.sleep(DELAY)
        f *= i
    print(f"Task {name}: factorial({number}) = {f}")


async def run_tasks():
    # Creating the tasks schedules them; they start running at this coroutine's
    # next await.
    tasks = [
        asyncio.create_task(factorial("A", 2)),
        asyncio.create_task(factorial("B", 3)),
        asyncio.create_task(factorial("C", 4)),
    ]
    # Wait until all the tasks are done.
    await asyncio.wait(tasks)


def main():
    asyncio.run(run_tasks())


if __name__ == "__main__":
    main()
