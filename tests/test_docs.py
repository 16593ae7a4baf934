"""The documentation site: it builds with warnings as errors, and a real headless browser shows it.

Needs the ``docs`` extra (mkdocs-material, mkdocstrings, Playwright) and a Chromium on the machine
(Debian's package ``chromium``; or ``$MEMLESS_CHROMIUM``). Without them the tests are skipped with the
reason, except where ``MEMLESS_REQUIRE_BROWSER=1`` (``.ci/run`` sets it): there a missing piece fails.
"""
import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIRED = os.environ.get("MEMLESS_REQUIRE_BROWSER") == "1"
#: generous guard against a hung build (about 15 s; a full build with every tutorial, 30-60 s)
BUILD_SECONDS = 1200
#: the tutorial the browser opens, the one the test build executes
BROWSED_TUTORIAL = "01_memory_as_modified_loss"


def _missing(reason):
    if REQUIRED:
        pytest.fail(f"{reason} (MEMLESS_REQUIRE_BROWSER=1: the browser check must run)")
    pytest.skip(reason)


def _chromium():
    for candidate in (os.environ.get("MEMLESS_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built by ``mkdocs build --strict`` into a temporary folder."""
    try:
        import mkdocs  # noqa: F401
        import mkdocstrings  # noqa: F401
    except ImportError:
        _missing("the docs extra is not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("site")
    # tests/test_tutorials.py runs every tutorial; here only the one the browser opens is executed
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", MEMLESS_DOCS_TUTORIALS=BROWSED_TUTORIAL)
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", os.path.join(ROOT, "docs", "mkdocs.yml"),
                          "-d", str(out)], capture_output=True, text=True, timeout=BUILD_SECONDS, env=env, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "WARNING" not in run.stderr, run.stderr[-4000:]
    return out


@pytest.mark.slow
def test_the_site_builds_strictly_with_every_page_and_generated_part(site):
    for page in ("index.html", "getting-started.html", "concepts.html", "glossary.html", "reading-a-report.html",
                 "api.html", "cli.html", "cost.html", "experiments/results.html", "tutorials/index.html"):
        assert (site / page).exists(), page
    tutorials = sorted(name for name in os.listdir(os.path.join(ROOT, "tutorials")) if name[:2].isdigit())
    for script in tutorials:
        assert (site / "tutorials" / (script[:-3] + ".html")).exists(), script
    executed = (site / "tutorials" / f"{BROWSED_TUTORIAL}.html").read_text(encoding="utf-8")
    assert "✓ heavy-ball-correction" in executed and "01_orders.png" in executed    # its output and its figure
    cli = (site / "cli.html").read_text(encoding="utf-8")
    for command in ("report", "compare", "modified", "map", "list", "experiment"):
        assert f'id="{command}"' in cli, command
    report = (site / "reading-a-report.html").read_text(encoding="utf-8")
    assert "$ python -m memless report adamw" in report and "verdict" in report
    api = (site / "api.html").read_text(encoding="utf-8")
    assert "memless.engine.corrections.correction" in api and ":class:" not in api
    # every table keeps its columns (a bare | inside a cell once cut four rows of the experiments' table)
    for page in site.rglob("*.html"):
        for table in _tables(page.read_text(encoding="utf-8")):
            assert len(set(table)) <= 1, (page, table)
    # the formulas are rendered from files of the site itself (no CDN)
    assert (site / "assets" / "katex" / "katex.min.js").exists()
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert "cdn.jsdelivr" not in text and "unpkg.com" not in text and "mathjax" not in text.lower(), page


def _tables(html):
    """For each <table> in the article: the number of cells in each row."""
    from html.parser import HTMLParser

    class Cells(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tables, self.depth = [], 0

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.tables.append([])
            elif tag == "tr" and self.tables:
                self.tables[-1].append(0)
            elif tag in ("td", "th") and self.tables and self.tables[-1]:
                self.tables[-1][-1] += 1

    parser = Cells()
    parser.feed(html)
    return parser.tables


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser_pages(site, tmp_path_factory):
    """Each checked page loaded in headless Chromium: its facts, and a screenshot."""
    chromium = _chromium()
    if chromium is None:
        _missing("no Chromium on this machine (Debian: apt-get install chromium; or set MEMLESS_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright is not installed (the docs extra)")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    shots = tmp_path_factory.mktemp("screenshots")
    facts = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"])
            for page_name in ("index.html", "concepts.html", f"tutorials/{BROWSED_TUTORIAL}.html", "api.html"):
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                requests, failed, errors = [], [], []
                page.on("request", lambda r, requests=requests: requests.append(r.url))
                page.on("requestfailed", lambda r, failed=failed: failed.append(r.url))
                page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
                page.goto(base + page_name, wait_until="networkidle")
                page.evaluate("document.fonts.ready")
                facts[page_name] = page.evaluate("""() => ({
                    title: document.title,
                    images: Array.from(document.images).filter(i => i.closest('article')).map(
                        i => ({src: i.src, ok: i.complete && i.naturalWidth > 0})),
                    formulas: document.querySelectorAll('.arithmatex').length,
                    rendered: document.querySelectorAll('.arithmatex .katex').length,
                    katexErrors: document.querySelectorAll('.katex-error').length,
                    katexFont: document.fonts.check('16px KaTeX_Main'),
                    apiObjects: document.querySelectorAll('.doc-object').length,
                    text: document.body.innerText.length,
                })""")
                facts[page_name].update(requests=requests, failed=failed, errors=errors)
                path = shots / (page_name.replace("/", "_") + ".png")
                page.screenshot(path=str(path))
                facts[page_name]["screenshot"] = str(path)
                page.close()
            browser.close()
    finally:
        server.shutdown()
    return base, facts


@pytest.mark.slow
def test_pages_load_in_a_browser_with_every_request_local_and_no_error(browser_pages):
    base, facts = browser_pages
    for name, page in facts.items():
        assert page["text"] > 500, (name, page["text"])
        assert not page["failed"], (name, page["failed"])
        assert not page["errors"], (name, page["errors"])
        assert all(url.startswith(base) for url in page["requests"]), (name, page["requests"])


@pytest.mark.slow
def test_formulas_render_with_katex_fonts(browser_pages):
    _, facts = browser_pages
    for name in ("index.html", "concepts.html"):
        page = facts[name]
        assert page["formulas"] > 0 and page["rendered"] == page["formulas"], (name, page)
        assert page["katexErrors"] == 0 and page["katexFont"], (name, page)
    assert facts["concepts.html"]["formulas"] >= 10


@pytest.mark.slow
def test_the_tutorial_page_shows_its_figures_and_the_api_page_its_objects(browser_pages):
    _, facts = browser_pages
    tutorial = facts[f"tutorials/{BROWSED_TUTORIAL}.html"]
    assert tutorial["images"] and all(image["ok"] for image in tutorial["images"]), tutorial["images"]
    assert facts["api.html"]["apiObjects"] >= 30


@pytest.mark.slow
def test_screenshots_show_a_page_not_a_blank(browser_pages):
    """A screenshot of each page: mostly page colour, but with text and figures drawn (at least 2 %
    of the pixels differ from the background, in at least 50 colours)."""
    Image = pytest.importorskip("PIL.Image", reason="Pillow (the experiments extra) reads the screenshots")
    _, facts = browser_pages
    for name, page in facts.items():
        with Image.open(page["screenshot"]) as shot:
            pixels = shot.convert("RGB")
            colours = pixels.getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) >= 50, (name, page["screenshot"])
        background = max(colours)[0]
        total = pixels.width * pixels.height
        assert 0.02 < 1 - background / total < 0.98, (name, 1 - background / total, page["screenshot"])
