"""A package's sdist from the package index pip uses, for the test suites oxloop is measured by:
the sdist of the version installed, checked against the index's sha256, unpacked once into a
cache directory (``~/.cache/oxloop``), and never kept in this repository.
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
from collections.abc import Callable
from pathlib import Path

INDEX = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")


def installed_version(project: str) -> str:
    try:
        return importlib.metadata.version(project)
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(
            f"{project} is not installed (pip install -r tests/requirements.txt)"
        ) from None


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "oxloop"


def _sdist_url(project: str, version: str) -> tuple[str, str]:
    """(url, sha256) of ``project``'s sdist of ``version``, from the index's JSON (PEP 691) page."""
    page = f"{INDEX}/{project}/"
    accept = {"Accept": "application/vnd.pypi.simple.v1+json"}
    request = urllib.request.Request(page, headers=accept)
    with urllib.request.urlopen(request, timeout=60) as response:
        files = json.load(response)["files"]
    names = {f"{project}-{version}.tar.gz", f"{project.replace('-', '_')}-{version}.tar.gz"}
    for entry in files:
        if entry["filename"] in names:
            return urllib.parse.urljoin(page, entry["url"]), entry["hashes"]["sha256"]
    raise RuntimeError(f"no sdist of {project} {version} on {page}")


def unpacked(project: str, name: str, keep: Callable[[Path], bool], marker: str) -> Path:
    """The directory the installed ``project``'s sdist is unpacked into, as ``name``: only the
    members whose path inside the sdist's top directory ``keep`` accepts. Fetched when the
    directory has no ``marker`` (a path in it) yet."""
    version = installed_version(project)
    target = cache_root() / f"{project}-{version}-{name}"
    if (target / marker).exists():
        return target
    url, sha256 = _sdist_url(project, version)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        archive = Path(scratch) / "sdist.tar.gz"
        with urllib.request.urlopen(url, timeout=120) as response, open(archive, "wb") as out:
            shutil.copyfileobj(response, out)
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        if digest != sha256:
            raise RuntimeError(f"{url}: sha256 {digest}, the index says {sha256}")
        destination_root = Path(scratch) / "unpacked"
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                _, _, inside = member.name.partition("/")
                relative = Path(inside)
                if not (member.isfile() and inside and keep(relative)):
                    continue
                if ".." in relative.parts or relative.is_absolute():
                    raise RuntimeError(f"{url}: unexpected member {member.name}")
                destination = destination_root / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(tar.extractfile(member).read())
        if not (destination_root / marker).exists():
            raise RuntimeError(f"{url}: no {marker} in the sdist")
        os.replace(destination_root, target)
    return target
