"""Write student copies of the chapter notebooks: solutions removed, stubs kept.

    python tools/make_student.py [--out student]

A solution cell carries the tag ``solution``; its stub (tag ``exercise``) stays. The
function :func:`exercise_pairs` is also what the tests use to check that every stub has its
solution.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import nbformat

REPO_ROOT = Path(__file__).resolve().parents[1]
STUB_ID = re.compile(r"NotImplementedError\(\s*[\"']Exercise (\d+\.\d+)\b")
SOLUTION_ID = re.compile(r"^# Solution to exercise (\d+\.\d+)\b")


def _tags(cell) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def exercise_pairs(notebook) -> list[tuple[str, int, int]]:
    """``(exercise id, stub index, solution index)`` for every exercise, in order.

    Raises ``ValueError`` when a stub has no solution right after it (markdown cells may sit
    between them), when ids disagree, or when a solution has no stub.
    """
    pairs, open_stub = [], None
    for index, cell in enumerate(notebook.cells):
        tags = _tags(cell)
        if "exercise" in tags:
            match = STUB_ID.search(cell.source)
            if not match:
                raise ValueError(f"cell {index}: an exercise stub must raise "
                                 "NotImplementedError('Exercise N.M: ...')")
            if open_stub:
                raise ValueError(f"exercise {open_stub[0]} has no solution cell")
            open_stub = (match.group(1), index)
        elif "solution" in tags:
            match = SOLUTION_ID.match(cell.source)
            if not match:
                raise ValueError(f"cell {index}: a solution must start with "
                                 "'# Solution to exercise N.M'")
            if not open_stub or open_stub[0] != match.group(1):
                raise ValueError(f"solution {match.group(1)} (cell {index}) does not follow its stub")
            pairs.append((open_stub[0], open_stub[1], index))
            open_stub = None
        elif cell.cell_type == "code" and open_stub:
            raise ValueError(f"exercise {open_stub[0]}: code cell {index} sits between stub and solution")
    if open_stub:
        raise ValueError(f"exercise {open_stub[0]} has no solution cell")
    return pairs


def student_copy(notebook):
    """The notebook without its solution cells (a new object; the input is not changed)."""
    exercise_pairs(notebook)  # refuse to write a broken student copy
    copy = nbformat.from_dict(notebook)
    copy.cells = [cell for cell in copy.cells if "solution" not in _tags(cell)]
    return copy


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "student")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in sorted((REPO_ROOT / "notebooks").glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        copy = student_copy(notebook)
        nbformat.write(copy, args.out / path.name)
        print(f"{path.name}: {len(exercise_pairs(notebook))} exercises, solutions removed")
    print(f"Student notebooks written to {args.out}")


if __name__ == "__main__":
    main()
