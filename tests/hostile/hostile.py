"""The hostile-input suite: what every public name of ``kexue`` must survive.

A case is one small adversarial input to one public name (``target``, as users import it:
``"kexue.attention.scaled_attention"``) with what must happen, checked by ``run(device)``
against an independent float64 reference or an expected named error. Cases live in
``cases_<group>.py`` files as a list ``CASES``; ``test_hostile.py`` runs them all on every
device and fails for a public name that has no case.

``kind`` says what a case checks, for the tallies: ``error`` (a named ``ValueError`` or
``TypeError``), ``value`` (agrees with a reference), ``finite`` (no NaN/inf where the exact
answer is finite), ``empty`` (empty in, empty out), ``grad`` (gradients), ``device``
(views, devices, ``meta`` tensors) and ``bound`` (memory and caches stay bounded).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import torch

KINDS = ("error", "value", "finite", "empty", "grad", "device", "bound")

# What users import: the top-level helpers, each part, and the top-level modules.
SURFACES = (
    "kexue",
    "kexue.attention",
    "kexue.foundations",
    "kexue.positions",
    "kexue.probability",
    "kexue.representations",
    "kexue.sequences",
    "kexue.graphs",
    "kexue.generative",
    "kexue.book",
    "kexue.data",
    "kexue.measure",
    "kexue.symbolic",
    "kexue.tasks",
    "kexue.training",
)


@dataclass(frozen=True)
class Case:
    target: str  # the public name, e.g. "kexue.attention.scaled_attention"
    what: str  # a few words: the input and the expected outcome
    kind: str
    run: Callable[[torch.device], None]
    cuda: bool = True  # False: a CPU-only case (it says why in ``what``)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def id(self) -> str:
        return f"{self.target.removeprefix('kexue.')}: {self.what}"


class Registry(list):
    """A group's cases, filled by the decorator ``case`` and the helper ``error``.

    ``CASES = Registry("kexue.")`` in a ``cases_<group>.py``; a target is then written
    without its prefix (``case("probability.variance", ...)``)."""

    def __init__(self, prefix: str = "kexue.") -> None:
        super().__init__()
        self.prefix = prefix

    def case(
        self, target: str, what: str, kind: str, *, cuda: bool = True
    ) -> Callable[[Callable[[torch.device], None]], Callable]:
        """Register the decorated ``run(device)`` as a case of ``prefix + target``."""

        def register(run: Callable[[torch.device], None]) -> Callable:
            self.append(Case(self.prefix + target, what, kind, run, cuda))
            return run

        return register

    def error(
        self, target: str, what: str, kind: type[Exception], names: str, call
    ) -> None:
        """A case: ``call(device)`` raises ``kind`` with a message naming ``names``."""
        self.append(
            Case(
                self.prefix + target,
                what,
                "error",
                lambda device: expect_error(kind, names, lambda: call(device)),
            )
        )


def public_names() -> list[str]:
    """Every public name of every surface, as ``"surface.name"`` (``__version__`` aside)."""
    names = []
    for surface in SURFACES:
        module = importlib.import_module(surface)
        names += [f"{surface}.{n}" for n in module.__all__ if not n.startswith("__")]
    return sorted(names)


def resolve(target: str) -> object:
    surface, _, name = target.rpartition(".")
    return getattr(importlib.import_module(surface), name)


def expect_error(kind: type[Exception], names: str, fn: Callable[[], object]) -> None:
    """``fn()`` raises ``kind`` (exactly a ValueError or TypeError, not a subclass from
    deep inside torch) whose message matches the regex ``names`` (the argument's name)."""
    with pytest.raises(Exception) as info:
        fn()
    error = info.value
    assert type(error) is kind, (
        f"expected {kind.__name__}, got {type(error).__name__}: {error}"
    )
    assert re.search(names, str(error)), f"{str(error)!r} does not name {names!r}"


def close(
    out: torch.Tensor, ref: torch.Tensor, *, atol: float, rtol: float = 0.0
) -> None:
    """``out`` agrees with the float64 reference ``ref`` (compared in float64, on the CPU)."""
    assert isinstance(out, torch.Tensor), f"expected a tensor, got {type(out).__name__}"
    assert out.shape == ref.shape, f"shape {tuple(out.shape)} != {tuple(ref.shape)}"
    out64, ref64 = out.detach().double().cpu(), ref.detach().double().cpu()
    assert torch.isfinite(out64).all() == torch.isfinite(ref64).all(), (
        "non-finite values"
    )
    torch.testing.assert_close(out64, ref64, atol=atol, rtol=rtol)


def finite(*tensors: torch.Tensor) -> None:
    for t in tensors:
        assert torch.isfinite(t).all(), "NaN or inf where the exact answer is finite"


def softmax_attention64(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    keep: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Softmax attention in float64 by the definition, as a loop over query rows; a row
    with no visible key gives zeros. ``keep``: boolean, True = attend; ``bias``: added."""
    q, k, v = (t.detach().double().cpu() for t in (q, k, v))
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logits = q @ k.transpose(-1, -2) * scale
    if bias is not None:
        logits = logits + bias.double().cpu()
    if keep is not None:
        logits = logits.masked_fill(~keep.cpu(), -torch.inf)
    out = torch.zeros(*logits.shape[:-1], v.shape[-1], dtype=torch.float64)
    flat_l, flat_o = logits.reshape(-1, logits.shape[-1]), out.view(-1, v.shape[-1])
    flat_v = v.expand(*logits.shape[:-2], *v.shape[-2:]).reshape(-1, *v.shape[-2:])
    rows = logits.shape[-2]
    for r in range(flat_l.shape[0]):
        row = flat_l[r]
        if torch.isinf(row).all() and (row < 0).all():
            continue  # nothing to attend: zeros
        w = torch.exp(row - row.max())
        flat_o[r] = (w / w.sum()) @ flat_v[r // rows]
    return out


def odd_view(*shape: int, device: torch.device, dtype=torch.float32) -> torch.Tensor:
    """A contiguous tensor of ``shape`` that starts at an odd storage offset."""
    n = 1
    for s in shape:
        n *= s
    base = torch.randn(n + 1, device=device, dtype=dtype)
    return base[1:].view(*shape)


def all_cases(modules: Iterator) -> list[Case]:
    return [case for module in modules for case in module.CASES]
