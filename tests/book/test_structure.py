"""The book's own structure: table of contents, chapter anatomy, the chapter/module/test mirror, references.

The checks live in book_checks.py; the last tests here run them on deliberately broken chapters, so a
check that could never fail would be noticed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from book_checks import (
    EXEMPT_PARTS,
    ROOT,
    anatomy_problems,
    bibliography_keys,
    book_macros,
    chapter_files,
    cited_keys,
    code_problems,
    header_problems,
    literalinclude_problems,
    macro_cell,
    macro_cell_problems,
    toc_files,
)

CHAPTERS = chapter_files()
FULL_CHAPTERS = [c for c in CHAPTERS if c.parent.name not in EXEMPT_PARTS]
BOOK_PAGES = CHAPTERS + sorted((ROOT / "book").glob("*.md"))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_there_is_at_least_one_chapter() -> None:
    assert CHAPTERS, "no chapters under chapters/"


def test_every_chapter_is_in_the_toc_and_every_toc_entry_exists() -> None:
    listed = toc_files()
    assert len(listed) == len(set(listed)), "a file is listed twice in _toc.yml"
    unlisted = [rel(c) for c in CHAPTERS if rel(c.with_suffix("")) not in listed]
    missing = [f for f in listed if not (ROOT / f).with_suffix(".md").is_file()]
    assert not unlisted, f"chapters missing from _toc.yml: {unlisted}"
    assert not missing, f"_toc.yml entries with no file: {missing}"


def test_parts_with_chapters_are_numbered() -> None:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    for part in toc["parts"]:
        files = [entry["file"] for entry in part.get("chapters", [])]
        if any(f.startswith("chapters/") for f in files):
            assert part.get("numbered") is True, (
                f"part {part['caption']!r} is not numbered in _toc.yml"
            )


def test_no_notebook_files_next_to_the_sources() -> None:
    stray = [rel(p) for p in (ROOT / "chapters").rglob("*.ipynb")]
    assert not stray, (
        f".ipynb files in chapters/ (the .md is the source; they break the book build): {stray}"
    )
    tracked = subprocess.run(
        ["git", "ls-files", "*.ipynb"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert not tracked, f"committed .ipynb files: {tracked}"


@pytest.mark.parametrize("chapter", FULL_CHAPTERS, ids=rel)
def test_chapter_has_the_six_part_anatomy(chapter: Path) -> None:
    problems = anatomy_problems(chapter)
    assert not problems, f"{rel(chapter)}: " + "; ".join(problems)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=rel)
def test_chapter_is_a_python3_myst_notebook(chapter: Path) -> None:
    problems = header_problems(chapter)
    assert not problems, f"{rel(chapter)}: " + "; ".join(problems)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=rel)
def test_chapter_opens_with_the_book_macros(chapter: Path) -> None:
    problems = macro_cell_problems(chapter)
    assert not problems, f"{rel(chapter)}: " + "; ".join(problems)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=rel)
def test_chapter_code_fits_and_verdicts_are_derived(chapter: Path) -> None:
    problems = code_problems(chapter)
    assert not problems, f"{rel(chapter)}: " + "; ".join(problems)


def test_a_chapter_converted_to_ipynb_defines_every_macro_it_uses(
    tmp_path: Path,
) -> None:
    """As `jupytext --to ipynb` converts it for JupyterLab or VS Code, outside the book."""
    import re

    import nbformat

    chapter = ROOT / "chapters" / "foundations" / "conventions.md"
    target = tmp_path / "conventions.ipynb"
    subprocess.run(
        [
            str(Path(sys.executable).parent / "jupytext"),
            "--to",
            "ipynb",
            str(chapter),
            "-o",
            str(target),
        ],
        check=True,
        capture_output=True,
    )
    notebook = nbformat.read(target, as_version=4)
    first = notebook.cells[0]
    assert first.cell_type == "markdown"
    defined = set(re.findall(r"\\(?:re)?newcommand\{\\(\w+)\}", first.source))
    assert defined == set(book_macros())
    used = set()
    for cell in notebook.cells[1:]:
        if cell.cell_type == "markdown":
            used |= set(re.findall(r"\\(\w+)", cell.source)) & set(book_macros())
    assert used, (
        "the chapter uses none of the book's macros: pick another chapter for this test"
    )
    assert used <= defined


def test_the_macro_cell_follows_the_book_configuration() -> None:
    cell = macro_cell()
    assert "\\renewcommand{\\vec}[1]{\\boldsymbol{#1}}" in cell
    assert "\\newcommand{\\inner}[2]{\\langle #1, #2 \\rangle}" in cell
    assert "\n\n" not in cell  # one HTML block: the book does not render it


@pytest.mark.parametrize("chapter", FULL_CHAPTERS, ids=rel)
def test_chapter_module_and_test_mirror_each_other(chapter: Path) -> None:
    part, topic = chapter.parent.name, chapter.stem
    module = ROOT / "src" / "kexue" / part / f"{topic}.py"
    test = ROOT / "tests" / part / f"test_{topic}.py"
    assert module.is_file(), f"{rel(chapter)} has no module {rel(module)}"
    assert test.is_file(), f"{rel(chapter)} has no test {rel(test)}"
    assert (module.parent / "__init__.py").is_file(), (
        f"{rel(module.parent)} is not a package"
    )


@pytest.mark.parametrize("chapter", FULL_CHAPTERS, ids=rel)
def test_chapter_uses_the_shared_device_and_seed_helpers(chapter: Path) -> None:
    text = chapter.read_text()
    assert "get_device(" in text, (
        f"{rel(chapter)} does not pick its device with kexue.get_device()"
    )
    assert "seed_everything(" in text, (
        f"{rel(chapter)} does not seed with kexue.seed_everything()"
    )


@pytest.mark.parametrize("page", BOOK_PAGES, ids=rel)
def test_literalincludes_point_at_existing_code(page: Path) -> None:
    problems = literalinclude_problems(page)
    assert not problems, f"{rel(page)}: " + "; ".join(problems)


@pytest.mark.parametrize("page", BOOK_PAGES, ids=rel)
def test_every_citation_is_in_the_bibliography(page: Path) -> None:
    unknown = cited_keys(page) - bibliography_keys()
    assert not unknown, (
        f"{rel(page)} cites keys missing from book/references.bib: {sorted(unknown)}"
    )


# --- the checks themselves, on chapters made to fail them --------------------------------------------

GOOD_CHAPTER = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A title

Why this matters, following {cite}`su-kexue`.

## Derivation

The square's derivative,

$$
\\frac{d}{dx} x^2 = 2x.
$$ (a-derivative)

```{code-cell} ipython3
import sympy as sp
x = sp.Symbol("x")
assert sp.diff(x**2, x) == 2 * x
```

## Implementation

```{literalinclude} ../../src/kexue/runtime.py
:pyobject: get_device
:no-docstring:
```

## Verification

```{code-cell} ipython3
assert 1 + 1 == 2
```

## Experiments and figures

```{code-cell} ipython3
fig, ax = plt.subplots()
claims.add(Claim("c", "s", "m", passed=error < 0.1))
```

## Claims checked

```{code-cell} ipython3
claims
```

## What we learned

Squares grow.

## Exercises

```{exercise}
:label: a-ex-1
Differentiate $x^3$.
```

```{solution} a-ex-1
:class: dropdown
$3x^2$.
```

```{exercise}
:label: a-ex-2
Compute $2 + 2$.
```

```{solution-start} a-ex-2
:class: dropdown
```

```{code-cell} ipython3
assert 2 + 2 == 4
```

```{solution-end}
```
"""


def write_chapter(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "chapters" / "part" / "topic.md"
    path.parent.mkdir(parents=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_the_anatomy_check_accepts_a_complete_chapter(tmp_path: Path) -> None:
    assert anatomy_problems(write_chapter(tmp_path, GOOD_CHAPTER)) == []
    assert header_problems(write_chapter(tmp_path / "h", GOOD_CHAPTER)) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("## Verification", "## Checks"), "missing sections: ['Verification']"),
        (("{cite}`su-kexue`", "the blog"), "must cite its source"),
        (
            ("assert sp.diff(x**2, x) == 2 * x", "sp.diff(x**2, x)"),
            "Derivation has no SymPy code cell",
        ),
        ((":pyobject: get_device", ":lines: 1-3"), "shows no library code"),
        (
            ("assert 1 + 1 == 2", "1 + 1"),
            "Verification has no code cell with an assert",
        ),
        (("fig, ax = plt.subplots()", "print(1)"), "draws no figure"),
        (
            ("```{code-cell} ipython3\nclaims\n```", "Nothing."),
            "does not show the chapter's ClaimsTable",
        ),
        (("# A title", "A title"), "no title"),
        (("$$ (a-derivative)", "$$"), "no labelled display equation"),
        ((":no-docstring:\n", ""), "without :no-docstring:"),
        (("## Exercises", "## Problems"), "missing sections: ['Exercises']"),
        (("## What we learned", "## Summary"), "missing sections: ['What we learned']"),
        (("```{solution} a-ex-1", "```{note} a-ex-1"), "2 exercises but 1 solutions"),
        (("assert 2 + 2 == 4", "2 + 2"), "no computational solution"),
        (("passed=error < 0.1", 'verdict="reproduced"'), "a verdict written by hand"),
        (("passed=error < 0.1", "passed=True"), "a verdict written by hand"),
        (
            ("Squares grow.", "As the brief says, squares grow."),
            "words of how the book was made",
        ),
        (
            ("assert 1 + 1 == 2", "assert 1 + 1 == 2\n" + "x = 1\n" * 40),
            "a code cell of 41 lines",
        ),
    ],
)
def test_the_anatomy_check_rejects_what_is_missing(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    broken = GOOD_CHAPTER.replace(*change)
    assert broken != GOOD_CHAPTER
    problems = anatomy_problems(write_chapter(tmp_path, broken))
    assert any(expected in p for p in problems), problems


def test_a_claim_measured_in_a_hidden_cell_is_rejected(tmp_path: Path) -> None:
    hidden = GOOD_CHAPTER.replace(
        "```{code-cell} ipython3\nfig, ax",
        "```{code-cell} ipython3\n:tags: [hide-input]\n\nfig, ax",
    )
    problems = anatomy_problems(write_chapter(tmp_path, hidden))
    assert any("hidden cells only draw" in p for p in problems), problems


def test_the_anatomy_check_rejects_sections_out_of_order(tmp_path: Path) -> None:
    swapped = GOOD_CHAPTER.replace("## Derivation", "## TMP").replace(
        "## Implementation", "## Derivation"
    )
    swapped = swapped.replace("## TMP", "## Implementation")
    problems = anatomy_problems(write_chapter(tmp_path, swapped))
    assert any("out of order" in p for p in problems), problems


def test_headings_inside_code_blocks_are_not_sections(tmp_path: Path) -> None:
    fenced = GOOD_CHAPTER.replace(
        "## Verification\n", "```text\n## Verification\n```\n"
    )
    problems = anatomy_problems(write_chapter(tmp_path, fenced))
    assert any("missing sections: ['Verification']" in p for p in problems), problems


def test_the_literalinclude_check_finds_missing_objects(tmp_path: Path) -> None:
    page = write_chapter(
        tmp_path, GOOD_CHAPTER.replace(":pyobject: get_device", ":pyobject: get_devise")
    )
    (tmp_path / "src" / "kexue").mkdir(parents=True)
    (tmp_path / "src" / "kexue" / "runtime.py").write_text(
        "def get_device():\n    pass\n"
    )
    assert literalinclude_problems(page) == [
        "literalinclude :pyobject: get_devise not found in ../../src/kexue/runtime.py"
    ]


def test_the_header_check_wants_the_python3_kernel(tmp_path: Path) -> None:
    page = write_chapter(tmp_path, GOOD_CHAPTER.replace("name: python3", "name: julia"))
    assert header_problems(page) == ["kernelspec is not python3"]


def broken_inline_math(text: str) -> list[str]:
    """Prose lines that start with ``+ `` or ``- `` while an inline ``$...$`` is open:
    Markdown reads them as list items, which cuts the formula in two."""
    problems, fenced, display, open_inline = [], False, False, False
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fenced = not fenced
        if fenced or stripped.startswith("```"):
            continue
        if stripped.startswith("$$"):
            display = not display if stripped.count("$$") == 1 else display
            open_inline = False
            continue
        if display:
            continue
        if open_inline and stripped[:2] in ("+ ", "- "):
            problems.append(f"line {number}: {stripped[:60]}")
        if not stripped:
            open_inline = False
        open_inline ^= line.replace("\\$", "").count("$") % 2 == 1
    return problems


@pytest.mark.parametrize("page", BOOK_PAGES, ids=rel)
def test_inline_math_is_not_cut_by_a_list_marker(page: Path) -> None:
    assert not broken_inline_math(page.read_text(encoding="utf8"))


def test_the_inline_math_check_finds_a_cut_formula() -> None:
    cut = "We have $a = b\n+ c$ here.\n\n$$\nx\n- y\n$$\n"
    assert broken_inline_math(cut) == ["line 2: + c$ here."]
    assert not broken_inline_math("We have $a = b +\nc$ here.\n- a list item\n")
