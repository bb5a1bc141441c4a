"""The cpu-profile models of chapter 4, committed under models/: each loads (SHA-256 checked,
``torch.load(weights_only=True)``) and reproduces the clean accuracy recorded next to it on the
same held-out digits, and a tampered file is refused."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import advlib
from advlib import training
from advlib.data import load_mnist
from advlib.evaluation import accuracy
from advlib.models import mnist_cnn

MODELS = Path(__file__).resolve().parents[1] / "models"
METAS = sorted(MODELS.glob("*.json"))
METHODS = {"standard", "pgd_at", "fgsm_rs", "trades"}


def test_the_four_cpu_models_are_committed():
    metas = [json.loads(p.read_text()) for p in METAS]
    assert {m["method"] for m in metas} == METHODS
    assert all(m["profile"] == "cpu" and m["data_source"] == "sample" for m in metas)
    total = sum((MODELS / m["file"]).stat().st_size for m in metas)
    assert total < 5_000_000, "the committed models stay small"


@pytest.fixture(scope="module")
def held_out():
    cpu = advlib.get_profile("cpu")
    data = load_mnist(source="sample", n_train=cpu.mnist_train, n_test=cpu.mnist_test, seed=0)
    return data.x_test[:cpu.eval_size], data.y_test[:cpu.eval_size]


@pytest.mark.parametrize("meta_path", METAS, ids=[p.stem for p in METAS])
def test_saved_model_reproduces_its_clean_accuracy(meta_path, held_out):
    meta = json.loads(meta_path.read_text())
    assert meta["architecture"] == "mnist_cnn" and meta["seed"] == 0
    model = mnist_cnn(normalize=False)
    loaded = training.load_model(model, meta_path.with_suffix(".pt"))
    assert loaded["sha256"] == meta["sha256"]
    assert accuracy(model, *held_out) == pytest.approx(meta["clean_acc"], abs=1e-6)
    if meta["method"] != "standard":
        assert meta["clean_acc"] > 0.9


def test_a_tampered_model_is_refused(tmp_path):
    source = METAS[0].with_suffix(".pt")
    shutil.copy(METAS[0], tmp_path / METAS[0].name)
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / source.name).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        training.load_model(mnist_cnn(normalize=False), tmp_path / source.name)
