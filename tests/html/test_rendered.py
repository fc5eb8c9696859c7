"""Every page of the built book, opened in headless Chromium.

For each page: it loads with no console error, no uncaught exception and no request leaving the local
server; MathJax typesets every formula without an error; every image loads; every internal link points
at a page that exists, and at an anchor that exists on it. Then a few checks that the whole looks like a
book: numbered chapters in the navigation, figures with captions, the claims tables rendered as tables.
"""

from __future__ import annotations

import functools
import html.parser
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
from book_checks import EXEMPT_PARTS

MATHJAX_TIMEOUT_MS = 30_000


class _AnchorCollector(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.anchors: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "id" or (tag == "a" and name == "name"):
                self.anchors.add(value or "")


@functools.cache
def anchors_of(path: Path) -> frozenset[str]:
    collector = _AnchorCollector()
    collector.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(collector.anchors)


@dataclass
class Findings:
    console_errors: list[str] = field(default_factory=list)
    blocked_requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return (
            [f"console: {m}" for m in self.console_errors]
            + [
                f"request left the local server (blocked): {u}"
                for u in self.blocked_requests
            ]
            + [f"request failed: {u}" for u in self.failed_requests]
        )


DESKTOP = {"width": 1400, "height": 900}
PHONE = {"width": 420, "height": 860}
MIN_COLUMN_PX = 20


def open_page(
    browser, url: str, origin: str, findings: Findings, viewport: dict = DESKTOP
):
    page = browser.new_page(viewport=viewport)

    def route(request_route) -> None:
        request_url = request_route.request.url
        if request_url.startswith(origin) or request_url.startswith(("data:", "blob:")):
            request_route.continue_()
        else:
            findings.blocked_requests.append(request_url)
            request_route.abort()

    page.route("**/*", route)
    page.on(
        "console",
        lambda m: m.type == "error" and findings.console_errors.append(m.text),
    )
    page.on("pageerror", lambda e: findings.console_errors.append(f"uncaught: {e}"))
    page.on(
        "response",
        lambda r: (
            r.status >= 400 and findings.failed_requests.append(f"{r.status} {r.url}")
        ),
    )
    page.goto(url, wait_until="load")
    return page


def check_math(page) -> list[str]:
    """Wait for MathJax, then report formulas it did not typeset and formulas it typeset as errors."""
    count = page.evaluate("document.querySelectorAll('.math').length")
    if count == 0:
        return []
    if not page.evaluate("typeof window.MathJax === 'object'"):
        return [f"{count} formulas on the page but MathJax is not loaded"]
    page.wait_for_function(
        "() => window.MathJax.startup && window.MathJax.startup.promise",
        timeout=MATHJAX_TIMEOUT_MS,
    )
    page.evaluate("window.MathJax.startup.promise")
    return page.evaluate(
        """() => {
            const problems = [];
            for (const el of document.querySelectorAll('.math')) {
                const text = el.textContent.trim().slice(0, 80);
                if (!el.querySelector('mjx-container')) problems.push('not typeset: ' + text);
            }
            for (const err of document.querySelectorAll('mjx-merror, [data-mjx-error]')) {
                problems.push('MathJax error: ' + (err.getAttribute('data-mjx-error') || err.textContent));
            }
            return problems;
        }"""
    )


def check_images(page) -> list[str]:
    return page.evaluate(
        """async () => {
            const images = [...document.images];
            for (const img of images) img.loading = 'eager';
            await Promise.allSettled(images.map((img) => img.decode()));
            return images
                .filter((img) => !(img.complete && img.naturalWidth > 0))
                .map((img) => 'image did not load: ' + (img.getAttribute('src') || '').slice(0, 120));
        }"""
    )


def check_links(page, site_root: Path, page_url: str, origin: str) -> list[str]:
    problems = []
    hrefs = page.evaluate(
        "[...document.querySelectorAll('a[href]')].map((a) => a.getAttribute('href'))"
    )
    for href in sorted(set(hrefs)):
        target = urljoin(page_url, href)
        if not target.startswith(origin):
            continue  # external: not reachable from here, and not this check's business
        parts = urlsplit(target)
        path = site_root / unquote(parts.path[len(urlsplit(origin).path) :])
        if path.is_dir():
            path = path / "index.html"
        if not path.is_file():
            problems.append(
                f"broken link {href!r}: {path.relative_to(site_root)} does not exist"
            )
        elif (
            parts.fragment
            and path.suffix == ".html"
            and unquote(parts.fragment) not in anchors_of(path)
        ):
            problems.append(
                f"broken anchor {href!r}: no id {parts.fragment!r} in {path.name}"
            )
    return problems


def check_layout(page) -> list[str]:
    """At desktop width: no table column narrower than MIN_COLUMN_PX, no pre block whose content
    is wider than its box (it would scroll sideways), and no image whose alt text is missing or a
    file name."""
    return page.evaluate(
        """(minimum) => {
            const problems = [];
            const article = document.querySelector('article') || document.body;
            for (const cell of article.querySelectorAll('table th, table td')) {
                const width = cell.getBoundingClientRect().width;
                if (cell.textContent.trim() && width < minimum) {
                    problems.push(`table column ${Math.round(width)} px wide: `
                        + cell.textContent.trim().slice(0, 40));
                }
            }
            for (const pre of article.querySelectorAll('pre')) {
                if (pre.scrollWidth > pre.clientWidth + 1) {
                    const line = pre.textContent.split('\\n')
                        .reduce((a, b) => (b.length > a.length ? b : a), '');
                    problems.push(`pre block scrolls (${pre.scrollWidth} > ${pre.clientWidth} px): `
                        + line.trim().slice(0, 60));
                }
            }
            for (const img of article.querySelectorAll('img')) {
                const alt = (img.getAttribute('alt') || '').trim();
                if (!alt || /^[\\w./-]+\\.(png|jpe?g|svg|gif)$/i.test(alt)) {
                    problems.push('image without alt text: ' + (img.getAttribute('src') || '').slice(-60));
                }
            }
            return problems;
        }""",
        MIN_COLUMN_PX,
    )


def check_narrow_screen(page) -> list[str]:
    """At phone width: the page itself never scrolls sideways (code blocks and tables may scroll
    inside their own boxes); names the elements that stick out."""
    return page.evaluate(
        """() => {
            const width = document.documentElement.clientWidth;
            if (document.documentElement.scrollWidth <= width + 1) return [];
            const scrolls = (el) => ['auto', 'scroll', 'hidden'].includes(getComputedStyle(el).overflowX);
            const culprits = [];
            for (const el of document.body.querySelectorAll('*')) {
                const box = el.getBoundingClientRect();
                if (box.right <= width + 1 || box.width === 0) continue;
                let parent = el.parentElement, inside = false;
                while (parent && parent !== document.body) {
                    if (scrolls(parent)) { inside = true; break; }
                    parent = parent.parentElement;
                }
                if (!inside) culprits.push(`${el.tagName.toLowerCase()}.${[...el.classList].join('.')}`
                    + ` reaches ${Math.round(box.right)} px`);
            }
            return [`the page scrolls sideways at ${width} px (${document.documentElement.scrollWidth} px)`]
                .concat(culprits.slice(0, 5));
        }"""
    )


REDIRECT = re.compile(
    r'<meta http-equiv="Refresh" content="0; url=([^"]+)"', re.IGNORECASE
)


def test_page_renders_cleanly(
    page_path: str, browser, server_url: str, site_root: Path, pytestconfig
) -> None:
    redirect = REDIRECT.search((site_root / page_path).read_text(encoding="utf-8"))
    if redirect:  # Jupyter Book's index.html only forwards to the root page
        target = (site_root / page_path).parent / redirect.group(1)
        assert target.is_file(), (
            f"{page_path} redirects to a missing page {redirect.group(1)}"
        )
        return
    findings = Findings()
    url = server_url + page_path
    page = open_page(browser, url, server_url, findings)
    try:
        problems = check_math(page) + check_images(page)
        problems += check_links(page, site_root, url, server_url) + check_layout(page)
        screenshot(page, pytestconfig, page_path, "1400")
    finally:
        page.close()
    phone = open_page(browser, url, server_url, findings, viewport=PHONE)
    try:
        check_math(phone)  # typeset first: the formulas' final widths count
        problems += [f"at {PHONE['width']} px: {p}" for p in check_narrow_screen(phone)]
        screenshot(phone, pytestconfig, page_path, "420")
    finally:
        phone.close()
    problems = findings.problems() + problems
    assert not problems, f"{page_path}:\n  " + "\n  ".join(problems)


def screenshot(page, config: pytest.Config, page_path: str, suffix: str) -> None:
    shots = config.getoption("--screenshots")
    if shots:
        target = Path(shots) / f"{page_path.replace('/', '__')}.{suffix}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target), full_page=True)


@pytest.fixture(scope="module")
def chapter_pages(site_root: Path) -> list[str]:
    """Pages of chapters with the full anatomy: parts in book_checks.EXEMPT_PARTS (the appendix) are
    exempt here as they are from the structure checks."""
    pages = sorted(
        p.relative_to(site_root).as_posix()
        for p in (site_root / "chapters").rglob("*.html")
        if p.parent.name not in EXEMPT_PARTS
    )
    assert pages, "the built book has no chapter pages"
    return pages


def test_navigation_numbers_the_chapters(browser, server_url: str) -> None:
    findings = Findings()
    page = open_page(browser, server_url + "index.html", server_url, findings)
    try:
        page.wait_for_url("**/book/intro.html")  # index.html forwards to the root page
        page.wait_for_load_state("load")
        captions = page.evaluate(
            "[...document.querySelectorAll('.bd-sidebar p.caption')].map((c) => c.textContent.trim())"
        )
        entries = page.evaluate(
            "[...document.querySelectorAll('.bd-sidebar a.reference.internal')]"
            ".map((a) => a.textContent.trim())"
        )
    finally:
        page.close()
    assert "Foundations" in captions, captions
    # the book's extension numbers the parts
    parts = [c for c in captions if c.startswith("Part ")]
    assert parts and parts[0].startswith("Part I · "), captions
    assert any(entry.startswith("1. ") for entry in entries), entries


def test_chapters_have_captioned_figures_and_a_claims_table(
    chapter_pages: list[str], browser, server_url: str
) -> None:
    for chapter in chapter_pages:
        findings = Findings()
        page = open_page(browser, server_url + chapter, server_url, findings)
        try:
            figures = page.evaluate(
                "[...document.querySelectorAll('figure')].filter((f) => f.querySelector('img')"
                " && f.querySelector('figcaption')).length"
            )
            claims_headers = page.evaluate(
                """() => [...document.querySelectorAll('table thead')]
                    .map((h) => h.textContent.replace(/\\s+/g, ' ').trim())"""
            )
        finally:
            page.close()
        assert figures >= 1, f"{chapter}: no figure with an image and a caption"
        assert any("Claim" in h and "Verdict" in h for h in claims_headers), (
            f"{chapter}: no rendered claims table (found table headers {claims_headers})"
        )
