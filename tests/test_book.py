"""The book (``make book``) in a real browser: Debian's Chromium, headless, driven by Playwright.

Every page loads without console errors and with every image; every internal link resolves (its
file and its anchor); the dashboard's counts equal ``figures/cpu/summary.csv``; math renders;
search finds pages from a static host and from the filesystem; figures carry their artifact ids.
Screenshots of the dashboard and of one paper's page go to ``build/book/screenshots/`` (copies
are committed under ``docs/screenshots/``). Skipped where Chromium is missing, except in CI
(``.ci/run`` installs it)."""
import functools
import http.server
import os
import re
import shutil
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pandas as pd
import pytest

from poisonrepro import book, paths

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
SHOTS = paths.repo_root() / "build" / "book" / "screenshots"


@pytest.fixture(scope="module")
def site():
    return book.build()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing in CI: .ci/run installs Debian's chromium")
        pytest.skip("no Chromium here (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(site):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    handler = functools.partial(Quiet, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def _pages(site):
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if "_static" not in p.parts)


def _open(browser, url, errors):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("console", lambda m: errors.append(f"{page.url}: console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
    # (a request cut short by the next navigation is aborted, not missing: a 404 is a console error)
    page.on("requestfailed", lambda r: errors.append(f"{page.url}: request failed {r.url} ({r.failure})")
            if r.failure != "net::ERR_ABORTED" else None)
    page.goto(url, wait_until="load")
    return page


BROKEN_IMAGES = "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"


def test_every_page_loads_without_console_errors_and_every_image_loads(site, server, browser):
    pages = _pages(site)
    assert {"index.html", "report.html", "artifacts.html", "search.html", "01_poison_frogs.html"} <= set(pages)
    errors, broken = [], []
    page = _open(browser, server + pages[0], errors)
    for rel in pages:  # one tab, page after page (a fresh tab each costs more than the page)
        page.goto(server + rel, wait_until="load")
        broken += page.evaluate(BROKEN_IMAGES)
    page.close()
    assert not errors, errors[:10]
    assert not broken, broken[:10]


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        if tag in ("img", "script") and a.get("src"):
            self.hrefs.append(a["src"])
        if tag == "link" and a.get("href"):
            self.hrefs.append(a["href"])


def test_every_internal_link_resolves_to_a_file_and_its_anchor(site):
    parsed = {}
    for p in site.rglob("*.html"):
        if "_static" in p.relative_to(site).parts:  # the theme's template fragments, not pages
            continue
        parser = _Links()
        parser.feed(p.read_text(errors="replace"))
        parsed[p.resolve()] = parser
    bad = []
    for page, parser in parsed.items():
        for href in parser.hrefs:
            url = urlparse(href)
            if url.scheme in ("http", "https", "mailto", "data", "javascript") or href.startswith("//"):
                continue
            target = (page.parent / unquote(url.path)).resolve() if url.path else page
            if not target.exists():
                bad.append(f"{page.relative_to(site)} -> {href} (no file)")
            elif url.fragment and target.suffix == ".html" and target in parsed and unquote(url.fragment) not in parsed[target].ids:
                bad.append(f"{page.relative_to(site)} -> {href} (no anchor)")
    assert not bad, bad[:20]
    # and the dashboard links each artifact of a done notebook to a place on its page
    index = (site / "index.html").read_text()
    assert re.search(r'href="01_poison_frogs\.html#fig-pf-f5"', index)


def test_dashboard_counts_equal_the_committed_summary(site, server, browser):
    summary = pd.read_csv(paths.published_dir() / "summary.csv")
    errors = []
    page = _open(browser, server + "index.html", errors)
    shown = page.evaluate("""Array.from(document.querySelectorAll('tr[data-notebook]')).map(r => [
        r.dataset.notebook, ...['holds', 'fails', 'inconclusive', 'untested'].map(
            v => Number(r.querySelector(`td[data-verdict="${v}"]`).textContent))])""")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)
    page.close()
    expected = {nb: [int((part.verdict == v).sum()) for v in ("holds", "fails", "inconclusive", "untested")]
                for nb, part in summary.groupby("notebook")}
    rows = {nb: counts for nb, *counts in shown}
    assert set(expected) <= set(rows)
    for nb, counts in rows.items():
        assert counts == expected.get(nb, [0, 0, 0, 0]), nb
    assert sum(map(sum, rows.values())) == len(summary)
    assert (SHOTS / "dashboard.png").stat().st_size > 10_000


def test_a_paper_page_shows_captioned_figures_math_and_its_claims(site, server, browser):
    errors = []
    page = _open(browser, server + "10_dpa.html", errors)
    page.wait_for_selector("mjx-container svg", timeout=20_000)  # math rendered by the local MathJax
    alts = page.evaluate("Array.from(document.images).map(i => i.alt)")
    assert any("DPA-1" in a for a in alts), alts
    text = page.inner_text("body")
    assert "NBVAL_CHECK_OUTPUT" not in text  # the test plumbing is hidden
    assert "Paper vs measured" in text and "Implemented in" in text
    assert "e-0" not in page.inner_text("table.claims") and "NaN" not in page.inner_text("table.claims")
    page.screenshot(path=str(SHOTS / "paper_page.png"), full_page=False)
    page.close()
    assert not errors, errors


@pytest.mark.parametrize("origin", ["http", "file"])
def test_search_finds_pages_on_a_static_host_and_from_the_filesystem(site, server, browser, origin):
    base = server if origin == "http" else site.resolve().as_uri() + "/"
    errors = []
    page = _open(browser, urljoin(base, "search.html?q=certified"), errors)
    page.wait_for_function("document.querySelectorAll('#search-results li, ul.search li').length > 0",
                           timeout=20_000)
    hits = page.evaluate("Array.from(document.querySelectorAll('#search-results li a, ul.search li a'))"
                         ".map(a => a.getAttribute('href'))")
    page.close()
    assert any("10_dpa" in h for h in hits), hits
    assert not errors, errors


# ---------------------------------------------------------------- without a browser
def test_the_committed_artifact_catalogue_page_is_generated_from_the_catalogue():
    assert (paths.repo_root() / "docs" / "artifacts.md").read_text() == book.artifacts_page()


def test_figures_are_matched_to_their_saved_artifacts_and_an_unrelated_picture_to_none():
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def png(draw, dpi):
        fig, ax = plt.subplots(figsize=(4, 3))
        draw(ax)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        return buf.getvalue()
    curve = lambda ax: ax.plot(range(10), [x * x for x in range(10)])  # noqa: E731
    bars = lambda ax: ax.bar(range(5), [3, 1, 4, 1, 5], color="k")  # noqa: E731
    noise = lambda ax: ax.imshow(__import__("numpy").random.default_rng(0).random((32, 32)))  # noqa: E731
    saved = {"X-1": png(curve, 110), "X-2": png(bars, 110)}
    # the inline copies are drawn at another resolution, in another order
    assert book.match_figures([png(bars, 72), png(noise, 72), png(curve, 72)], saved) == ["X-2", None, "X-1"]


def test_claims_table_is_readable():
    from poisonrepro.results import CLAIM_COLUMNS
    row = dict(zip(CLAIM_COLUMNS, ["X-1:rate", "headline", "X-1", "a claim", float("nan"), "rate", float("nan"),
                                   float("nan"), 9.934e-10, 30, 1.2345e-5, 0.98765, "> 0.2", "Wilson bound", 1e-12,
                                   3e-12, "fails", float("nan"), float("nan"), float("nan")]))
    text = book.claims_html(pd.DataFrame([row]))
    assert not re.search(r"\de-?\d", text) and "nan" not in text.lower() and "&lt;0.001" in text
    assert 'class="verdict-fails"' in text and "Wilson bound" in text and "<th>source</th>" in text
    # the claim and its verdict come first, then why
    assert text.index("<th>claim</th>") < text.index("<th>verdict</th>") < text.index("<th>why</th>")


def test_pixel_budgets_are_shown_on_the_255_scale():
    from poisonrepro.notebook import _on_255_scale
    assert _on_255_scale(8 / 255) == "8/255" and _on_255_scale((0.5 / 255, 16 / 255)) == "(0.5/255, 16/255)"
    assert _on_255_scale(0.04) == 0.04 and _on_255_scale(1.0) == 1.0  # not a multiple of 0.5/255; not a budget
