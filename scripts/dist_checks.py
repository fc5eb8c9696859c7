"""Checks of the built distributions: what the wheel and the sdist of kexue contain.

Used by scripts/wheel_check.sh (``make wheel-check``) on the files ``python -m build`` wrote, and by
tests/test_wheel_contents.py, which runs the same checks on small archives broken on purpose. Each
check returns a list of problems (empty when the archive is fine).

    python scripts/dist_checks.py DIST_DIR    # checks DIST_DIR/*.whl and *.tar.gz, prints a summary
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "kexue"

#: Top-level folders of the repository that belong to the book or its tooling, never to the wheel.
NOT_SHIPPED = ("tests", "chapters", "benchmarks", "book", "scripts", "_build", ".venv")
#: Metadata fields a wheel must carry, with the value each must have (None: present, any value).
REQUIRED_METADATA = {
    "Name": PACKAGE,
    "License-Expression": "MIT",
    "Description-Content-Type": "text/markdown",
    "Requires-Python": None,
}


def source_files(root: Path = ROOT) -> list[str]:
    """The package's files under ``src/``, as the wheel names them (``kexue/...``): every module and
    ``py.typed`` (the marker that the package is typed, PEP 561), no caches."""
    src = root / "src"
    files = [
        p.relative_to(src).as_posix()
        for p in (src / PACKAGE).rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and (p.suffix in {".py", ".pyi"} or p.name == "py.typed")
    ]
    return sorted(files)


def package_problems(root: Path = ROOT) -> list[str]:
    """Folders of ``src/kexue`` holding modules but no ``__init__.py``: setuptools' package finder
    would leave them out of the wheel without a word."""
    src = root / "src" / PACKAGE
    folders = {p.parent for p in src.rglob("*.py") if "__pycache__" not in p.parts}
    return [
        f"{folder.relative_to(root)} has modules but no __init__.py, so the wheel would leave it out"
        for folder in sorted(folders)
        if not (folder / "__init__.py").is_file()
    ]


def license_files(root: Path = ROOT) -> list[str]:
    """The licence files at the repository's root that setuptools ships (``LICEN[CS]E*``, ...)."""
    patterns = ("LICEN[CS]E*", "COPYING*", "NOTICE*", "AUTHORS*")
    return sorted(
        {p.name for pattern in patterns for p in root.glob(pattern) if p.is_file()}
    )


def wheel_problems(names: list[str], metadata: str, root: Path = ROOT) -> list[str]:
    """Problems with a wheel whose archive holds ``names`` and whose ``METADATA`` reads ``metadata``."""
    problems = []
    info = next(
        (n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")), None
    )
    if info is None:
        return ["the wheel has no .dist-info folder"]
    for name in names:
        top = name.split("/")[0]
        if top not in {PACKAGE, info}:
            problems.append(
                f"{name}: outside the package (only {PACKAGE}/ and {info}/ belong)"
            )
        elif top == PACKAGE and (
            "__pycache__" in name or name.endswith((".pyc", ".ipynb"))
        ):
            problems.append(f"{name}: a cache or notebook in the package")
        if name.split("/")[0] in NOT_SHIPPED or name.endswith("conftest.py"):
            problems.append(f"{name}: the book's or the tests' file in the wheel")
    shipped = set(names)
    problems += [
        f"{f}: in src/ but not in the wheel"
        for f in source_files(root)
        if f not in shipped
    ]
    fields = Parser().parsestr(metadata)
    for key, value in REQUIRED_METADATA.items():
        if fields[key] is None:
            problems.append(f"METADATA has no {key}")
        elif value is not None and fields[key] != value:
            problems.append(f"METADATA {key} is {fields[key]!r}, not {value!r}")
    readme = (root / "README.md").read_text(encoding="utf-8")
    if fields.get_payload().strip() != readme.strip():
        problems.append("METADATA's long description is not README.md")
    requires = {
        r.split(";")[0].replace(" ", "") for r in fields.get_all("Requires-Dist") or []
    }
    for dependency in project_dependencies(root):
        if dependency.replace(" ", "") not in requires:
            problems.append(
                f"METADATA does not require {dependency} (pyproject.toml does)"
            )
    for licence in license_files(root):
        if f"{info}/licenses/{licence}" not in shipped:
            problems.append(f"{licence} is not in the wheel's {info}/licenses/")
        if licence not in (fields.get_all("License-File") or []):
            problems.append(f"METADATA has no License-File: {licence}")
    return problems


def sdist_problems(names: list[str], root: Path = ROOT) -> list[str]:
    """Problems with an sdist whose archive holds ``names`` (``kexue-<version>/...``)."""
    prefix = names[0].split("/")[0] if names else ""
    inside = {n.partition("/")[2] for n in names}
    expected = ["PKG-INFO", "pyproject.toml", "README.md"]
    expected += [f"src/{f}" for f in source_files(root)] + license_files(root)
    problems = [f"{f}: not in the sdist" for f in expected if f not in inside]
    problems += [
        f"{prefix}/{n}: the book's file in the sdist"
        for n in sorted(inside)
        if n.split("/")[0] in ("chapters", "benchmarks", "book", "_build", ".venv")
    ]
    return problems


def project_dependencies(root: Path = ROOT) -> list[str]:
    """``[project] dependencies`` of pyproject.toml (empty on Python 3.10, which has no tomllib)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: the comparison is skipped
        return []
    with open(root / "pyproject.toml", "rb") as file:
        return list(tomllib.load(file)["project"]["dependencies"])


def check(dist: Path, root: Path = ROOT) -> tuple[list[str], str]:
    """All problems of the one wheel and the one sdist in ``dist``, and a summary of the wheel."""
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        return [
            f"expected one wheel and one sdist in {dist}, found {wheels + sdists}"
        ], ""
    problems = package_problems(root)
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = wheel.namelist()
        metadata = next((n for n in names if n.endswith(".dist-info/METADATA")), None)
        text = wheel.read(metadata).decode() if metadata else ""
        unpacked = sum(i.file_size for i in wheel.infolist())
    problems += wheel_problems(names, text, root)
    with tarfile.open(sdists[0]) as sdist:
        problems += sdist_problems(
            [m.name for m in sdist.getmembers() if m.isfile()], root
        )
    modules = sum(n.endswith(".py") for n in names)
    typed = f"{PACKAGE}/py.typed" in names
    summary = (
        f"{wheels[0].name}: {wheels[0].stat().st_size / 1024:.0f} KiB "
        f"({unpacked / 1024:.0f} KiB unpacked), {len(names)} files: {modules} modules, "
        f"py.typed {'yes' if typed else 'no'}, "
        f"{len(names) - modules - typed} metadata files; "
        f"{sdists[0].name}: {sdists[0].stat().st_size / 1024:.0f} KiB"
    )
    return problems, summary


if __name__ == "__main__":
    problems, summary = check(Path(sys.argv[1]))
    for problem in problems:
        print(f"dist check: {problem}", file=sys.stderr)
    if summary:
        print(summary)
    sys.exit(1 if problems else 0)
