"""What the wheel and the sdist may contain: the checks of scripts/dist_checks.py.

`make wheel-check` builds the real wheel and runs these checks on it (then installs it into a fresh
environment and uses it). Here they run on the package's own file list and on archive listings broken
on purpose, so a check that could never fail would be noticed; nothing is built.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from dist_checks import (
    ROOT,
    license_files,
    package_problems,
    project_dependencies,
    sdist_problems,
    source_files,
    wheel_problems,
)

INFO = "kexue-0.1.0.dist-info"


def metadata(root: Path = ROOT, **fields: str) -> str:
    """A METADATA file as setuptools writes it for this project (fields may be overridden)."""
    values = {
        "Metadata-Version": "2.4",
        "Name": "kexue",
        "Version": "0.1.0",
        "License-Expression": "MIT",
        "License-File": " ".join(license_files(root)),
        "Requires-Python": ">=3.10",
        "Description-Content-Type": "text/markdown",
    } | fields
    lines = [f"{key}: {value}" for key, value in values.items() if value]
    lines += [f"Requires-Dist: {d}" for d in project_dependencies(root)]
    return "\n".join(lines) + "\n\n" + (root / "README.md").read_text(encoding="utf-8")


def wheel_names(root: Path = ROOT) -> list[str]:
    info = [f"{INFO}/{n}" for n in ("METADATA", "WHEEL", "RECORD")]
    return (
        source_files(root)
        + info
        + [f"{INFO}/licenses/{n}" for n in license_files(root)]
    )


def test_every_folder_of_modules_is_a_package() -> None:
    assert package_problems() == []


def test_the_package_files_cover_every_part() -> None:
    files = source_files()
    parts = {f.split("/")[1] for f in files if f.count("/") == 2}
    assert {"foundations", "positions", "attention", "generative", "graphs"} <= parts
    assert "kexue/__init__.py" in files and not any("__pycache__" in f for f in files)


def test_a_wheel_of_the_package_passes() -> None:
    assert wheel_problems(wheel_names(), metadata()) == []


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("tests/test_data.py", "outside the package"),
        ("chapters/positions/rope.md", "the book's or the tests' file"),
        ("kexue/__pycache__/data.cpython-311.pyc", "a cache"),
        ("benchmarks/rope.py", "outside the package"),
    ],
)
def test_a_wheel_with_foreign_files_fails(extra: str, expected: str) -> None:
    problems = wheel_problems([*wheel_names(), extra], metadata())
    assert any(extra in p and expected in p for p in problems), problems


def test_a_wheel_missing_a_module_or_metadata_fails() -> None:
    names = [n for n in wheel_names() if n != "kexue/positions/rope.py"]
    problems = wheel_problems(names, metadata(**{"License-Expression": ""}))
    assert any("kexue/positions/rope.py: in src/ but not" in p for p in problems)
    assert "METADATA has no License-Expression" in problems
    wrong = wheel_problems(wheel_names(), metadata(Name="kexue-book"))
    assert any("Name is 'kexue-book'" in p for p in wrong), wrong
    assert wheel_problems(source_files(), "") == ["the wheel has no .dist-info folder"]


def test_a_wheel_without_its_readme_or_dependencies_fails() -> None:
    text = metadata().split("\n\n")[0] + "\n\nA different description.\n"
    assert "METADATA's long description is not README.md" in wheel_problems(
        wheel_names(), text
    )
    if project_dependencies():  # Python 3.11 and newer read pyproject.toml
        bare = "\n".join(
            line
            for line in metadata().split("\n")
            if not line.startswith("Requires-Dist")
        )
        assert any(
            "does not require torch" in p for p in wheel_problems(wheel_names(), bare)
        )


def test_the_typed_marker_and_licence_must_ship(tmp_path: Path) -> None:
    """A copy of the project with py.typed and a LICENSE: a wheel without them fails."""
    (tmp_path / "src" / "kexue").mkdir(parents=True)
    (tmp_path / "src" / "kexue" / "__init__.py").write_text("")
    (tmp_path / "src" / "kexue" / "py.typed").write_text("")
    (tmp_path / "LICENSE").write_text("MIT License\n")
    (tmp_path / "README.md").write_text("# kexue\n")
    (tmp_path / "pyproject.toml").write_bytes((ROOT / "pyproject.toml").read_bytes())
    text = metadata(tmp_path, **{"License-File": ""})  # as if setuptools forgot it
    problems = wheel_problems(["kexue/__init__.py", f"{INFO}/METADATA"], text, tmp_path)
    assert "kexue/py.typed: in src/ but not in the wheel" in problems
    assert f"LICENSE is not in the wheel's {INFO}/licenses/" in problems
    assert "METADATA has no License-File: LICENSE" in problems
    names = [*source_files(tmp_path), f"{INFO}/METADATA", f"{INFO}/licenses/LICENSE"]
    fixed = text.replace(
        "License-Expression: MIT", "License-Expression: MIT\nLicense-File: LICENSE"
    )
    assert wheel_problems(names, fixed, tmp_path) == []


def test_a_folder_of_modules_without_init_is_reported(tmp_path: Path) -> None:
    (tmp_path / "src" / "kexue" / "newpart").mkdir(parents=True)
    (tmp_path / "src" / "kexue" / "__init__.py").write_text("")
    (tmp_path / "src" / "kexue" / "newpart" / "topic.py").write_text("")
    problems = package_problems(tmp_path)
    assert (
        len(problems) == 1
        and "src/kexue/newpart has modules but no __init__.py" in problems[0]
    )


def test_the_sdist_holds_the_sources_and_not_the_book() -> None:
    top = ["PKG-INFO", "pyproject.toml", "README.md", *license_files()]
    good = ["kexue-0.1.0/" + n for n in top]
    good += [f"kexue-0.1.0/src/{f}" for f in source_files()]
    assert sdist_problems(good) == []
    broken = [n for n in good if not n.endswith("README.md")] + [
        "kexue-0.1.0/chapters/a.md"
    ]
    problems = sdist_problems(broken)
    assert "README.md: not in the sdist" in problems
    assert "kexue-0.1.0/chapters/a.md: the book's file in the sdist" in problems
