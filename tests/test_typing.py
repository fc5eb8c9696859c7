"""Every public signature of ``kexue`` is fully annotated.

``make lint`` runs mypy (``disallow_untyped_defs``, ``disallow_incomplete_defs``) over
``src/kexue``; this test holds the same promise in ``make unit``, where no type checker
runs: each name in a module's ``__all__`` that is a function, and each public method of
each public class (``__init__``, ``__call__``, properties, static and class methods
included, from the class and its bases inside ``kexue``), annotates every parameter and
its return.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types
from collections.abc import Callable, Iterator

import pytest

import kexue

# Dunder methods whose signature the caller sees; other dunders (__repr__, __eq__, ...)
# and private names are checked by mypy only.
_PUBLIC_DUNDERS = ("__init__", "__call__")


def _modules() -> list[types.ModuleType]:
    names = [kexue.__name__] + [
        info.name for info in pkgutil.walk_packages(kexue.__path__, "kexue.")
    ]
    return [importlib.import_module(name) for name in sorted(names)]


def _public_methods(cls: type) -> Iterator[tuple[str, Callable[..., object]]]:
    """``(qualified name, function)`` for the public methods ``cls`` gets from
    ``kexue`` (its own and its kexue bases'; torch's are torch's business)."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("kexue"):
            continue
        for name, attribute in vars(klass).items():
            if name in seen or (name.startswith("_") and name not in _PUBLIC_DUNDERS):
                continue
            seen.add(name)
            if isinstance(attribute, staticmethod | classmethod):
                attribute = attribute.__func__
            elif isinstance(attribute, property):
                attribute = attribute.fget
            if inspect.isfunction(attribute):
                yield f"{klass.__qualname__}.{name}", attribute


def _targets() -> Iterator[tuple[str, Callable[..., object]]]:
    for module in _modules():
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if getattr(obj, "__module__", "").partition(".")[0] != "kexue":
                continue  # a re-export checks where it is defined, or is not ours
            if inspect.isclass(obj):
                for method, function in _public_methods(obj):
                    yield f"{obj.__module__}.{method}", function
            elif inspect.isfunction(inspect.unwrap(obj)):
                yield f"{obj.__module__}.{name}", obj


def missing_annotations(function: Callable[..., object]) -> list[str]:
    """The parameters of ``function`` without an annotation, and ``"return"`` when
    its return has none (``self`` and ``cls`` of a method need none)."""
    signature = inspect.signature(inspect.unwrap(function), eval_str=False)
    missing = [
        name
        for i, (name, parameter) in enumerate(signature.parameters.items())
        if parameter.annotation is inspect.Parameter.empty
        and not (i == 0 and name in ("self", "cls"))
    ]
    if signature.return_annotation is inspect.Signature.empty:
        missing.append("return")
    return missing


TARGETS = dict(_targets())


def test_the_walk_finds_the_public_api() -> None:
    """The walk is not empty by accident: it reaches functions, methods and
    constructors of every part."""
    parts = {name.split(".")[1] for name in TARGETS}
    assert {"attention", "positions", "foundations", "representations"} <= parts
    assert "kexue.positions.rope.apply_rope" in TARGETS
    assert any(name.endswith(".__init__") for name in TARGETS)
    assert any(name.endswith(".forward") for name in TARGETS)


def test_every_public_signature_is_annotated() -> None:
    unannotated = {
        name: missing
        for name, function in sorted(TARGETS.items())
        if (missing := missing_annotations(function))
    }
    assert not unannotated, (
        "public functions and methods with unannotated parameters or return "
        f"(name: what is missing): {unannotated}"
    )


def _typed(x: int, *, scale: float = 1.0) -> float:
    return x * scale


def _untyped_parameter(x, y: int) -> int:  # type: ignore[no-untyped-def]
    return y


def _untyped_return(x: int):  # type: ignore[no-untyped-def]
    return x


class _Model:
    def __init__(self, width: int) -> None:
        self.width = width

    def forward(self, x: float) -> float:
        return x

    @staticmethod
    def make(width: int) -> _Model:
        return _Model(width)


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        (_typed, []),
        (_untyped_parameter, ["x"]),
        (_untyped_return, ["return"]),
        (_Model.__init__, []),
        (_Model.forward, []),
        (_Model.make, []),
    ],
)
def test_the_check_sees_what_is_missing(
    function: Callable[..., object], expected: list[str]
) -> None:
    assert missing_annotations(function) == expected
