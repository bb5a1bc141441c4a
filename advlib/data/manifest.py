"""Read the package's ``manifest.json`` (file names, URLs, SHA-256 values)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

MANIFEST_PATH = Path(__file__).with_name("manifest.json")


@lru_cache(maxsize=1)
def _load() -> dict:
    with open(MANIFEST_PATH, encoding="utf-8") as handle:
        return json.load(handle)


def entry(key: str) -> dict:
    """A deep copy of one data set's manifest entry (``"mnist"``, ``"movielens_100k"``, ...)."""
    return json.loads(json.dumps(_load()[key]))
