"""Downloads with checksums, atomic cache writes, and safe zip extraction."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, TypeVar

from .errors import ChecksumError, DataUnavailableError

T = TypeVar("T")
USER_AGENT = "advlib-data/1 (course: Adversarial Training for Robust Recommender Systems)"
TIMEOUT_S = 30


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def check_sha256(data: bytes, expected: str, name: str, origin: str = "") -> None:
    """Raise :class:`ChecksumError` unless ``data`` has SHA-256 ``expected``."""
    actual = sha256_bytes(data)
    if actual != expected.lower():
        raise ChecksumError(name, expected.lower(), actual, origin)


def atomic_write(dest: Path, data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically: a temp file in the same folder, fsync, rename."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(dest.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX only; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fetch(url: str, timeout: float = TIMEOUT_S) -> bytes:
    """The body of ``url``; network failures raise ``OSError`` (``urllib.error.URLError``)."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except http.client.HTTPException as exc:  # e.g. IncompleteRead: connection cut short
        raise urllib.error.URLError(f"{type(exc).__name__}: {exc}") from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def download_verified(
    urls: Iterable[str], dest: Path, check: Callable[[bytes, str], T]
) -> T:
    """Fetch the first URL that works, ``check`` it, then write it atomically to ``dest``.

    ``check(data, url)`` must raise ``ValueError`` (e.g. :class:`ChecksumError`) on bad content;
    its return value is returned. Mirrors are tried in order. Bad content is never written. If
    every mirror fails, a :class:`ChecksumError` is re-raised as is (it names the file and both
    hashes), otherwise :class:`DataUnavailableError` lists each mirror and why it failed.
    """
    failures, content_error = [], None
    for url in urls:
        try:
            data = fetch(url)
        except OSError as exc:
            failures.append(f"{url}: {_reason(exc)}")
            continue
        try:
            result = check(data, url)
        except ValueError as exc:
            failures.append(f"{url}: {exc}")
            content_error = content_error or exc
            continue
        atomic_write(dest, data)
        return result
    if isinstance(content_error, DataUnavailableError):  # a checksum mismatch: say it plainly
        raise content_error
    if not failures:
        raise DataUnavailableError(f"no download URL given for {Path(dest).name}")
    raise DataUnavailableError(
        f"could not download {Path(dest).name}: " + "; ".join(failures)
    )


def _safe_member_path(info: zipfile.ZipInfo, root: Path) -> Path:
    """The destination of a zip member inside ``root``; raise ``ValueError`` if it is unsafe."""
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise ValueError(f"unsafe zip entry {name!r}: symbolic links are not allowed")
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ValueError(f"unsafe zip entry {name!r}: absolute or Windows-style path")
    parts = PurePosixPath(name).parts
    if any(part == ".." for part in parts):
        raise ValueError(f"unsafe zip entry {name!r}: '..' is not allowed")
    target = (root / name).resolve()
    if not target.is_relative_to(root.resolve()):
        raise ValueError(f"unsafe zip entry {name!r}: escapes the target folder")
    return target


def safe_extract_zip(archive: Path, dest: Path) -> Path:
    """Extract ``archive`` into the new folder ``dest`` safely and atomically.

    Every entry is checked first (no absolute paths, no ``..``, no symbolic links, nothing that
    would land outside ``dest``); any bad entry raises ``ValueError`` before a byte is written.
    Files are extracted to a temporary sibling folder that is renamed to ``dest`` at the end.
    """
    archive, dest = Path(archive), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zf:
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part"))
        try:
            members = [(info, _safe_member_path(info, tmp)) for info in zf.infolist()]
            for info, target in members:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest
