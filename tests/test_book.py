"""The book (``make book``) in a real browser: Debian's Chromium, headless, driven by Playwright.

Every page loads without console errors and with every image; every internal link resolves (its
file and its anchor); the dashboard's counts equal ``figures/cpu/summary.csv``; math renders;
search finds pages from a static host and from the filesystem; figures carry their artifact ids,
open full size on a click and are never stretched; at a 1280 px window every verdict is visible
without horizontal scrolling; Chinese text renders in a CJK font. Screenshots of the dashboard, the
report and two papers' pages go to ``build/book/screenshots/`` (copies are committed under
``docs/screenshots/``). Skipped where Chromium is missing, except in CI
(``.ci/run`` installs it)."""
import functools
import http.server
import os
import re
import shutil
import threading
from html.parser import HTMLParser
from urllib.parse import unquote, urljoin, urlparse

import pandas as pd
import pytest

from poisonrepro import book, paths

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
SHOTS = paths.repo_root() / "build" / "book" / "screenshots"
WIDTH = 1280  # the window of the reader: every verdict must show without horizontal scrolling


NOTE = "zz_temporary_note"  # a page of docs/ added for the test: the book must show it unasked


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    docs = tmp_path_factory.mktemp("docs")
    for f in [*book.DOCS.glob("*.md"), book.FINDINGS]:
        shutil.copyfile(f, docs / f.name)
    (docs / f"{NOTE}.md").write_text("# A page added by the test (temporary)\n\nquokkas measured here.\n")
    return book.build(docs=docs)


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


def _screenshot(page, name, **kwargs):
    """A screenshot of the book as readers get it: the page the test added leaves the sidebar first."""
    page.evaluate(f"document.querySelectorAll('a[href$=\"{NOTE}.html\"]').forEach(a => (a.closest('li') || a).remove())")
    assert NOTE not in page.content()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), **kwargs)


def _pages(site):
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if "_static" not in p.parts)


def _open(browser, url, errors):
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
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
    shown = page.evaluate("""Array.from(document.querySelectorAll('tr[data-notebook] span.count')).map(s => [
        s.closest('tr').dataset.notebook, s.dataset.role, s.dataset.verdict, Number(s.textContent)])""")
    rows = page.evaluate("""Array.from(document.querySelectorAll('tr[data-notebook]')).map(r => [
        r.dataset.notebook, r.querySelector('td.headline-verdict').dataset.verdict,
        r.querySelector('td.why').textContent])""")
    _screenshot(page, "dashboard.png", full_page=True)
    page.close()
    # headline and supporting claims counted apart, each equal to the committed run's
    expected = {(nb, role, v): int(((part.role == role) & (part.verdict == v)).sum())
                for nb, part in summary.groupby("notebook") for role in part.role.unique()
                for v in ("holds", "fails", "inconclusive", "untested")}
    assert {(nb, role, v): n for nb, role, v, n in shown} == expected
    # one line per paper of the catalogue: its headline verdict computed from summary.csv, its reason
    verdicts = {nb: v for nb, v, _ in rows}
    assert list(verdicts) == [p.notebook for p in book.catalog.PAPERS]
    for nb, part in summary.groupby("notebook"):
        assert verdicts[nb] == book.headline_verdict(part), nb
    assert verdicts["05_biggio_svm"] == "reproduced" and verdicts["01_poison_frogs"] == "not reproduced"
    for nb in (p.notebook for p in book.catalog.PAPERS if book.catalog.status(p.notebook) != "done"):
        assert verdicts[nb] == "not built yet", nb
    reasons = book.findings()
    for nb, _, why in rows:
        if nb in reasons.index:
            assert reasons.reason[nb] in why and "to review" not in why, nb
    assert (SHOTS / "dashboard.png").stat().st_size > 10_000


def test_every_built_notebook_has_a_reason_written_for_its_committed_run():
    """docs/findings.csv holds the dashboard's reason for each notebook, written for the committed
    run: a rerun (a new commit in the notebook's colophon) fails this test until it is reviewed."""
    from poisonrepro.reproduce import colophon_field
    reasons = book.findings()
    for nb in sorted(book.NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb")):
        assert nb.stem in reasons.index, f"docs/findings.csv: no reason for {nb.stem}"
        assert len(reasons.reason[nb.stem].strip()) > 20, f"docs/findings.csv: {nb.stem}'s reason is empty"
        commit = colophon_field(nb, "git commit:")
        assert reasons.run_commit[nb.stem] == commit, (
            f"docs/findings.csv: {nb.stem}'s reason was written for the run at {reasons.run_commit[nb.stem]}, but the "
            f"committed notebook ran at {commit}: review the reason, then set run_commit to {commit}")
    assert set(reasons.index) <= {p.notebook for p in book.catalog.PAPERS}


#: per table with a "verdict" column (the claims tables, the dashboard): the right edge of that
#: column's last-ending cell and of the table (its other columns, why included, visible too)
VERDICT_EDGES = """Array.from(document.querySelectorAll('main table')).flatMap(t => {
    const head = Array.from(t.querySelectorAll(':scope > thead > tr > th'));
    const col = head.findIndex(th => /verdict/.test(th.textContent));
    if (col < 0) return [];
    const right = e => e.getBoundingClientRect().right + window.scrollX;
    const cells = Array.from(t.querySelectorAll(':scope > tbody > tr')).map(r => r.children[col]).filter(c => c);
    return [[Math.max(...cells.map(right)), right(t)]];
})"""


@pytest.mark.parametrize("rel, shot", [("index.html", None), ("report.html", "report.png"),
                                       ("04_witches_brew.html", "claims_04.png"), ("10_dpa.html", None)])
def test_every_verdict_is_visible_without_horizontal_scrolling(site, server, browser, rel, shot):
    errors = []
    page = _open(browser, server + rel, errors)
    edges = page.evaluate(VERDICT_EDGES)
    scroll_width = page.evaluate("document.scrollingElement.scrollWidth")
    # a notebook's page shows its claims twice: the notebook's own output and the table at its end
    tables = page.evaluate("document.querySelectorAll('main table.claims').length")
    if shot:
        page.locator("main .cell_output table.claims, main table.claims").first.scroll_into_view_if_needed()
        page.evaluate("window.scrollBy(0, -60)")
        _screenshot(page, shot)
    page.close()
    assert edges, f"{rel}: no verdict column"
    assert max(v for v, _ in edges) <= WIDTH, f"{rel}: a verdict cell ends at x = {max(edges)[0]:.0f} > {WIDTH}"
    assert max(t for _, t in edges) <= WIDTH, (
        f"{rel}: a table with verdicts ends at x = {max(t for _, t in edges):.0f} > {WIDTH}: its last columns are "
        "hidden to the right")
    assert scroll_width <= WIDTH, f"{rel}: the page scrolls sideways ({scroll_width} px)"
    if rel[:2].isdigit():
        assert tables >= 2, tables


def test_figures_open_full_size_on_a_click_and_are_never_stretched(site, server, browser):
    errors = []
    page = _open(browser, server + "04_witches_brew.html", errors)
    figs = page.evaluate("""Array.from(document.querySelectorAll('main img')).map(i => ({
        natural: i.naturalWidth, shown: i.getBoundingClientRect().width,
        href: i.closest('a') ? i.closest('a').href : null}))""")
    assert figs and all(f["shown"] <= f["natural"] + 0.5 for f in figs), figs
    assert all(f["href"] and f["href"].endswith(".png") for f in figs), figs
    first = figs[0]
    assert first["shown"] < first["natural"]  # shrunk to the column: the click is what makes it readable
    assert not errors, errors
    page.click("main a:has(> img)")
    page.wait_for_url("**/*.png")  # (Chromium's view of a bare PNG asks for /favicon.ico: a 404, not the book's)
    assert page.evaluate("document.images[0].naturalWidth") == first["natural"]
    page.close()


def test_chinese_text_renders_in_a_cjk_font(site, server, browser):
    import subprocess
    if shutil.which("fc-list") is None:
        pytest.skip("no fontconfig here")
    fonts = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True).stdout
    assert fonts.strip(), "no CJK font: apt-get install fonts-wqy-zenhei (.ci/run installs it)"
    errors = []
    page = _open(browser, server + "10_dpa.html", errors)
    # tofu: every character without a glyph is drawn as the same empty box, so two different
    # characters drawn alike in the quote's font mean the font (and its fallbacks) lack them
    distinct = page.evaluate("""() => {
        const el = Array.from(document.querySelectorAll('main p, main li')).find(e => e.textContent.includes('深度划分聚合'));
        if (!el) return null;
        const c = document.createElement('canvas'); c.width = c.height = 64;
        const x = c.getContext('2d');
        const draw = ch => { x.clearRect(0, 0, 64, 64); x.font = '40px ' + getComputedStyle(el).fontFamily;
                             x.fillText(ch, 4, 48); return Array.from(x.getImageData(0, 0, 64, 64).data).join(); };
        return draw('深') !== draw('划');
    }""")
    page.close()
    assert distinct is not None, "10_dpa.html: the Chinese slide quote is missing"
    assert distinct, "10_dpa.html: the Chinese quote renders as empty boxes (no CJK font)"


def test_every_page_of_docs_is_in_the_book_under_measurements_and_notes(site):
    index = (site / "index.html").read_text()
    assert "Measurements and notes" in index
    assert f'href="{NOTE}.html"' in index
    assert "quokkas measured here" in (site / f"{NOTE}.html").read_text()


def test_a_page_of_docs_must_have_a_title_and_a_name_the_book_does_not_use(tmp_path):
    (tmp_path / "notes.md").write_text("# Notes\n\ntext\n")
    (tmp_path / "artifacts.md").write_text("# generated, left out\n")
    assert [name for name, _ in book.notes_pages(tmp_path)] == ["notes"]
    (tmp_path / "untitled.md").write_text("no title\n")
    with pytest.raises(ValueError, match="untitled.md: no '# Title'"):
        book.notes_pages(tmp_path)
    (tmp_path / "untitled.md").unlink()
    (tmp_path / "report.md").write_text("# Report\n")
    with pytest.raises(ValueError, match="report.md: the book generates a page named 'report'"):
        book.notes_pages(tmp_path)


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
    _screenshot(page, "paper_page.png", full_page=False)
    page.close()
    assert not errors, errors


@pytest.mark.parametrize("origin, query, where", [("http", "certified", "10_dpa"), ("file", "certified", "10_dpa"),
                                                  ("http", "AUROC", "index")])  # a reason on the dashboard
def test_search_finds_pages_on_a_static_host_and_from_the_filesystem(site, server, browser, origin, query, where):
    base = server if origin == "http" else site.resolve().as_uri() + "/"
    errors = []
    page = _open(browser, urljoin(base, f"search.html?q={query}"), errors)
    # Sphinx lists the hits one by one (5 ms apart) and then writes its summary: wait for the summary,
    # or the hits read are only the first few
    page.wait_for_function("(document.querySelector('p.search-summary') || {}).innerText?.startsWith('Search finished')",
                           timeout=20_000)
    hits = page.evaluate("Array.from(document.querySelectorAll('#search-results li a, ul.search li a'))"
                         ".map(a => a.getAttribute('href'))")
    page.close()
    assert any(where in h for h in hits), hits
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
    row["source"] = "the paper, Table 1"
    text = book.claims_html(pd.DataFrame([row]))
    assert not re.search(r"\de-?\d", text) and "nan" not in text.lower() and "&lt;0.001" in text
    assert 'class="verdict verdict-fails"' in text and "Wilson bound" in text
    assert "<th>source</th><td>the paper, Table 1</td>" in text and "<th>setting</th>" not in text  # (none given)
    # the claim and its verdict come first, then measured, paper and why; the rest is folded per row
    heads = re.findall(r'<th class="col-[^"]+">([^<]+)</th>', text)
    assert heads == ["claim", "verdict", "measured", "paper", "why"]
    assert text.index("<details>") < text.index("<th>test</th>") < text.index("</details>")


def test_pixel_budgets_are_shown_on_the_255_scale():
    from poisonrepro.notebook import _on_255_scale
    assert _on_255_scale(8 / 255) == "8/255" and _on_255_scale((0.5 / 255, 16 / 255)) == "(0.5/255, 16/255)"
    assert _on_255_scale(0.04) == 0.04 and _on_255_scale(1.0) == 1.0  # not a multiple of 0.5/255; not a budget
