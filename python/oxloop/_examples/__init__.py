"""The six examples of the overview "Asynchronous Python" (April 2014).

The overview was written for Python 3.4 (``@asyncio.coroutine``, ``yield from``,
``asyncio.async``); these are the same programs in today's syntax. Each module is an
ordinary asyncio program with a ``main()`` that uses the default loop machinery
(``asyncio.run`` or ``asyncio.new_event_loop``), so whichever event loop policy is
installed decides which loop it runs on. ``python -m oxloop`` runs all six on oxloop;
the repository's ``examples/`` directory links to these files.

The overview pauses for a second where it simulates network I/O. Its output does not
depend on the length of the pause, so each module shortens it to ``DELAY`` seconds.

The last two do real network I/O: ``headers`` prints the HTTP headers of a URL (with no
URL, of a tiny server of its own on 127.0.0.1), ``echo_server`` serves on 127.0.0.1
until Ctrl-C (with ``--demo``, until a client of its own has had one line echoed).
"""
