"""book/_ext/kexue_book.py: the notebook cache keyed on the library, script de-duplication, MathJax."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
from book_checks import ROOT
from sphinx.builders.html._assets import _JavaScript

spec = importlib.util.spec_from_file_location(
    "kexue_book", ROOT / "book" / "_ext" / "kexue_book.py"
)
kexue_book = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kexue_book)


@pytest.fixture
def book(tmp_path: Path) -> SimpleNamespace:
    """A minimal book tree and a stand-in for the Sphinx application that the hook reads."""
    (tmp_path / "src" / "kexue").mkdir(parents=True)
    (tmp_path / "src" / "kexue" / "module.py").write_text("x = 1\n")
    (tmp_path / "requirements.txt").write_text("torch==2.13.*\n")
    (tmp_path / "chapters").mkdir()
    (tmp_path / "chapters" / "a.md").write_text("# A\n")
    config = SimpleNamespace(nb_execution_mode="cache", nb_execution_cache_path="")
    app = SimpleNamespace(
        outdir=str(tmp_path / "_build" / "html"), srcdir=str(tmp_path), config=config
    )
    cache = tmp_path / "_build" / ".jupyter_cache"
    return SimpleNamespace(root=tmp_path, app=app, cache=cache)


def fill_cache(cache: Path) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "executed.ipynb").write_text("{}")


def test_source_hash_follows_the_library_not_the_chapters(
    book: SimpleNamespace,
) -> None:
    before = kexue_book.source_hash(book.root)
    (book.root / "chapters" / "a.md").write_text("# A, edited\n")
    assert (
        kexue_book.source_hash(book.root) == before
    )  # jupyter-cache itself tracks the chapters
    (book.root / "src" / "kexue" / "module.py").write_text("x = 2\n")
    assert kexue_book.source_hash(book.root) != before


def test_source_hash_follows_the_benchmark_results(book: SimpleNamespace) -> None:
    before = kexue_book.source_hash(book.root)
    results = book.root / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "cpu.json").write_text(
        "{}"
    )  # the appendix plots these files: new results, new outputs
    assert kexue_book.source_hash(book.root) != before


def test_cache_is_kept_until_the_library_changes(
    book: SimpleNamespace,
) -> None:
    kexue_book.key_cache_on_library(
        book.app, book.app.config
    )  # first build: records the key
    fill_cache(book.cache)
    kexue_book.key_cache_on_library(book.app, book.app.config)
    assert (book.cache / "executed.ipynb").is_file()
    assert book.app.config._kexue_library_changed is False

    (book.root / "src" / "kexue" / "module.py").write_text("x = 3\n")
    kexue_book.key_cache_on_library(book.app, book.app.config)
    assert not book.cache.exists()
    assert book.app.config._kexue_library_changed is True


def test_a_cache_without_a_recorded_key_is_not_trusted(book: SimpleNamespace) -> None:
    fill_cache(book.cache)  # e.g. left by a build made before the key existed
    kexue_book.key_cache_on_library(book.app, book.app.config)
    assert not book.cache.exists()


def test_other_execution_modes_are_left_alone(book: SimpleNamespace) -> None:
    book.app.config.nb_execution_mode = "force"
    fill_cache(book.cache)
    kexue_book.key_cache_on_library(book.app, book.app.config)
    assert (book.cache / "executed.ipynb").is_file()


def test_duplicate_inline_scripts_are_dropped() -> None:
    body = "const THEBE_JS_URL = 1"
    scripts = [
        _JavaScript(None, body=body),
        _JavaScript("a.js"),
        _JavaScript("", body=body),
        _JavaScript("a.js"),
    ]
    context = {"script_files": scripts}
    kexue_book.drop_duplicate_scripts(None, "page", "page.html", context, None)
    assert [
        (s.filename, s.attributes.get("body")) for s in context["script_files"]
    ] == [
        (None, body),
        ("a.js", None),
    ]


def test_mathjax_is_available_offline() -> None:
    assert (kexue_book.mathjax_source() / "tex-mml-chtml.js").is_file()
    for item in kexue_book.MATHJAX_FILES:
        assert (kexue_book.mathjax_source() / item).exists(), item


# --- library code without docstrings ---------------------------------------------------------------


def test_strip_docstrings_keeps_the_code_and_drops_every_docstring() -> None:
    source = '''    def method(self, x):
        """One line.

        More lines.
        """
        y = x + 1  # "not a docstring"
        return y
'''
    assert (
        kexue_book.strip_docstrings(source)
        == """    def method(self, x):
        y = x + 1  # "not a docstring"
        return y
"""
    )


def test_strip_docstrings_in_a_class_and_its_methods() -> None:
    source = '''class A:
    """Doc."""

    x: int = 1

    def f(self):
        """Only a docstring."""
'''
    assert (
        kexue_book.strip_docstrings(source)
        == "class A:\n    x: int = 1\n\n    def f(self):\n        ...\n"
    )


def test_strip_docstrings_leaves_code_without_docstrings_alone() -> None:
    source = "def f(x):\n    return 'text'\n"
    assert kexue_book.strip_docstrings(source) == source


# --- the claims ledger ------------------------------------------------------------------------------


def claim(verdict: str, text: str = "c", **extra: object) -> dict:
    return {
        "claim": text,
        "source": "s",
        "measured": "m",
        "verdict": verdict,
        "why": "w",
        **extra,
    }


def test_claims_are_read_from_the_json_bundle_of_a_notebook() -> None:
    notebook = {
        "cells": [
            {"cell_type": "markdown"},
            {"cell_type": "code", "outputs": [{"output_type": "stream", "text": "x"}]},
            {
                "cell_type": "code",
                "outputs": [
                    {
                        "data": {
                            "text/markdown": "| Claim |",
                            kexue_book.CLAIMS_MIME: {"claims": [claim("partly")]},
                        }
                    }
                ],
            },
        ]
    }
    assert kexue_book.claims_of_notebook(notebook) == [claim("partly")]
    assert kexue_book.claims_of_notebook({"cells": []}) == []


def test_the_ledger_totals_and_groups_by_verdict() -> None:
    chapters = {
        "chapters/b": {
            "title": "B",
            "claims": [claim("reproduced", "b1"), claim("contradicted", "b2")],
        },
        "chapters/a": {
            "title": "A",
            "claims": [claim("reproduced", "a1", rests_on="a-eq")],
        },
    }
    text = kexue_book.ledger_markdown(chapters, ["chapters/a", "chapters/b"])
    lines = text.splitlines()
    assert (
        lines[0]
        == "3 claims from 2 chapters: 2 reproduced, 0 partly, 1 contradicted, 0 not tested."
    )
    assert "| {doc}`/chapters/a` | 1 | 0 | 0 | 0 | 1 |" in lines
    assert "| {doc}`/chapters/b` | 1 | 0 | 1 | 0 | 2 |" in lines
    assert lines.index("| {doc}`/chapters/a` | 1 | 0 | 0 | 0 | 1 |") < lines.index(
        "| {doc}`/chapters/b` | 1 | 0 | 1 | 0 | 2 |"
    )  # book order, not alphabetical
    assert (
        "## Reproduced (2)" in lines
        and "## Contradicted (1)" in lines
        and "## Partly (0)" in lines
    )
    assert any(
        "{doc}`A </chapters/a>`, claim 1: a1 (s, {eq}`a-eq`)" in line for line in lines
    )
    assert any(
        "{doc}`B </chapters/b>`, claim 2: b2" in line and "**contradicted**: w" in line
        for line in lines
    )


# --- parts numbered from their order ----------------------------------------------------------------


def test_parts_made_of_chapters_are_numbered_in_order() -> None:
    from sphinx_external_toc.parsing import parse_toc_yaml

    site_map = parse_toc_yaml(ROOT / "_toc.yml")
    config = SimpleNamespace(external_site_map=site_map)
    kexue_book.number_parts(None, config)
    captions = [tree.caption for tree in site_map[site_map.root.docname].subtrees]
    assert captions[:3] == ["Before you start", "Foundations", "Part I · Positions"]
    assert "Part II · Attention" in captions
    assert "Appendix" in captions and "Back matter" in captions
    numbered = [c for c in captions if c.startswith("Part ")]
    assert [c.split(" · ")[0] for c in numbered] == [
        f"Part {r}" for r in kexue_book.ROMAN[: len(numbered)]
    ]


# --- figures get their caption as alt text ----------------------------------------------------------


def test_a_figure_without_alt_text_gets_its_caption() -> None:
    from docutils import nodes

    doctree = nodes.section()
    named = nodes.figure(
        "",
        nodes.image(uri="a.png", alt="a.png"),
        nodes.caption(text="Loss  falls\nto zero."),
    )
    kept = nodes.figure(
        "", nodes.image(uri="b.png", alt="A real description"), nodes.caption(text="B")
    )
    doctree += [named, kept]
    kexue_book.alt_text_from_captions(None, doctree)
    assert named.children[0]["alt"] == "Loss falls to zero."
    assert kept.children[0]["alt"] == "A real description"


# --- one execution: the chapter test's notebooks rendered from the cache ---------------------------

CHAPTER_MD = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A chapter

```{code-cell} ipython3
print(1)
```
"""


def executed_chapter(book: SimpleNamespace, stamp: str) -> Path:
    """The chapter as conftest.py leaves it in _build/.executed after its test ran."""
    import jupytext
    import nbformat

    source = book.root / "chapters" / "one.md"
    source.write_text(CHAPTER_MD)
    notebook = jupytext.read(source)
    notebook.cells[-1].outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="1\n")
    ]
    notebook.cells[-1].execution_count = 1
    notebook.metadata["kexue"] = {"source": "chapters/one.md", "source_hash": stamp}
    target = book.root / "_build" / kexue_book.EXECUTED_DIR / "chapters" / "one.ipynb"
    target.parent.mkdir(parents=True)
    nbformat.write(notebook, target)
    return source


def sphinx_app(book: SimpleNamespace) -> SimpleNamespace:
    (book.root / "_build" / "html").mkdir(parents=True, exist_ok=True)
    book.app.env = SimpleNamespace(doc2path=lambda doc: str(book.root / f"{doc}.md"))
    return book.app


def test_the_chapter_tests_execution_is_rendered_not_repeated(
    book: SimpleNamespace,
) -> None:
    executed_chapter(book, kexue_book.source_hash(book.root))
    app = sphinx_app(book)
    kexue_book.ingest_executed_notebooks(app)
    assert not (book.root / "_build" / kexue_book.EXECUTED_DIR).exists()
    notebook = kexue_book.executed_notebook(app, "chapters/one")
    assert [c.cell_type for c in notebook.cells] == [
        "markdown",
        "code",
    ]  # the whole chapter
    assert notebook.cells[1].outputs[0]["text"] == "1\n"


def test_an_execution_with_another_library_is_not_rendered(
    book: SimpleNamespace,
) -> None:
    executed_chapter(book, "a-library-since-changed")
    app = sphinx_app(book)
    kexue_book.ingest_executed_notebooks(app)
    notebook = kexue_book.executed_notebook(app, "chapters/one")
    assert not any(c.get("outputs") for c in notebook.get("cells", []))


def test_an_execution_of_code_since_edited_is_not_rendered(
    book: SimpleNamespace,
) -> None:
    source = executed_chapter(book, kexue_book.source_hash(book.root))
    source.write_text(CHAPTER_MD.replace("print(1)", "print(2)"))
    app = sphinx_app(book)
    kexue_book.ingest_executed_notebooks(app)
    notebook = kexue_book.executed_notebook(app, "chapters/one")
    assert not any(c.get("outputs") for c in notebook.get("cells", []))
