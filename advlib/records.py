"""Recorded results: every number the book quotes comes from here.

:func:`record` stores a metric in the executed notebook as a myst-nb *glue* output, so

* the prose can quote it with ``{glue:text}`name:.1%``` and never drift from the run,
* tests read it back with :func:`read_records` and assert the chapter's claims.

The glue format (``application/papermill.record/<mime>`` keys plus ``scrapbook``
metadata) is written here directly, so recording needs IPython but not myst-nb.

Used from chapter 1 onward.
"""
from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import Any

GLUE_PREFIX = "application/papermill.record/"
# The "+json" suffix lets nbformat store any JSON value (number, list, dict) under this key.
JSON_MIME = "application/vnd.advlib.record+json"
_session: dict[str, Any] = {}


def _plain(value: Any) -> Any:
    """Convert NumPy/PyTorch scalars and containers to JSON types; reject NaN and infinities."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()  # numpy scalar or 0-d tensor
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"a recorded number must be finite, got {value}")
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    raise TypeError(f"cannot record a {type(value).__name__}: use numbers, strings, lists or dicts")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"record names must be identifiers (letters, digits, _), got {name!r}")


def record(name: str, value: Any) -> Any:
    """Store ``value`` under ``name`` in the notebook's outputs and return it unchanged.

    Nothing is shown to the reader; the value travels in the cell's output so that the book
    (``{glue:text}`name```) and the tests (:func:`read_records`) can use it.
    """
    _check_name(name)
    plain = _plain(value)
    _session[name] = plain
    bundle = {GLUE_PREFIX + "text/plain": repr(plain), GLUE_PREFIX + JSON_MIME: plain}
    metadata = {"scrapbook": {"name": name, "mime_prefix": GLUE_PREFIX}}
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # plain Python: keep the value in this process only
        return value
    if get_ipython() is not None:
        display(bundle, raw=True, metadata=metadata)
    return value


def recorded() -> dict[str, Any]:
    """The values recorded so far in this process (a copy)."""
    return dict(_session)


def read_records(path: str | Path) -> dict[str, Any]:
    """All values recorded in an executed notebook, by name.

    Raises ``ValueError`` when two cells recorded the same name (the book build would
    warn about the duplicate glue key) and ``FileNotFoundError`` for a missing file.
    """
    notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    found: dict[str, Any] = {}
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            scrap = output.get("metadata", {}).get("scrapbook")
            if not scrap:
                continue
            data = output.get("data", {})
            prefix = scrap.get("mime_prefix", "")
            if prefix + JSON_MIME not in data:
                continue  # glued by something else (e.g. a figure): not a record
            name = scrap["name"]
            if name in found:
                raise ValueError(f"{path}: {name!r} is recorded by more than one cell")
            found[name] = data[prefix + JSON_MIME]
    return found
