"""Shared fixtures: the chapters are executed once per test session (smoke profile) and
their records, the executed copies and the built site are shared by the tests."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # makes `tools` importable

from tools import build_book  # noqa: E402

import advlib  # noqa: E402

# Notebook runs in tests: tiny sizes, offline data, deterministic source.
NOTEBOOK_ENV = {"ADVLIB_PROFILE": "smoke", "ADVLIB_OFFLINE": "1"}


@pytest.fixture(scope="session")
def smoke_mirror(tmp_path_factory) -> Path:
    """Every TOC notebook executed by papermill in the smoke profile, in a book mirror."""
    mirror = tmp_path_factory.mktemp("book")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in NOTEBOOK_ENV.items():
            patch.setenv(key, value)
        build_book.execute_notebooks(mirror, profile="smoke", root=REPO)
    return mirror


@pytest.fixture(scope="session")
def executed(smoke_mirror) -> dict[str, Path]:
    """Executed notebook paths by stem, e.g. ``executed["01_robustness_concepts"]``."""
    return {path.stem: path for path in sorted((smoke_mirror / "notebooks").glob("*.ipynb"))}


@pytest.fixture(scope="session")
def records(executed) -> dict[str, dict]:
    """What each executed notebook recorded, by notebook stem."""
    return {stem: advlib.read_records(path) for stem, path in executed.items()}


@pytest.fixture(scope="module")
def rec(request, records) -> dict:
    """What the chapter named by the test module's ``NAME`` recorded in the smoke run."""
    name = request.module.NAME
    assert name in records, f"{name} is not in _toc.yml or was not executed"
    return records[name]


@pytest.fixture(scope="session")
def built_site(smoke_mirror) -> Path:
    """The HTML site built with ``jupyter-book build -W`` from the smoke-profile runs."""
    build_book.stage_book(smoke_mirror, root=REPO)
    return build_book.build_site(smoke_mirror)


@pytest.fixture(scope="session")
def book_records() -> dict[str, dict]:
    """Records of the book's own run (cpu or gpu profile), for the bands the book shows.

    ``make book`` sets ``ADVLIB_BOOK_MIRROR`` to the mirror it executed and runs the tests
    marked ``book``; elsewhere they are skipped.
    """
    mirror = os.environ.get("ADVLIB_BOOK_MIRROR")
    if not mirror:
        pytest.skip("runs after `make book` (ADVLIB_BOOK_MIRROR names the executed mirror)")
    paths = sorted((Path(mirror) / "notebooks").glob("*.ipynb"))
    assert paths, f"no executed notebooks under {mirror}"
    return {path.stem: advlib.read_records(path) for path in paths}
