"""uvloop's own test suite, for the conformance runner's ``--suite uvloop``: where it comes from.

uvloop's tests (the ``tests/`` package of its sdist; its wheels do not have it) run each scenario
on uvloop (the ``Test_UV_*`` classes) and on the stock loop (``Test_AIO_*``, subclasses of
``uvloop._testbase.AIOTestCase``, whose loop is ``asyncio.new_event_loop()``). The runner runs
the asyncio half with the default policy's loop factory replaced, as it does CPython's suite:
uvloop's scenarios, as asyncio's loop passes them, on the loop under test.

The tests are those of the uvloop installed (their ``_testbase`` is its module): fetched from the
package index pip uses, checked against the index's sha256, unpacked into a cache directory, and
never kept in this repository.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

# The modules with Test_AIO_* classes, the slowest first, so that --jobs packs well.
SELECTION = (
    "test_tcp",
    "test_process",
    "test_base",
    "test_unix",
    "test_signals",
    "test_context",
    "test_pipes",
    "test_udp",
    "test_sockets",
    "test_executors",
    "test_dns",
    "test_aiohttp",
)
PACKAGE = "tests"  # the package name the test modules import as
INDEX = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")


def installed_version() -> str | None:
    try:
        return importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        return None


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "oxloop"


def _sdist(version: str) -> tuple[str, str]:
    """(url, sha256) of uvloop's sdist of ``version``, from the index's JSON (PEP 691) page."""
    request = urllib.request.Request(
        f"{INDEX}/uvloop/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        files = json.load(response)["files"]
    name = f"uvloop-{version}.tar.gz"
    for entry in files:
        if entry["filename"] == name:
            return urllib.parse.urljoin(f"{INDEX}/uvloop/", entry["url"]), entry["hashes"]["sha256"]
    raise RuntimeError(f"{name} is not on {INDEX}/uvloop/")


def tests_path() -> Path:
    """The directory to put on ``sys.path`` for ``import tests.test_tcp`` and the rest: fetched
    and unpacked once per uvloop version."""
    version = installed_version()
    if version is None:
        raise RuntimeError("uvloop is not installed (pip install -r tests/requirements.txt)")
    target = cache_root() / f"uvloop-{version}-tests"
    if (target / PACKAGE / "__init__.py").exists():
        return target
    url, sha256 = _sdist(version)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        archive = Path(scratch) / "sdist.tar.gz"
        with urllib.request.urlopen(url, timeout=120) as response, open(archive, "wb") as out:
            shutil.copyfileobj(response, out)
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        if digest != sha256:
            raise RuntimeError(f"{url}: sha256 {digest}, the index says {sha256}")
        root = f"uvloop-{version}/"
        unpacked = Path(scratch) / "unpacked"
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if not (member.isfile() and member.name.startswith(f"{root}{PACKAGE}/")):
                    continue
                relative = Path(member.name.removeprefix(root))
                if ".." in relative.parts:
                    raise RuntimeError(f"{url}: unexpected member {member.name}")
                destination = unpacked / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(tar.extractfile(member).read())
        if not (unpacked / PACKAGE / "__init__.py").exists():
            raise RuntimeError(f"{url}: no {PACKAGE}/ package in the sdist")
        os.replace(unpacked, target)
    return target
