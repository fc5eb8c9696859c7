"""Fixtures for the rendered-book check: a local HTTP server over the built HTML and headless Chromium.

Run after `make book` (``make html-check`` does): ``pytest tests/html --html-dir _build/html``.
The browser is Debian's Chromium driven by Playwright (``executable_path``); Playwright never downloads
a browser here. Every request that leaves the local server is blocked and reported: the book must
render without a network.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

# test_checks.py imports the checks of test_rendered.py (pytest runs with --import-mode=importlib)
sys.path.insert(0, str(Path(__file__).parent))

CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # no connections to Google's services from a closed network
    "--disable-component-update",
    "--disable-sync",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--html-dir", default="_build/html", help="the built book to check"
    )
    parser.addoption(
        "--screenshots",
        default=None,
        help="folder to save a screenshot of every page in",
    )


def html_dir(config: pytest.Config) -> Path:
    root = Path(config.getoption("--html-dir")).resolve()
    if not (root / "index.html").is_file():
        raise pytest.UsageError(f"no built book at {root}: run `make book` first")
    return root


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "page_path" in metafunc.fixturenames:
        root = html_dir(metafunc.config)
        pages = sorted(
            p.relative_to(root).as_posix()
            for p in root.rglob("*.html")
            if "_static" not in p.parts
        )
        metafunc.parametrize("page_path", pages)


@pytest.fixture(scope="session")
def site_root(pytestconfig: pytest.Config) -> Path:
    return html_dir(pytestconfig)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def server_url(site_root: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(site_root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    executable = (
        os.environ.get("CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )
    if executable is None:
        raise pytest.UsageError(
            "Chromium not found: run scripts/ensure-chromium.sh or set CHROMIUM"
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()
