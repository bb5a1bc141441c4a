"""The Colab path: in a fresh virtual environment that has only torch, numpy and matplotlib
(plus the Jupyter kernel Colab provides), chapter 1's setup cell installs advlib and the
notebook runs. The setup cell is pointed at a copy of this checkout instead of the
repository URL through ``ADVLIB_INSTALL_FROM``."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import papermill
import pytest

import advlib
from tools import build_book

REPO = Path(__file__).resolve().parents[1]
CHAPTER = REPO / "notebooks" / "01_robustness_concepts.ipynb"
TORCH = next(line for line in (REPO / "requirements" / "constraints.txt").read_text().splitlines()
             if line.startswith("torch=="))


def _pip(venv: Path, *args: str) -> None:
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                    "--disable-pip-version-check", *args], check=True, timeout=900)


@pytest.mark.slow
@pytest.mark.skipif(not CHAPTER.exists(), reason="chapter 1 not written yet")
def test_chapter_1_runs_from_a_bare_colab_like_environment(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    _pip(venv, TORCH, "numpy", "matplotlib", "ipykernel")
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import advlib"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert "No module named 'advlib'" in probe.stderr, "the fresh environment must lack advlib"

    # What a clone from GitHub contains that pip needs: the package and its metadata.
    source = tmp_path / "checkout"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "advlib", source / "advlib",
                    ignore=shutil.ignore_patterns("__pycache__"))

    kernels = tmp_path / "jupyter"
    spec = kernels / "kernels" / "colab-like"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(venv / "bin" / "python"), "-m", "ipykernel_launcher", "-f",
                 "{connection_file}"],
        "display_name": "colab-like", "language": "python"}))
    env = {"JUPYTER_PATH": str(kernels), "ADVLIB_INSTALL_FROM": str(source),
           "ADVLIB_PROFILE": "smoke", "ADVLIB_OFFLINE": "1", "MPLBACKEND": "Agg",
           "ADVLIB_DATA_DIR": str(tmp_path / "cache")}
    out = tmp_path / "chapter1.ipynb"
    with build_book.temporary_environment(**env):
        papermill.execute_notebook(str(CHAPTER), str(out), kernel_name="colab-like",
                                   cwd=str(tmp_path), progress_bar=False)
    installed = subprocess.run([str(venv / "bin" / "python"), "-c",
                                "import advlib, pathlib; print(pathlib.Path(advlib.__file__))"],
                               capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert str(venv) in installed, "advlib must come from the fresh environment, not the checkout"
    assert advlib.read_records(out).get("clean_acc", 0) > 0.9
