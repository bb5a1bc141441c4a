"""The book: the ``-W`` build, what the pages contain, and the site in a real browser.

``built_site`` (tests/conftest.py) is the HTML folder of a book built from chapters executed
by papermill in the ``smoke`` profile. The browser tests serve it with ``python -m
http.server`` on 127.0.0.1 and load every page in headless Chromium: the math must be
typeset, the diagrams drawn, the figures local files, and nothing may be requested from
another host (checked in Chromium's network log; see ``external_requests``).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import nbformat
import pytest

from tools import build_book

REPO = Path(__file__).resolve().parents[1]
CHAPTER_1 = "notebooks/01_robustness_concepts"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# What MyST leaves behind when a role or directive was not understood.
# Searched in the prose of a page (code blocks may show MyST on purpose).
RAW_MYST = re.compile(
    r"```\{|:::\{|\{glue|\{(?:cite|doc|ref|numref|eq|math|term|download|exercise|solution"
    r"|bibliography|figure|mermaid|code-cell|admonition|note|warning|tip)(?::[\w-]*)*\}"
    r"|\$\$|\$[^\s$][^$\n]{0,80}?[^\s$\\]\$")


# --- helpers ---------------------------------------------------------------------------


class _Text(HTMLParser):
    """The visible text (no <script>/<style>) of an HTML document, the same without code
    (<pre>/<code>) as ``prose``, and its <img> tags."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts, self.prose_parts, self.images = [], [], []
        self._hidden = self._code = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._hidden += 1
        elif tag in ("pre", "code"):
            self._code += 1
        elif tag == "img":
            self.images.append(dict(attrs))

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._hidden:
            self._hidden -= 1
        elif tag in ("pre", "code") and self._code:
            self._code -= 1

    def handle_data(self, data):
        if not self._hidden:
            self.parts.append(data)
            if not self._code:
                self.prose_parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(self.parts)

    @property
    def prose(self) -> str:
        return " ".join(self.prose_parts)


def parse_html(text: str) -> _Text:
    parser = _Text()
    parser.feed(text)
    parser.close()
    return parser


def page_html(site: Path, page: str) -> Path:
    return site / f"{page}.html"


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """Chromium's path; without it the browser tests fail in CI and skip locally."""
    found = chromium_path()
    if found:
        return found
    message = ("Chromium is not installed: `apt-get install -y chromium` "
               "(or `make test`, which installs it)")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def serve(folder: Path, log: Path):
    """``python -m http.server`` on a free port of 127.0.0.1; yields the base URL.

    Port 0 lets the OS choose; the server's first line says which port it got. The request
    log (stderr) goes to ``log``. The server is stopped by its PID when the block ends.
    """
    with open(log, "w") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
             "--directory", str(folder)],
            stdout=subprocess.PIPE, stderr=log_file, text=True)
        try:
            line = server.stdout.readline()
            match = re.search(r"port (\d+)", line)
            if not match:
                raise RuntimeError(f"http.server did not start: {line!r}")
            yield f"http://127.0.0.1:{match.group(1)}/"
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            server.stdout.close()


def load_page(chromium: str, url: str, workdir: Path) -> tuple[str, Path]:
    """Load ``url`` in headless Chromium; return the DOM after scripts ran and the net log.

    Host names other than 127.0.0.1/localhost resolve to nothing, so the test never
    touches the network, but each attempt is still logged as a request (and reported by
    :func:`external_requests`).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    net_log = workdir / "netlog.json"
    profile = Path(tempfile.mkdtemp(prefix="profile-", dir=workdir))
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
        f"--log-net-log={net_log}", "--virtual-time-budget=10000", "--dump-dom", url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"chromium failed on {url}:\n{result.stderr[-3000:]}"
    shutil.rmtree(profile, ignore_errors=True)
    return result.stdout, net_log


def _events(net_log: Path):
    """The events of a Chromium net log, with their type names."""
    text = net_log.read_text(encoding="utf-8", errors="replace").rstrip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:  # a log cut short: close the event list ourselves
        data = json.loads(text.rstrip(",") + "]}")
    names = {number: name for name, number in data["constants"]["logEventTypes"].items()}
    for event in data.get("events", []):
        yield names.get(event.get("type")), event.get("params") or {}


def _is_local(url_or_origin: str) -> bool:
    return (urlsplit(url_or_origin).hostname or "") in LOCAL_HOSTS


def external_requests(net_log: Path) -> list[str]:
    """URLs that a page served from 127.0.0.1 asked for on any other host.

    Every URL request Chromium starts is in its net log (``URL_REQUEST_START_JOB``) with the
    requesting origin (``initiator``) and the site of the top-level page
    (``network_isolation_key``), whether or not the host could be resolved. A request
    belongs to the page when either is 127.0.0.1/localhost; Chromium's own background
    traffic (update checks, network time, account lookups) has neither and is not the
    site's doing. A request whose initiator is some other web origin is reported too.
    """
    urls = []
    for name, params in _events(net_log):
        if name != "URL_REQUEST_START_JOB" or "url" not in params:
            continue
        url = params["url"]
        if urlsplit(url).scheme not in ("http", "https", "ws", "wss") or _is_local(url):
            continue
        initiator = params.get("initiator", "")
        top_site = str(params.get("network_isolation_key", "")).split(" ")[0]
        from_page = _is_local(initiator) or _is_local(top_site)
        from_other_origin = initiator.startswith(("http://", "https://"))
        if from_page or from_other_origin:
            urls.append(url)
    return sorted(set(urls))


# --- the build ---------------------------------------------------------------------------


def test_toc_notebooks_are_found():
    notebooks = build_book.notebooks_in_toc(REPO)
    pages = build_book.toc_pages(REPO)
    assert notebooks, "_toc.yml lists no notebook"
    assert all(path.suffix == ".ipynb" and path.is_file() for path in notebooks)
    assert [p.relative_to(REPO).with_suffix("").as_posix() for p in notebooks] == [
        page for page in pages if (REPO / f"{page}.ipynb").is_file()]
    assert pages[0] == "book/intro"


def test_a_kernel_that_runs_another_python_is_refused(tmp_path, monkeypatch):
    spec = tmp_path / "kernels" / "other-python"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": ["/nonexistent/elsewhere/bin/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "another Python", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    with pytest.raises(build_book.BookBuildError, match="ipykernel install --sys-prefix"):
        build_book._check_kernel("other-python")
    build_book._check_kernel()  # the default kernel is this Python


def test_missing_vendored_assets_fail_with_a_clear_message(tmp_path):
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "book", tmp_path / "book")
    with pytest.raises(build_book.BookBuildError, match="npm ci"):
        build_book.stage_book(tmp_path / "mirror", root=tmp_path)
    with pytest.raises(build_book.BookBuildError, match="npm ci"):
        build_book.build_site(tmp_path)


@pytest.mark.slow
def test_sphinx_itself_fails_without_the_vendored_folder(tmp_path):
    """The second guard: even without build_site's check, -W turns the missing
    html_static_path entry into a failed build (one small page, a few seconds)."""
    shutil.copy2(REPO / "_config.yml", tmp_path / "_config.yml")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/references\n")
    (tmp_path / "book").mkdir()
    for name in ("references.md", "references.bib"):
        shutil.copy2(REPO / "book" / name, tmp_path / "book" / name)
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run([str(jupyter_book), "build", str(tmp_path), "-W", "--keep-going"],
                            capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode != 0, log[-2000:]
    assert "_vendor" in log, log[-2000:]


@pytest.mark.slow
def test_every_toc_page_is_built(built_site):
    assert (built_site / "index.html").is_file()
    for page in build_book.toc_pages(REPO):
        assert page_html(built_site, page).is_file(), f"{page} was not built"


@pytest.mark.slow
def test_vendored_assets_are_published(built_site):
    assert (built_site / "_static" / "mathjax" / "tex-mml-chtml.js").is_file()
    assert (built_site / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2"
            / "MathJax_Main-Regular.woff").is_file()
    assert (built_site / "_static" / "mermaid" / "mermaid.esm.min.mjs").is_file()
    intro = page_html(built_site, "book/intro").read_text(encoding="utf-8")
    assert "_static/mathjax/tex-mml-chtml.js" in intro
    assert "_static/mermaid/mermaid.esm.min.mjs" in intro
    assert "cdn.jsdelivr.net" not in intro and "mathjax@3" not in intro


@pytest.mark.slow
def test_no_injected_parameters_or_raw_myst(built_site):
    for page in build_book.toc_pages(REPO):
        html = page_html(built_site, page).read_text(encoding="utf-8")
        assert "injected-parameters" not in html, f"{page}: papermill injected a parameters cell"
        leaks = sorted(set(m.group(0) for m in RAW_MYST.finditer(parse_html(html).prose)))
        assert not leaks, f"{page}: raw MyST in the page text: {leaks}"


@pytest.mark.slow
def test_executed_outputs_show_and_removed_cells_do_not(built_site):
    mirror = built_site.parent.parent
    for source in build_book.notebooks_in_toc(REPO):
        rel = source.relative_to(REPO)
        notebook = nbformat.read(mirror / rel, as_version=4)
        html = page_html(built_site, rel.with_suffix("").as_posix()).read_text(encoding="utf-8")
        text = parse_html(html).text
        with_output = [c for c in notebook.cells if c.cell_type == "code" and c.get("outputs")]
        assert with_output, f"{rel}: the executed copy has no outputs"
        assert "cell_output" in html, f"{rel}: no cell output in the page"
        for cell in notebook.cells:
            if "remove-cell" in cell.get("metadata", {}).get("tags", []):
                lines = [ln.strip() for ln in cell.source.splitlines() if len(ln.strip()) > 12]
                assert lines and not any(ln in text for ln in lines), \
                    f"{rel}: a cell tagged remove-cell shows in the page"


@pytest.mark.slow
def test_colab_launch_button_points_at_the_repository(built_site):
    config = build_book.yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf-8"))
    url, branch = config["repository"]["url"].rstrip("/"), config["repository"]["branch"]
    colab = url.replace("https://github.com/", "https://colab.research.google.com/github/")
    for source in build_book.notebooks_in_toc(REPO):
        rel = source.relative_to(REPO)
        html = page_html(built_site, rel.with_suffix("").as_posix()).read_text(encoding="utf-8")
        assert f"{colab}/blob/{branch}/{rel.as_posix()}" in html, f"{rel}: no Colab launch button"


# --- the site in a browser --------------------------------------------------------------


def test_external_request_detector_negative_control(tmp_path):
    """The check must see a request to another host (here an <img> and a fetch), and must
    not blame a local-only page for Chromium's own background traffic."""
    chromium = require_chromium()
    site = tmp_path / "site"
    site.mkdir()
    (site / "dot.png").write_bytes(
        bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                      "1f15c4890000000d49444154789c6360000002000154a24f0d0000000049454e44ae426082"))
    (site / "local.html").write_text('<html><body><img src="dot.png"><p>local</p></body></html>')
    (site / "external.html").write_text(
        '<html><body><img src="http://example.com/x.png">'
        '<script>fetch("https://example.org/data.json").catch(() => {});</script></body></html>')
    with serve(site, tmp_path / "server.log") as base:
        _, local_log = load_page(chromium, base + "local.html", tmp_path / "local")
        _, external_log = load_page(chromium, base + "external.html", tmp_path / "external")
    assert external_requests(local_log) == []
    found = external_requests(external_log)
    assert "http://example.com/x.png" in found
    assert "https://example.org/data.json" in found


@pytest.fixture(scope="module")
def browsed(built_site, tmp_path_factory):
    """Every TOC page loaded in headless Chromium from a local server:
    ``{"pages": {page: (dom, external URLs)}, "log": the server's request log}``."""
    chromium = require_chromium()
    work = tmp_path_factory.mktemp("browser")
    pages = {}
    with serve(built_site, work / "server.log") as base:
        for index, page in enumerate(build_book.toc_pages(REPO)):
            dom, net_log = load_page(chromium, base + page + ".html", work / f"page{index}")
            pages[page] = (dom, external_requests(net_log))
    return {"pages": pages, "log": (work / "server.log").read_text(encoding="utf-8")}


def _title_of(site: Path, page: str) -> str:
    html = page_html(site, page).read_text(encoding="utf-8")
    return parse_html(re.search(r"<h1>(.*?)<a ", html, re.S).group(1)).text.strip()


@pytest.mark.slow
def test_every_page_loads_in_the_browser(browsed, built_site):
    for page in build_book.toc_pages(REPO):
        dom, _ = browsed["pages"][page]
        assert "<article" in dom, f"{page}: no article in the DOM"
        title = _title_of(built_site, page)
        assert title and title in parse_html(dom).text, \
            f"{page}: title {title!r} missing from the DOM"
    # Every file a page asked for exists (favicon.ico is the browser's own guess).
    failed = [line for line in browsed["log"].splitlines()
              if re.search(r'" [45]\d\d ', line) and "/favicon.ico " not in line]
    assert not failed, "the site asked the server for files it does not have:\n" + "\n".join(failed)


@pytest.mark.slow
def test_nothing_is_requested_from_outside(browsed):
    outside = {page: urls for page, (_, urls) in browsed["pages"].items() if urls}
    assert not outside, f"pages requested resources from other hosts: {outside}"


def _assert_math_and_diagram(dom: str, page: str) -> None:
    assert dom.count("<mjx-container") > 0, f"{page}: MathJax typeset no math"
    assert "\\(" not in parse_html(dom).prose, f"{page}: raw TeX left in the page"
    assert re.search(r'<svg[^>]*aria-roledescription="flowchart', dom), \
        f"{page}: no mermaid flowchart was drawn"


@pytest.mark.slow
def test_intro_renders_math_and_the_course_map(browsed):
    _assert_math_and_diagram(browsed["pages"]["book/intro"][0], "book/intro")


@pytest.mark.slow
def test_chapter_1_renders_math_diagram_and_local_figures(browsed, built_site):
    if CHAPTER_1 not in browsed["pages"]:
        pytest.skip(f"{CHAPTER_1} is not in _toc.yml yet")
    dom = browsed["pages"][CHAPTER_1][0]
    _assert_math_and_diagram(dom, CHAPTER_1)
    page_url = f"http://127.0.0.1/{CHAPTER_1}.html"
    images = [img.get("src", "") for img in parse_html(dom).images]
    pngs = [src for src in images if urlsplit(src).path.endswith(".png")
            and "logo" not in src and not src.startswith("data:")]
    assert pngs, f"{CHAPTER_1}: no figure (<img> of a png) in the page"
    for src in pngs:
        url = urljoin(page_url, src)
        assert _is_local(url), f"{CHAPTER_1}: figure {src} is not local"
        file = built_site / unquote(urlsplit(url).path).lstrip("/")
        assert file.is_file() and file.stat().st_size > 1000, f"{CHAPTER_1}: {src} missing"
