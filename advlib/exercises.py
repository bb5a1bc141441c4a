"""Exercise checks: tell a student whether an answer is right.

Each exercise in a chapter is a *stub* cell (the student's function raises
``NotImplementedError("Exercise N.M: ...")``) followed by a *solution* cell. Both end with a
call to a chapter's check function, which runs its assertions through :func:`check`:

* a correct answer prints ``✓`` and records ``exercise_N_M = True``;
* a wrong answer prints ``✗`` with the reason;
* an unfinished stub prints a reminder, so "Run all" still reaches the end of the notebook.

With the environment variable ``ADVLIB_EXERCISES=strict`` a wrong or unfinished answer
raises instead (the student build's tests use this to stop at the first open exercise).

Used from chapter 1 onward.
"""
from __future__ import annotations

import os
import re
from typing import Callable

from .records import record

_ID = re.compile(r"^\d+\.\d+$")


def strict() -> bool:
    """True when unfinished or wrong exercises should raise (``ADVLIB_EXERCISES=strict``)."""
    return os.environ.get("ADVLIB_EXERCISES", "").strip().lower() == "strict"


def check(exercise: str, assertions: Callable[[], object]) -> bool:
    """Run ``assertions`` (a function that raises ``AssertionError`` when the answer is wrong)
    for exercise ``"N.M"`` and report the verdict. Returns True when the answer is right."""
    if not _ID.match(exercise):
        raise ValueError(f"exercise ids look like '1.2', got {exercise!r}")
    try:
        assertions()
    except NotImplementedError:
        if strict():
            raise
        print(f"… Exercise {exercise}: not done yet. Replace the `raise NotImplementedError` "
              "line with your code and run the cell again.")
        return False
    except AssertionError as wrong:
        if strict():
            raise
        print(f"✗ Exercise {exercise}: not right yet. {wrong}".rstrip())
        return False
    print(f"✓ Exercise {exercise}: correct.")
    record("exercise_" + exercise.replace(".", "_"), True)
    return True
