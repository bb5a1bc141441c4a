"""Build the course book as an offline website.

    python tools/build_book.py [--profile auto] [--out _build/book]

Three steps, each a function the tests call too:

1. :func:`execute_notebooks`: papermill runs every chapter listed in ``_toc.yml`` in a fresh
   kernel into a *mirror* tree (``<out>/notebooks/<name>.ipynb``); the working tree stays
   clean. The run profile travels in the environment (``ADVLIB_PROFILE``), never as a
   papermill parameter, which would add a visible "injected-parameters" cell to the book.
2. :func:`stage_book`: copy ``_config.yml``, ``_toc.yml``, ``book/`` and the vendored
   MathJax and mermaid (from ``node_modules``, see ``package.json``) into the mirror.
3. :func:`build_site`: ``jupyter-book build <mirror> -W --keep-going``; the HTML lands in
   ``<mirror>/_build/html``.

The site makes no request outside its own host: math and diagrams come from ``_static/``.
Serve it over http (mermaid is an ES module and does not run from ``file://``).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
KERNEL_NAME = "python3"
PROFILE_ENV = "ADVLIB_PROFILE"
PROFILES = ("smoke", "cpu", "gpu", "auto")
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"

# The vendored JavaScript lands in <mirror>/VENDOR_DIR, which _config.yml lists in
# html_static_path, so it is published as <html>/_static/{mathjax,mermaid}/.
VENDOR_DIR = "_vendor"
MATHJAX_FILES = (
    "es5/tex-mml-chtml.js",  # TeX + MathML input, CommonHTML output, menu: one file
    "es5/output/chtml/fonts/woff-v2",  # the web fonts the CommonHTML output loads
    "es5/input/tex/extensions",  # TeX packages loaded on demand (\require, autoload)
)
MERMAID_ENTRY = "dist/mermaid.esm.min.mjs"
_ES_IMPORT = re.compile(r"""(?:\bfrom|\bimport)\s*\(?\s*["'](\.{1,2}/[^"']+?\.mjs)["']""")

# The Open-in-Colab badge of each chapter is an image on colab.research.google.com. In the
# book it is replaced by a local copy so that the site requests nothing from outside (the
# link itself is kept; the book's launch button opens Colab too).
COLAB_BADGE_URL = "https://colab.research.google.com/assets/colab-badge.svg"
COLAB_BADGE_FILE = "colab-badge.svg"
COLAB_BADGE_SVG = """\
<svg xmlns="http://www.w3.org/2000/svg" width="117" height="20" role="img" aria-label="Open in Colab">
<title>Open in Colab</title>
<rect width="117" height="20" rx="3" fill="#555"/>
<rect x="40" width="77" height="20" rx="3" fill="#f9ab00"/>
<rect x="40" width="6" height="20" fill="#f9ab00"/>
<g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">
<text x="6" y="14">Open</text><text x="47" y="14" fill="#333">in Colab</text></g>
</svg>
"""


class BookBuildError(RuntimeError):
    """A step of the book build failed; the message says which and what to do."""


# ---------------------------------------------------------------------------------------
# The table of contents


def _toc_files(entries) -> list[str]:
    """Every ``file:`` in a (nested) list of TOC entries, in reading order."""
    files = []
    for entry in entries or []:
        if "file" in entry:
            files.append(str(entry["file"]))
        for key in ("parts", "chapters", "sections"):
            files.extend(_toc_files(entry.get(key)))
    return files


def toc_pages(root: Path = REPO_ROOT) -> list[str]:
    """Every page of ``_toc.yml`` (root first) as its path relative to ``root`` without
    suffix, e.g. ``["book/intro", "book/how-to-use", "notebooks/01_robustness_concepts"]``."""
    toc_path = Path(root) / "_toc.yml"
    if not toc_path.is_file():
        raise BookBuildError(f"no _toc.yml in {root}")
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8")) or {}
    if "root" not in toc:
        raise BookBuildError(f"{toc_path.name}: no 'root' page")
    files = [str(toc["root"])] + _toc_files(toc.get("parts")) + _toc_files(toc.get("chapters"))
    return [re.sub(r"\.(md|ipynb)$", "", name) for name in files]


def _source_of(root: Path, page: str) -> Path:
    for suffix in (".ipynb", ".md"):
        path = Path(root) / (page + suffix)
        if path.is_file():
            return path
    raise BookBuildError(f"_toc.yml lists {page!r}, but neither {page}.ipynb nor {page}.md "
                         f"exists in {root}")


def notebooks_in_toc(root: Path = REPO_ROOT) -> list[Path]:
    """The notebooks listed in ``_toc.yml``, in reading order (absolute paths)."""
    sources = [_source_of(Path(root), page) for page in toc_pages(root)]
    return [path.resolve() for path in sources if path.suffix == ".ipynb"]


# ---------------------------------------------------------------------------------------
# Step 1: execute


def _check_kernel(kernel_name: str = KERNEL_NAME) -> None:
    """Make sure ``kernel_name`` starts *this* Python (the venv's), not another one.

    papermill launches the kernelspec by name. The venv's own ``python3`` spec (installed by
    ipykernel into ``<venv>/share/jupyter``, which jupyter prefers over user-level specs
    inside a venv) has ``argv[0] == "python"``, and jupyter_client replaces a bare
    ``python``/``python3`` with ``sys.executable``, so the kernel is this interpreter even
    when the venv is not activated. A user-level or system spec that names some other
    interpreter by absolute path would silently run the notebooks elsewhere: refuse that.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel as error:
        raise BookBuildError(
            f"no Jupyter kernel named {kernel_name!r}. Install one for this Python with\n"
            f"    {sys.executable} -m ipykernel install --sys-prefix") from error
    exe = spec.argv[0] if spec.argv else ""
    bare = {"python", f"python{sys.version_info[0]}", "python%d.%d" % sys.version_info[:2]}
    if exe in bare:
        return
    if Path(exe).is_absolute() and Path(exe).resolve() == Path(sys.executable).resolve():
        return
    raise BookBuildError(
        f"the Jupyter kernel {kernel_name!r} ({spec.resource_dir}) runs {exe!r}, not this "
        f"Python ({sys.executable}). Reinstall it for this Python with\n"
        f"    {sys.executable} -m ipykernel install --sys-prefix")


@contextmanager
def temporary_environment(**values: str):
    """Set environment variables for the kernels started inside the block, then restore."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def execute_notebooks(mirror: Path, profile: str = "auto", root: Path = REPO_ROOT,
                      log_output: bool = False) -> list[Path]:
    """Run every TOC notebook with papermill into ``mirror/notebooks/<name>.ipynb``.

    Each notebook gets a fresh kernel (the ``python3`` kernelspec, checked to be this
    Python) with ``cwd=root/"notebooks"``. The profile reaches the notebook through the
    ``ADVLIB_PROFILE`` environment variable: the ``parameters`` cell says
    ``PROFILE = "auto"`` and advlib resolves ``auto`` from that variable. ``root`` is put
    first on the kernel's ``PYTHONPATH`` so the book shows this checkout's advlib.
    Returns the executed copies. Raises :class:`BookBuildError` naming the failing notebook.
    """
    import papermill as pm

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    root, mirror = Path(root).resolve(), Path(mirror).resolve()
    notebooks = notebooks_in_toc(root)
    _check_kernel()
    # Figures reach the book only through the inline backend, which ipykernel picks unless
    # MPLBACKEND says otherwise: a caller's MPLBACKEND=Agg would silently drop every figure.
    # Progress bars serve interactive runs; in a static page they are noise.
    env = {"MPLBACKEND": INLINE_BACKEND, "TQDM_DISABLE": "1",
           "PYTHONPATH": os.pathsep.join(
               p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)}
    if profile != "auto":
        env[PROFILE_ENV] = profile
    executed = []
    with temporary_environment(**env):
        from advlib import resolve_profile_name  # what "auto" becomes in the kernels

        shown_profile = resolve_profile_name(profile)
        for source in notebooks:
            target = mirror / source.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            try:
                pm.execute_notebook(
                    str(source), str(target),
                    kernel_name=KERNEL_NAME,
                    cwd=str(source.parent),
                    log_output=log_output,
                    progress_bar=False,
                )
            except Exception as error:  # papermill's PapermillExecutionError and friends
                raise BookBuildError(
                    f"notebook {source.relative_to(root)} failed (profile {profile!r}); "
                    f"the partly executed copy is {target}.\n{error}") from error
            print(f"executed {source.relative_to(root)} (profile {shown_profile}) "
                  f"in {time.perf_counter() - started:.1f} s", flush=True)
            executed.append(target)
    return executed


# ---------------------------------------------------------------------------------------
# Step 2: stage


def _es_module_closure(entry: Path) -> list[Path]:
    """``entry`` and every module it imports, statically or dynamically (relative imports)."""
    seen, todo = set(), [entry.resolve()]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        if not module.is_file():
            raise BookBuildError(f"{entry.name} imports {module}, which does not exist")
        seen.add(module)
        text = module.read_text(encoding="utf-8")
        todo.extend((module.parent / rel).resolve() for rel in _ES_IMPORT.findall(text))
    return sorted(seen)


def vendored_files(node_modules: Path) -> dict[Path, Path]:
    """``{source file: path relative to the vendor folder}`` for MathJax and mermaid.

    Raises :class:`BookBuildError` telling the user to run ``npm ci`` when they are missing.
    """
    node_modules = Path(node_modules)
    mathjax, mermaid = node_modules / "mathjax", node_modules / "mermaid"
    needed = [mathjax / rel for rel in MATHJAX_FILES] + [mermaid / MERMAID_ENTRY]
    missing = [str(path) for path in needed if not path.exists()]
    if missing:
        raise BookBuildError(
            "the vendored MathJax/mermaid are missing (" + ", ".join(missing) + ").\n"
            "Install them from package-lock.json with `npm ci` at the repository root "
            "(or `make book`, which does it). Without them the site would show raw TeX "
            "and no diagrams offline.")
    files = {}
    for rel in MATHJAX_FILES:
        path = mathjax / rel
        for item in ([path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())):
            files[item] = Path("mathjax") / item.relative_to(mathjax / "es5")
    entry = (mermaid / MERMAID_ENTRY).resolve()
    for module in _es_module_closure(entry):
        files[module] = Path("mermaid") / module.relative_to(entry.parent)
    return files


def _localize_colab_badges(mirror: Path, badge: Path) -> None:
    """Point the Colab badges of the mirror's notebooks at the local badge image."""
    import nbformat

    for path in sorted((mirror / "notebooks").glob("*.ipynb")) if (mirror / "notebooks").is_dir() else []:
        notebook = nbformat.read(path, as_version=4)
        rel = os.path.relpath(badge, path.parent).replace(os.sep, "/")
        changed = False
        for cell in notebook.cells:
            if cell.cell_type == "markdown" and COLAB_BADGE_URL in cell.source:
                cell.source = cell.source.replace(COLAB_BADGE_URL, rel)
                changed = True
        if changed:
            nbformat.write(notebook, path)


def stage_book(mirror: Path, root: Path = REPO_ROOT) -> None:
    """Copy the book's configuration, its pages and the vendored JavaScript into ``mirror``.

    ``mirror`` already holds the executed notebooks (:func:`execute_notebooks`); they are
    left as they are, except that their Colab badge image becomes a local file.
    """
    root, mirror = Path(root).resolve(), Path(mirror).resolve()
    mirror.mkdir(parents=True, exist_ok=True)
    files = vendored_files(root / "node_modules")  # fail early, before copying anything
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / name, mirror / name)
    shutil.rmtree(mirror / "book", ignore_errors=True)
    shutil.copytree(root / "book", mirror / "book",
                    ignore=shutil.ignore_patterns(".*", "__pycache__", "_build"))
    vendor = mirror / VENDOR_DIR
    shutil.rmtree(vendor, ignore_errors=True)
    for source, rel in files.items():
        (vendor / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, vendor / rel)
    badge = vendor / COLAB_BADGE_FILE
    badge.write_text(COLAB_BADGE_SVG, encoding="utf-8")
    _localize_colab_badges(mirror, badge)
    missing = [page for page in toc_pages(mirror)
               if not any((mirror / (page + s)).is_file() for s in (".md", ".ipynb"))]
    if missing:
        raise BookBuildError(f"pages of _toc.yml missing from the mirror {mirror}: {missing}. "
                             "Run execute_notebooks(mirror, ...) first.")


# ---------------------------------------------------------------------------------------
# Step 3: build


def build_site(mirror: Path) -> Path:
    """``jupyter-book build <mirror> -W --keep-going``; return the HTML folder.

    Raises :class:`BookBuildError` with the end of the build log when Sphinx reports any
    warning (``-W``) or fails.
    """
    mirror = Path(mirror).resolve()
    if not (mirror / VENDOR_DIR / "mathjax" / "tex-mml-chtml.js").is_file():
        raise BookBuildError(f"{mirror} has no vendored MathJax/mermaid: run stage_book first "
                             "(and `npm ci` at the repository root if node_modules is missing)")
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    command = [str(jupyter_book), "build", str(mirror), "-W", "--keep-going"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=mirror)
    log = result.stdout + result.stderr
    (mirror / "_build").mkdir(exist_ok=True)
    (mirror / "_build" / "build.log").write_text(log, encoding="utf-8")
    html = mirror / "_build" / "html"
    if result.returncode != 0 or not (html / "index.html").is_file():
        tail = "\n".join(log.splitlines()[-60:])
        raise BookBuildError(f"jupyter-book build failed (exit {result.returncode}); "
                             f"full log in {mirror / '_build' / 'build.log'}. Last lines:\n{tail}")
    return html


# ---------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Execute the chapters and build the offline book.")
    parser.add_argument("--profile", default="auto", choices=PROFILES,
                        help="run profile for every chapter (default: auto = gpu with CUDA, else cpu)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "_build" / "book",
                        help="the book mirror (default: _build/book); HTML in <out>/_build/html")
    parser.add_argument("--log-output", action="store_true", help="stream the notebooks' output")
    args = parser.parse_args(argv)
    if args.log_output:  # papermill logs the cells' output through `logging`
        import logging

        logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.perf_counter()
    mirror = args.out.resolve()
    try:
        vendored_files(REPO_ROOT / "node_modules")  # before the long part
        shutil.rmtree(mirror / "notebooks", ignore_errors=True)
        execute_notebooks(mirror, args.profile, REPO_ROOT, log_output=args.log_output)
        stage_book(mirror, REPO_ROOT)
        html = build_site(mirror)
    except BookBuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        shown = html.relative_to(Path.cwd())
    except ValueError:
        shown = html
    print(f"\nBook built in {time.perf_counter() - started:.0f} s: {shown}/index.html\n"
          f"Serve it (math and diagrams need http, not file://):\n"
          f"    python -m http.server -d {shown} 8000 --bind 127.0.0.1\n"
          f"then open http://127.0.0.1:8000")
    return 0


if __name__ == "__main__":
    sys.exit(main())
