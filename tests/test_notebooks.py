"""Every chapter notebook: stored clean, consistent with the repository URL, runs in the
smoke profile without errors, and every exercise solution passes its check."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tools import build_book, make_student, sync_colab

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
STRIP_KEYS = "metadata.papermill cell.metadata.papermill cell.metadata.execution"
MACHINE_PATH = re.compile(r"(^|[^A-Za-z0-9_.~])/(work|tmp|root|home|opt|Users)/[A-Za-z]")


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.stem)
def notebook_path(request) -> Path:
    return request.param


def test_every_notebook_is_in_the_table_of_contents():
    assert NOTEBOOKS, "no chapter notebooks found"
    assert [p.name for p in build_book.notebooks_in_toc(REPO)] == [p.name for p in NOTEBOOKS]


def test_stored_without_outputs(notebook_path):
    # Outputs are kept only where nbval compares them (tag keep_output).
    result = subprocess.run(
        [sys.executable, "-m", "nbstripout", "--verify", "--keep-count",
         "--extra-keys", STRIP_KEYS, str(notebook_path)], capture_output=True, text=True)
    assert result.returncode == 0, f"run nbstripout on {notebook_path.name}: {result.stdout}"


def test_anatomy(notebook_path):
    nb = nbformat.read(notebook_path, as_version=4)
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert markdown[0].lstrip().startswith("# "), "first markdown cell must open with '# Title'"
    assert sum(line.startswith("# ") for text in markdown for line in text.splitlines()) == 1
    tags = [set(c.metadata.get("tags", [])) for c in nb.cells]
    assert sum("parameters" in t for t in tags) == 1
    parameters = next(c for c, t in zip(nb.cells, tags) if "parameters" in t)
    assert re.search(r'^PROFILE = "auto"', parameters.source, re.M)
    text = "\n".join(c.source for c in nb.cells)
    for heading in ("## Overview", "## Prerequisites", "## Exercises", "## Summary", "## References"):
        assert heading in text, f"missing section {heading!r}"
    assert not MACHINE_PATH.search(text), "machine path in the notebook"


def test_colab_badge_and_install_cell_match_the_repository(notebook_path):
    url, branch = sync_colab.repository(REPO)
    nb = nbformat.read(notebook_path, as_version=4)
    assert sync_colab.synced(nb, notebook_path.name, url, branch) == [], \
        "run `python tools/sync_colab.py`"


def test_exercises_come_in_pairs(notebook_path):
    pairs = make_student.exercise_pairs(nbformat.read(notebook_path, as_version=4))
    assert len(pairs) >= 4, "a chapter has at least four exercises"
    ids = [exercise for exercise, _, _ in pairs]
    chapter = str(int(notebook_path.stem[:2]))
    assert all(i.split(".")[0] == chapter for i in ids) and len(set(ids)) == len(ids)


def test_runs_clean_and_solutions_pass(executed, records):
    for stem, path in executed.items():
        nb = nbformat.read(path, as_version=4)
        errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
        assert not errors, f"{stem}: {errors[0]['ename']}: {errors[0]['evalue']}"
        for exercise, _, _ in make_student.exercise_pairs(nb):
            assert records[stem].get("exercise_" + exercise.replace(".", "_")) is True, \
                f"{stem}: the solution of exercise {exercise} does not pass its check"


def test_nbval_checked_outputs():
    """Re-execute the notebooks and compare the outputs stored on purpose."""
    checked = [p for p in NOTEBOOKS if "nbval-check-output" in json.dumps(json.loads(p.read_text()))]
    if not checked:
        pytest.skip("no notebook stores outputs for nbval")
    env = {**os.environ, "ADVLIB_PROFILE": "smoke", "ADVLIB_OFFLINE": "1",
           "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
         "--nbval-current-env", *map(str, checked)],
        cwd=REPO / "notebooks", env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:]
