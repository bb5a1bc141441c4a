"""Keep every notebook's Colab badge and install cell in line with the repository URL.

The URL and branch are set once, in ``_config.yml`` (``repository.url``/``branch``).

    python tools/sync_colab.py          # rewrite the badges and install cells
    python tools/sync_colab.py --check  # exit 1 and list what is out of date
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
INSTALL_TAG = "colab-install"
BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
INSTALL_CELL = '''\
# Colab only: install the course package (a no-op anywhere else).
import os, subprocess, sys
COURSE_REPO = "{url}"
if "google.colab" in sys.modules or os.environ.get("ADVLIB_INSTALL_FROM"):
    source = os.environ.get("ADVLIB_INSTALL_FROM") or f"git+{{COURSE_REPO}}@{branch}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", source], check=True)'''


def repository(root: Path = REPO_ROOT) -> tuple[str, str]:
    """``(url, branch)`` from ``_config.yml``."""
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    repo = config.get("repository", {})
    url, branch = repo.get("url", "").rstrip("/"), repo.get("branch", "main")
    if not url.startswith("https://github.com/"):
        raise ValueError(f"_config.yml: repository.url must be a GitHub URL, got {url!r}")
    return url, branch


def badge(url: str, branch: str, notebook: str) -> str:
    """The Markdown of the Open-in-Colab badge for ``notebooks/<notebook>``."""
    colab = url.replace("https://github.com/", "https://colab.research.google.com/github/")
    return f"[![Open In Colab]({BADGE_IMAGE})]({colab}/blob/{branch}/notebooks/{notebook})"


def synced(notebook, name: str, url: str, branch: str) -> list[str]:
    """Bring one notebook in line (in place); return the problems that were fixed."""
    problems = []
    title = next((c for c in notebook.cells if c.cell_type == "markdown"), None)
    want_badge = badge(url, branch, name)
    if title is None or not BADGE.search(title.source):
        problems.append("the first markdown cell has no Open-in-Colab badge")
    elif BADGE.search(title.source).group(0) != want_badge:
        problems.append("the Colab badge points elsewhere")
        title.source = BADGE.sub(lambda _: want_badge, title.source, count=1)
    installs = [c for c in notebook.cells if INSTALL_TAG in c.get("metadata", {}).get("tags", [])]
    want_install = INSTALL_CELL.format(url=url, branch=branch)
    if len(installs) != 1:
        problems.append(f"expected one cell tagged {INSTALL_TAG!r}, found {len(installs)}")
    elif installs[0].source != want_install:
        problems.append("the install cell differs from the template")
        installs[0].source = want_install
    elif "remove-cell" not in installs[0].metadata.get("tags", []):
        problems.append("the install cell must carry the 'remove-cell' tag")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report, do not rewrite")
    args = parser.parse_args(argv)
    url, branch = repository()
    failed = False
    for path in sorted((REPO_ROOT / "notebooks").glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        problems = synced(notebook, path.name, url, branch)
        for problem in problems:
            print(f"{path.name}: {problem}")
        failed |= bool(problems)
        if problems and not args.check:
            nbformat.write(notebook, path)
    return int(failed and args.check)


if __name__ == "__main__":
    sys.exit(main())
