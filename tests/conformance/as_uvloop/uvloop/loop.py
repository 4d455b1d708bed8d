"""``uvloop.loop``: its ``Loop`` class (anyio's tests look there for its methods)."""

from oxloop import Loop as Loop
