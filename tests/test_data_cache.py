"""Where the data cache lives, offline mode, atomic writes and the download helper."""

from __future__ import annotations

from pathlib import Path

import pytest

from advlib.data import _paths, data_dir, is_offline
from advlib.data.download import atomic_write, download_verified
from advlib.data.errors import ChecksumError, DataUnavailableError
from data_helpers import LocalServer, dead_url


@pytest.fixture
def fake_checkout(tmp_path, monkeypatch):
    root = tmp_path / "checkout"
    (root / "advlib" / "data").mkdir(parents=True)
    monkeypatch.setattr(_paths, "__file__", str(root / "advlib" / "data" / "_paths.py"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ADVLIB_DATA_DIR", raising=False)
    return root


def test_cache_dir_order(fake_checkout, tmp_path, monkeypatch):
    home_cache = tmp_path / "home" / ".cache" / "advlib"
    assert data_dir() == home_cache  # an installed copy: no pyproject.toml + data/ above it
    (fake_checkout / "pyproject.toml").write_text("")
    assert data_dir() == home_cache  # no data/ folder yet
    (fake_checkout / "data").mkdir()
    assert data_dir() == fake_checkout / "data"
    monkeypatch.setenv("ADVLIB_DATA_DIR", str(tmp_path / "env"))
    assert data_dir() == tmp_path / "env"
    assert data_dir(tmp_path / "arg") == tmp_path / "arg"


@pytest.mark.parametrize("value, offline", [("1", True), ("true", True), ("0", False), ("", False)])
def test_offline_flag(monkeypatch, value, offline):
    monkeypatch.setenv("ADVLIB_OFFLINE", value)
    assert is_offline() is offline


def test_atomic_write_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "file.bin"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(_paths.os, "replace", broken_replace)  # the same os module
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, b"three")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


def test_download_tries_mirrors_in_order(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    (www / "f.txt").write_bytes(b"payload")
    seen = []

    def check(data, url):
        seen.append(url)
        if data != b"payload":
            raise ChecksumError("f.txt", "e" * 64, "a" * 64, url)
        return len(data)

    with LocalServer(www) as server:
        urls = [f"{dead_url()}/f.txt", f"{server.url}/forbidden/f.txt", f"{server.url}/f.txt"]
        assert download_verified(urls, tmp_path / "out" / "f.txt", check) == 7
        with pytest.raises(DataUnavailableError) as info:
            download_verified(urls[:2], tmp_path / "out" / "g.txt", check)
    assert seen == [urls[2]]  # failed mirrors never reach the check
    assert "HTTP 403" in str(info.value) and urls[0] in str(info.value)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["f.txt"]


def test_relative_display_of_paths(tmp_path, monkeypatch):
    (tmp_path / "repo" / "notebooks").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "repo" / "notebooks")
    assert _paths.shown(tmp_path / "repo" / "data" / "mnist") == str(Path("..", "data", "mnist"))
