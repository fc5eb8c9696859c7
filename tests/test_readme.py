"""The README's examples run: every ```python block of README.md is executed, so none can go stale.

Each block runs on its own, in a fresh namespace, as a reader who copies one would run it. The README
shows one example per part of the book; a part without one fails here too. `make wheel-check` runs the
same blocks again with nothing but the installed wheel (scripts/wheel_smoke.py).
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```python\n(.*?)^```$", README, re.M | re.S)
#: The parts of the book, as the package's subpackages (kexue/<part>/__init__.py).
PARTS = sorted(p.parent.name for p in (ROOT / "src" / "kexue").glob("*/__init__.py"))


def test_the_readme_has_examples() -> None:
    assert len(BLOCKS) >= 2, "README.md has no ```python block"


def test_every_part_has_an_example() -> None:
    shown = {
        m for block in BLOCKS for m in re.findall(r"^from kexue\.(\w+)", block, re.M)
    }
    missing = [part for part in PARTS if part not in shown]
    assert not missing, f"README.md's 'Using the package' has no example of {missing}"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_the_example_runs(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs without an exception (from an empty folder), prints something, within 88 columns."""
    block = BLOCKS[index]
    too_wide = [line for line in block.splitlines() if len(line) > 88]
    assert not too_wide, f"lines wider than 88 columns: {too_wide}"
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(
            compile(block, f"README.md, python block {index + 1}", "exec"),
            {"__name__": "__main__"},
        )
    assert printed.getvalue().strip(), f"block {index + 1} prints nothing:\n{block}"
    assert all(len(line) <= 88 for line in printed.getvalue().splitlines())
