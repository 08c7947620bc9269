"""The README and the pages in docs/: every relative link reaches a file (and a heading, when it names one), and the
README stays a front page that links each page."""

import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(path: str) -> set[str]:
    """GitHub's anchor for each heading: lower case, punctuation dropped, spaces as hyphens."""
    with open(path) as f:
        headings = [line.lstrip("#").strip() for line in f if re.match(r"#{1,6} ", line)]
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def relative_links(path: str) -> list[str]:
    with open(path) as f:
        text = re.sub(r"```.*?```", "", f.read(), flags=re.S)  # code blocks hold no links
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+://|mailto:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_relative_link_resolves(page):
    broken = []
    for target in relative_links(page):
        file, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(page), file)) if file else page
        if not os.path.exists(resolved):
            broken.append(f"{target}: no such file")
        elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor}")
    assert not broken, broken


def test_the_readme_is_a_front_page_linking_every_docs_page():
    with open(PAGES[0]) as f:
        text = f.read()
    assert len(text.splitlines()) <= 180
    for command in ("bash scripts/demo.sh", "bash scripts/test.sh", "pip install torch==2.13.0", "pip install -e ."):
        assert command in text
    linked = {os.path.normpath(t.partition("#")[0]) for t in relative_links(PAGES[0])}
    assert {os.path.relpath(p, ROOT) for p in PAGES[1:]} <= linked


def test_the_check_finds_a_broken_link(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](page.md#title) [gone](missing.md) [no heading](page.md#nope)\n")
    assert relative_links(str(page)) == ["page.md#title", "missing.md", "page.md#nope"]
    with pytest.raises(AssertionError, match=r"missing.md: no such file.*page.md#nope: no heading #nope"):
        test_every_relative_link_resolves(str(page))
