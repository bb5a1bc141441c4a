"""Where the data cache lives, offline mode, and how paths are shown to users."""

from __future__ import annotations

import os
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}


def is_offline() -> bool:
    """True when the environment variable ``ADVLIB_OFFLINE`` is set to 1 (or true/yes/on)."""
    return os.environ.get("ADVLIB_OFFLINE", "").strip().lower() in _TRUE


def _checkout_root() -> Path | None:
    """The source checkout that contains advlib, if advlib is not an installed copy."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "data").is_dir():
        return root
    return None


def data_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache directory.

    In order: ``cache_dir`` if given, ``$ADVLIB_DATA_DIR``, ``<checkout>/data`` when advlib
    sits in a source checkout, else ``~/.cache/advlib``.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("ADVLIB_DATA_DIR")
    if env:
        return Path(env).expanduser()
    root = _checkout_root()
    if root is not None:
        return root / "data"
    return Path.home() / ".cache" / "advlib"


def shown(path: Path) -> str:
    """A short form of ``path`` for messages.

    Relative when it lies in the working directory or its parent (a notebook in ``notebooks/``
    shows ``../data/mnist``), else below ``~``, else absolute.
    """
    path = Path(path).resolve()
    try:
        rel = os.path.relpath(path)
        if not rel.startswith(os.path.join("..", "..")):  # inside the cwd or its parent
            return rel
    except ValueError:  # another drive on Windows
        pass
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)
