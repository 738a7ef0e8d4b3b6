"""Sphinx configuration of the book (``make book``; ``poisonrepro/book.py`` writes the sources).

Sphinx + MyST-NB + the Jupyter Book theme (``sphinx-book-theme``): the committed notebooks are
rendered as they are, never executed. MathJax is served from ``_static`` (copied there by
``book.py`` from the npm package), so math renders offline and from the filesystem.
"""
project = "poisonrepro"
author = "the poisonrepro authors"
copyright = "2026, the poisonrepro authors"

extensions = ["myst_nb"]
nb_execution_mode = "off"          # the committed outputs of a real cpu run, never re-executed
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
suppress_warnings = ["mystnb.unknown_mime_type"]

html_theme = "sphinx_book_theme"
html_title = "poisonrepro"
from pathlib import Path  # noqa: E402

# _static: the stylesheet here, and MathJax, which book.py installs into build/book/static/
html_static_path = ["_static", str(Path(__file__).resolve().parents[1] / "build" / "book" / "static")]
html_css_files = ["poisonrepro.css"]
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "home_page_in_toc": True,
}
html_show_sourcelink = False
html_copy_source = False
html_last_updated_fmt = None

mathjax_path = "mathjax/tex-svg-full.js"  # a local copy: no network; SVG output needs no web fonts

# a fixed light mode: with none set, the theme logs "invalid theme mode" as a console error on a
# browser's first visit
html_context = {"default_mode": "light"}
html_favicon = "_static/favicon.png"  # with none, the browser asks for /favicon.ico: a 404 in the console
html_show_search_summary = False      # summaries fetch() each hit's page, which a file:// page may not
