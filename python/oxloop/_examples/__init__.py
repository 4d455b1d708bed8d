"""The first four examples of the overview "Asynchronous Python" (April 2014).

The overview was written for Python 3.4 (``@asyncio.coroutine``, ``yield from``,
``asyncio.async``); these are the same programs in today's syntax. Each module is an
ordinary asyncio program with a ``main()`` that uses the default loop machinery
(``asyncio.run`` or ``asyncio.new_event_loop``), so whichever event loop policy is
installed decides which loop it runs on. ``python -m oxloop`` runs all four on oxloop;
the repository's ``examples/`` directory links to these files.

The overview pauses for a second where it simulates network I/O. Its output does not
depend on the length of the pause, so each module shortens it to ``DELAY`` seconds.
"""
