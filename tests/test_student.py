"""The student build: solutions removed, stubs kept, and each copy runs up to its first
open exercise (which stops it with a NotImplementedError naming the exercise)."""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
import papermill
import pytest

from tools import make_student

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def _cells(source_tags: list[tuple[str, list[str]]]):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src, metadata={"tags": tags}) for src, tags in source_tags]
    return nb


STUB = 'def f():\n    raise NotImplementedError("Exercise 1.1: write f")'
SOLUTION = "# Solution to exercise 1.1\ndef f():\n    return 1"


def test_pairs_are_found_and_solutions_removed():
    nb = _cells([("x = 1", []), (STUB, ["exercise"]), (SOLUTION, ["solution", "hide-input"])])
    assert make_student.exercise_pairs(nb) == [("1.1", 1, 2)]
    copy = make_student.student_copy(nb)
    assert [c.source for c in copy.cells] == ["x = 1", STUB]
    assert len(nb.cells) == 3  # the source notebook is untouched


@pytest.mark.parametrize("cells, problem", [
    ([(STUB, ["exercise"])], "has no solution"),
    ([(SOLUTION, ["solution"])], "does not follow its stub"),
    ([(STUB, ["exercise"]), ("y = 2", []), (SOLUTION, ["solution"])], "sits between"),
    ([(STUB, ["exercise"]), (SOLUTION.replace("1.1", "1.2"), ["solution"])], "does not follow"),
    ([("pass", ["exercise"])], "must raise"),
])
def test_broken_pairs_are_refused(cells, problem):
    with pytest.raises(ValueError, match=problem):
        make_student.student_copy(_cells(cells))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_copy_runs_to_its_first_open_exercise(path, tmp_path, monkeypatch):
    make_student.main(["--out", str(tmp_path)])
    copy = tmp_path / path.name
    original = nbformat.read(path, as_version=4)
    first_exercise = make_student.exercise_pairs(original)[0][0]
    student = nbformat.read(copy, as_version=4)
    assert not any("solution" in c.metadata.get("tags", []) for c in student.cells)
    for key, value in {"ADVLIB_PROFILE": "smoke", "ADVLIB_OFFLINE": "1", "MPLBACKEND": "Agg",
                       "ADVLIB_EXERCISES": "strict"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(papermill.PapermillExecutionError) as stopped:
        papermill.execute_notebook(str(copy), str(tmp_path / "run.ipynb"), kernel_name="python3",
                                   cwd=str(tmp_path), progress_bar=False)
    assert stopped.value.ename == "NotImplementedError"
    assert stopped.value.evalue.startswith(f"Exercise {first_exercise}")
    run = nbformat.read(tmp_path / "run.ipynb", as_version=4)
    failed = [i for i, c in enumerate(run.cells)
              if any(o.output_type == "error" for o in c.get("outputs", []))]
    assert len(failed) == 1 and "exercise" in run.cells[failed[0]].metadata.get("tags", [])
