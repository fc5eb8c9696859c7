"""The browser checks of test_rendered.py, run on pages broken on purpose, so that a check that
could never fail would be noticed."""

from __future__ import annotations

import pytest
from test_rendered import DESKTOP, PHONE, check_layout, check_narrow_screen

GOOD = """<html><body><article style="width: 800px">
<table><thead><tr><th>Claim</th><th>Measured</th><th>Verdict</th></tr></thead>
<tbody><tr><td>a claim</td><td>0.5</td><td>reproduced</td></tr></tbody></table>
<pre style="overflow-x: auto; max-width: 100%">short line</pre>
<img alt="Training loss falls to zero" src="data:image/png;base64,iVBORw0KGgo=">
</article></body></html>"""


@pytest.fixture
def page_with(browser):
    pages = []

    def load(html: str, viewport: dict = DESKTOP):
        page = browser.new_page(viewport=viewport)
        page.set_content(html)
        pages.append(page)
        return page

    yield load
    for page in pages:
        page.close()


def test_a_good_page_passes(page_with) -> None:
    assert check_layout(page_with(GOOD)) == []
    assert check_narrow_screen(page_with(GOOD.replace("800px", "380px"), PHONE)) == []


def test_a_zero_width_column_is_found(page_with) -> None:
    broken = GOOD.replace(
        "<table>", '<table style="table-layout: fixed; width: 300px">'
    ).replace("<th>Verdict</th>", '<th style="width: 0px; padding: 0">Verdict</th>')
    broken = broken.replace("<th>Claim</th>", '<th style="width: 290px">Claim</th>')
    problems = check_layout(page_with(broken))
    assert any(p.startswith("table column") and "Verdict" in p for p in problems), (
        problems
    )


def test_a_pre_block_that_scrolls_is_found(page_with) -> None:
    broken = GOOD.replace("short line", "x = 1  # " + "a long comment " * 20)
    problems = check_layout(page_with(broken))
    assert any(p.startswith("pre block scrolls") for p in problems), problems


@pytest.mark.parametrize(
    "alt", ["", "fig-rope-copy.png", "_build/jupyter_execute/abc123.png"]
)
def test_an_image_without_real_alt_text_is_found(page_with, alt: str) -> None:
    broken = GOOD.replace('alt="Training loss falls to zero"', f'alt="{alt}"')
    problems = check_layout(page_with(broken))
    assert any(p.startswith("image without alt text") for p in problems), problems


def test_a_page_that_scrolls_sideways_on_a_phone_is_found(page_with) -> None:
    problems = check_narrow_screen(
        page_with(GOOD, PHONE)
    )  # an 800-px article on a 420-px screen
    assert problems and "scrolls sideways at 420 px" in problems[0], problems
    assert any("article" in p for p in problems[1:]), problems


def test_a_wide_block_that_scrolls_in_its_own_box_is_allowed_on_a_phone(
    page_with,
) -> None:
    inside = GOOD.replace("800px", "380px").replace(
        "short line", "y = 2  # " + "wide " * 80
    )
    assert (
        check_narrow_screen(
            page_with(inside.replace("width: 700px", "width: 360px"), PHONE)
        )
        == []
    )
