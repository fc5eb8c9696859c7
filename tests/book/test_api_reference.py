"""The API reference (book/api): it documents exactly the public surface, and every name in it.

The public surface of a part is its ``__all__``. The pages under book/api ask for a part's reference
with a ``kexue-api`` block, which book/_ext/kexue_book.py expands, before Sphinx reads the page, into
one autodoc entry per name of the part's ``__all__``. These tests expand the blocks the same way,
without building the book, and check that

* every name of every ``__all__`` in the package is documented on some page, and has a docstring;
* no module defines a public function or class that no ``__all__`` of its part lists;
* each module's section links to the chapter that derives it, and each chapter links back;
* the docstrings' ``Raises:`` sections name exceptions (napoleon would otherwise turn the prose
  into cross-references that the build, run with ``-n``, rejects).

The last tests run the checks on a package broken on purpose, so a check that could never fail
would be noticed.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import re
import sys
import types

import pytest
from book_checks import EXEMPT_PARTS, ROOT, split_sections, toc_files

import kexue

spec = importlib.util.spec_from_file_location(
    "kexue_book", ROOT / "book" / "_ext" / "kexue_book.py"
)
kexue_book = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kexue_book)

API_DIR = ROOT / "book" / "api"
AUTODOC = re.compile(r"^\.\. auto(?:function|class|data):: (\S+)$", re.M)
EXCEPTION_NAME = re.compile(r"^[A-Z]\w*(Error|Exception|Warning|Exit|Interrupt)$")


def api_pages() -> dict[str, list[str]]:
    """Each page of book/api (docname) and the parts it documents, in order."""
    return {
        f"book/api/{path.stem}": kexue_book.api_parts(path.read_text(encoding="utf8"))
        for path in sorted(API_DIR.glob("*.md"))
    }


def documented_parts() -> list[str]:
    return [part for parts in api_pages().values() for part in parts]


def public_modules(package: types.ModuleType = kexue) -> list[str]:
    """The package and every module under it whose path has no private component."""
    names = [package.__name__]
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not any(p.startswith("_") for p in info.name.split(".")):
            names.append(info.name)
    return names


def part_of(module: str, parts: list[str]) -> str | None:
    """The part a module belongs to: the longest documented part that is it or contains it."""
    owners = [p for p in parts if module == p or module.startswith(p + ".")]
    return max(owners, key=len) if owners else None


def documented_entries(part: str) -> list[str]:
    """The dotted names the part's generated reference hands to autodoc."""
    return AUTODOC.findall(kexue_book.api_markdown(part, ROOT))


def resolve(dotted: str) -> object:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def has_docstring(part: str, name: str) -> bool:
    """A class or function needs its own docstring (a class would otherwise inherit its base's);
    data needs a ``#:`` comment, which autodoc shows."""
    obj = getattr(importlib.import_module(part), name)
    if inspect.isclass(obj):
        return bool((obj.__dict__.get("__doc__") or "").strip())
    if callable(obj):
        return bool((getattr(obj, "__doc__", None) or "").strip())
    from sphinx.pycode import ModuleAnalyzer

    comments = ModuleAnalyzer.for_module(part).find_attr_docs()
    return any(line.strip() for line in comments.get(("", name), []))


def undeclared(module: types.ModuleType, part: types.ModuleType) -> list[str]:
    """Public functions and classes defined in ``module`` that ``part.__all__`` does not list."""
    listed = {id(getattr(part, n, None)) for n in getattr(part, "__all__", ())}
    return sorted(
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and obj.__module__ == module.__name__
        and id(obj) not in listed
    )


def bad_raises(obj: object) -> list[str]:
    """The ``Raises:`` entries of ``obj``'s docstring (and its methods') that do not name
    exceptions, as napoleon reads them."""
    from sphinx.ext.napoleon import Config
    from sphinx.ext.napoleon.docstring import GoogleDocstring

    targets = [obj]
    if inspect.isclass(obj):
        targets += [
            getattr(member, "__func__", member)
            for name, member in vars(obj).items()
            if not name.startswith("_")
        ]
    problems = []
    for target in targets:
        if inspect.isclass(target):
            doc = target.__dict__.get("__doc__")
        else:
            doc = getattr(target, "__doc__", None)
        if not isinstance(doc, str):
            continue
        lines = GoogleDocstring(inspect.cleandoc(doc), Config()).lines()
        for line in lines:
            match = re.match(r":raises (.*?):", line)
            if match:
                names = re.split(r"\s*,\s*|\s+or\s+", match.group(1).strip())
                if not all(EXCEPTION_NAME.match(n) for n in names):
                    name = getattr(target, "__qualname__", target)
                    problems.append(f"{name}: {match.group(1)!r}")
    return problems


# --- the pages ------------------------------------------------------------------------------------


def test_every_reference_page_is_in_the_toc_and_documents_a_part() -> None:
    listed = toc_files()
    for page, parts in api_pages().items():
        assert page in listed, f"{page}.md is not in _toc.yml"
        assert parts, f"{page}.md has no kexue-api block"
    parts = documented_parts()
    duplicated = sorted({p for p in parts if parts.count(p) > 1})
    assert not duplicated, f"parts documented on two pages: {duplicated}"


def test_every_part_of_the_package_has_a_page() -> None:
    parts = documented_parts()
    subpackages = [
        m
        for m in public_modules()
        if m.count(".") == 1 and hasattr(importlib.import_module(m), "__path__")
    ]
    missing = [m for m in ["kexue", *subpackages] if m not in parts]
    assert not missing, f"parts with no kexue-api block under book/api: {missing}"


# --- every name of every __all__ is documented, with a docstring -----------------------------------


def test_every_name_in_an_all_is_documented() -> None:
    parts = documented_parts()
    documented = {
        id(resolve(dotted)) for part in parts for dotted in documented_entries(part)
    }
    missing = []
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if id(obj) not in documented:
                missing.append(f"{module_name}.{name}")
    assert not missing, (
        "names in an __all__ that no reference page documents (list them in the __all__ "
        f"of their part, whose page walks it): {missing}"
    )


def test_the_reference_documents_each_part_exactly_as_its_all() -> None:
    for part in documented_parts():
        entries = documented_entries(part)
        expected = [f"{part}.{name}" for name in importlib.import_module(part).__all__]
        assert sorted(entries) == sorted(expected), part


@pytest.mark.parametrize("part", documented_parts())
def test_every_documented_name_has_a_docstring(part: str) -> None:
    bare = [
        n for n in importlib.import_module(part).__all__ if not has_docstring(part, n)
    ]
    assert not bare, f"names of {part}.__all__ without a docstring: {bare}"


@pytest.mark.parametrize("part", documented_parts())
def test_raises_sections_name_exceptions(part: str) -> None:
    package = importlib.import_module(part)
    problems = [p for n in package.__all__ for p in bad_raises(getattr(package, n))]
    assert not problems, (
        "Raises: entries must read `ExceptionName: why` (several: `TypeError, ValueError:`), "
        "continuation lines indented, one exception per entry:\n  "
        + "\n  ".join(problems)
    )


# --- the public surface: no public function or class outside every __all__ -----------------------


@pytest.mark.parametrize("module_name", public_modules())
def test_public_functions_and_classes_are_in_their_parts_all(module_name: str) -> None:
    part = part_of(module_name, documented_parts())
    assert part is not None, f"{module_name} belongs to no part that book/api documents"
    module = importlib.import_module(module_name)
    extra = undeclared(module, importlib.import_module(part))
    assert not extra, (
        f"{module_name} defines public names that {part}.__all__ does not list (list them, "
        f"or make them private with a leading underscore): {extra}"
    )


# --- links between the chapters and the reference ------------------------------------------------


def test_each_module_section_links_to_its_chapter() -> None:
    listed = set(toc_files())
    for part in documented_parts():
        text = kexue_book.api_markdown(part, ROOT)
        for module, _ in kexue_book.part_modules(part, ROOT):
            chapter = kexue_book.mirror_chapter(module)
            assert f"({kexue_book.api_label(module)})=" in text, module
            if chapter in listed:
                assert f"{{doc}}`/{chapter}`" in text, (
                    f"{module} does not link {chapter}"
                )


def test_each_chapter_links_to_its_reference_entry() -> None:
    missing = []
    for doc in toc_files():
        path = ROOT / f"{doc}.md"
        parts = doc.split("/")
        if parts[0] != "chapters" or parts[1] in EXEMPT_PARTS or not path.is_file():
            continue
        label = kexue_book.api_label("kexue." + ".".join(parts[1:]))
        implementation = [
            s for s in split_sections(path)[2] if s.title == "Implementation"
        ]
        text = "\n".join(m for s in implementation for m in s.markdown)
        if f"{{ref}}`{label}`" not in text:
            missing.append(doc)
    assert not missing, (
        "chapters whose Implementation section does not link its reference entry "
        f"({{ref}}`api-<part>-<topic>`): {missing}"
    )


# --- the checks, on a package broken on purpose --------------------------------------------------


@pytest.fixture
def broken_part(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """``fakepart`` with a module ``fakepart.topic`` that defines a listed, an unlisted and a
    private function, an undocumented class and a Raises: section written as prose."""
    part = types.ModuleType("fakepart")
    topic = types.ModuleType("fakepart.topic")
    source = '''
def listed(x):
    """Listed.

    Raises:
        TypeError / ValueError: as the checks say.
    """

def forgotten(x):
    """Not in __all__."""

def _private(x):
    pass

class Bare:
    pass
'''
    exec(compile(source, "fakepart/topic.py", "exec"), topic.__dict__)
    part.listed, part.Bare = topic.listed, topic.Bare
    part.__all__ = ["Bare", "listed"]
    monkeypatch.setitem(sys.modules, "fakepart", part)
    monkeypatch.setitem(sys.modules, "fakepart.topic", topic)
    return part


def test_an_unlisted_public_function_is_found(broken_part: types.ModuleType) -> None:
    topic = sys.modules["fakepart.topic"]
    assert undeclared(topic, broken_part) == ["forgotten"]


def test_a_class_without_its_own_docstring_is_found(
    broken_part: types.ModuleType,
) -> None:
    assert has_docstring("fakepart", "listed")
    assert not has_docstring("fakepart", "Bare")


def test_a_raises_section_in_prose_is_found(broken_part: types.ModuleType) -> None:
    assert bad_raises(broken_part.listed)
    assert not bad_raises(kexue.get_device)


def test_part_of_picks_the_innermost_part() -> None:
    parts = ["kexue", "kexue.positions", "kexue.book"]
    assert part_of("kexue.positions.rope", parts) == "kexue.positions"
    assert part_of("kexue.runtime", parts) == "kexue"
    assert part_of("kexue.book", parts) == "kexue.book"
    assert part_of("other", parts) is None
