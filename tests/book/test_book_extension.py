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
