"""advlib core: profiles, seeds, device choice, records and exercise checks."""
from __future__ import annotations

import math
import warnings

import nbformat
import numpy as np
import papermill
import pytest
import torch

import advlib
from advlib import exercises
from advlib.profiles import PROFILE_NAMES, PROFILES


# ---------------------------------------------------------------- profiles
def test_every_profile_is_defined_and_grows(monkeypatch):
    monkeypatch.delenv("ADVLIB_PROFILE", raising=False)
    assert set(PROFILES) == set(PROFILE_NAMES)
    smoke, cpu = PROFILES["smoke"], PROFILES["cpu"]
    assert smoke.mnist_train < cpu.mnist_train and smoke.eps_points <= cpu.eps_points
    assert PROFILES["gpu"].mnist_train is None  # the gpu profile uses all the data


def test_auto_profile_follows_env_then_hardware(monkeypatch):
    monkeypatch.setenv("ADVLIB_PROFILE", "smoke")
    assert advlib.get_profile("auto").name == "smoke"
    assert advlib.get_profile("cpu").name == "cpu"  # an explicit choice wins over the env
    monkeypatch.delenv("ADVLIB_PROFILE")
    expected = "gpu" if torch.cuda.is_available() else "cpu"
    assert advlib.resolve_profile_name(" AUTO ") == expected


@pytest.mark.parametrize("bad", ["fast", "", "gpu2"])
def test_unknown_profile_is_a_clear_error(bad, monkeypatch):
    monkeypatch.delenv("ADVLIB_PROFILE", raising=False)
    with pytest.raises(ValueError, match="unknown profile"):
        advlib.get_profile(bad)


def test_describe_names_every_size():
    line = advlib.describe(PROFILES["cpu"])
    assert line.startswith("profile 'cpu'") and "mnist_train=4000" in line


# ---------------------------------------------------------------- runtime
def test_set_seed_makes_torch_and_numpy_repeat():
    gen_a = advlib.set_seed(7)
    a = (torch.rand(3), np.random.rand(3), torch.rand(2, generator=gen_a))
    gen_b = advlib.set_seed(7)
    b = (torch.rand(3), np.random.rand(3), torch.rand(2, generator=gen_b))
    for left, right in zip(a, b):
        assert np.allclose(np.asarray(left), np.asarray(right))
    assert torch.are_deterministic_algorithms_enabled()
    advlib.set_seed(8)
    assert not torch.equal(a[0], torch.rand(3))


@pytest.mark.parametrize("bad", [-1, 1.5, "0", True])
def test_set_seed_rejects_bad_seeds(bad):
    with pytest.raises(ValueError):
        advlib.set_seed(bad)


def test_device_warns_loudly_when_gpu_expected_but_missing(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(advlib.NoGPUWarning):
        assert advlib.device(profile_name="gpu").type == "cpu"
    assert "GPU was expected" in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert advlib.device(profile_name="cpu").type == "cpu"  # no warning when none expected
    with pytest.raises(ValueError):
        advlib.device("tpu")


def test_progress_can_be_silenced(capsys):
    assert list(advlib.progress(range(3), enabled=False)) == [0, 1, 2]
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


# ---------------------------------------------------------------- records
def test_record_converts_and_rejects():
    assert advlib.record("plain_value", np.float32(0.5)) == np.float32(0.5)
    assert advlib.recorded()["plain_value"] == 0.5
    advlib.record("curve", torch.tensor([1.0, 0.5]).tolist())
    assert advlib.recorded()["curve"] == [1.0, 0.5]
    with pytest.raises(ValueError, match="finite"):
        advlib.record("bad", math.nan)
    with pytest.raises(ValueError, match="identifiers"):
        advlib.record("not a name", 1)
    with pytest.raises(TypeError):
        advlib.record("tensor", torch.zeros(3))


def _notebook(*sources: str):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def test_records_survive_papermill_and_reach_myst_nb_glue(tmp_path):
    from myst_nb.ext.glue import extract_glue_data_cell

    source = tmp_path / "in.ipynb"
    nbformat.write(_notebook(
        "import advlib\nadvlib.record('acc', 0.9571)\nadvlib.record('n', 4000);",
        "advlib.record('source', 'sample'); advlib.record('curve', [1.0, 0.25])"), source)
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(str(source), str(out), kernel_name="python3", progress_bar=False)
    assert advlib.read_records(out) == {"acc": 0.9571, "n": 4000, "source": "sample",
                                        "curve": [1.0, 0.25]}
    # myst-nb reads the same outputs as glue data, so {glue:text}`acc:.1%` works in prose.
    cell = nbformat.read(out, as_version=4).cells[0]
    glued = dict(extract_glue_data_cell(cell))
    assert glued["acc"]["data"]["text/plain"] == "0.9571"
    assert cell.outputs == []  # records are invisible in the rendered page


def test_read_records_refuses_duplicate_names(tmp_path):
    source, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(_notebook("import advlib\nadvlib.record('x', 1)", "advlib.record('x', 2)"), source)
    papermill.execute_notebook(str(source), str(out), kernel_name="python3", progress_bar=False)
    with pytest.raises(ValueError, match="more than one cell"):
        advlib.read_records(out)


# ---------------------------------------------------------------- exercise checks
def _right():
    assert 1 + 1 == 2


def _wrong():
    assert 1 + 1 == 3, "1 + 1 is not 3"


def _unfinished():
    raise NotImplementedError("Exercise 9.1: your code here")


def test_check_reports_verdicts_and_records_success(monkeypatch, capsys):
    monkeypatch.delenv("ADVLIB_EXERCISES", raising=False)
    assert exercises.check("9.1", _right) is True
    assert advlib.recorded()["exercise_9_1"] is True
    assert exercises.check("9.2", _wrong) is False
    assert exercises.check("9.3", _unfinished) is False
    out = capsys.readouterr().out
    assert "✓ Exercise 9.1" in out and "✗ Exercise 9.2: not right yet. 1 + 1 is not 3" in out
    assert "Exercise 9.3: not done yet" in out
    assert "exercise_9_2" not in advlib.recorded() and "exercise_9_3" not in advlib.recorded()


def test_strict_mode_raises(monkeypatch):
    monkeypatch.setenv("ADVLIB_EXERCISES", "strict")
    with pytest.raises(NotImplementedError, match="Exercise 9.1"):
        exercises.check("9.1", _unfinished)
    with pytest.raises(AssertionError):
        exercises.check("9.2", _wrong)
    with pytest.raises(ValueError):
        exercises.check("nine", _right)


def test_progress_obeys_tqdm_disable(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert advlib.progress(range(2)).disable
    monkeypatch.delenv("TQDM_DISABLE")
    assert not advlib.progress(range(2)).disable
