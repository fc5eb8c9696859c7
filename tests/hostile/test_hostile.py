"""Run every hostile-input case on every device; fail for a public name with no case."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
from hostile import Case, public_names

GROUPS = sorted(p.stem for p in Path(__file__).parent.glob("cases_*.py"))
CASES: list[Case] = [
    case for group in GROUPS for case in importlib.import_module(group).CASES
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case: Case, device: torch.device) -> None:
    if device.type == "cuda" and not case.cuda:
        pytest.skip("a CPU-only case")
    case.run(device)


def test_every_public_name_has_a_case() -> None:
    covered = {case.target for case in CASES}
    missing = sorted(set(public_names()) - covered)
    assert not missing, f"public names with no hostile-input case: {missing}"
    unknown = sorted(covered - set(public_names()))
    assert not unknown, f"cases for names that are not public: {unknown}"


def test_every_public_definition_is_listed() -> None:
    """A module's public function or class appears in its ``__all__`` and, for a part,
    in the part's: "public" means exactly these."""
    import inspect
    import pkgutil

    import kexue

    unlisted = []
    for info in pkgutil.walk_packages(kexue.__path__, "kexue."):
        if info.name.rpartition(".")[2].startswith("_"):
            continue
        module = importlib.import_module(info.name)
        listed = set(getattr(module, "__all__", ()))
        part = info.name.rpartition(".")[0]  # kexue.attention.linear: kexue.attention
        in_part = part != "kexue"
        part_listed = set(importlib.import_module(part).__all__) if in_part else listed
        for name, obj in vars(module).items():
            defined_here = getattr(obj, "__module__", None) == info.name
            if name.startswith("_") or not defined_here:
                continue
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if name not in listed or name not in part_listed:
                unlisted.append(f"{info.name}.{name}")
    assert not unlisted, f"public definitions missing from __all__: {unlisted}"
