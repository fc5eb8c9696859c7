"""kexue.symbolic.torch_function: SymPy expressions with numeric constants, evaluated by torch."""

from __future__ import annotations

import math

import pytest
import sympy as sp
import torch

from kexue.symbolic import torch_function


def test_constants_such_as_sqrt_2_and_pi_work() -> None:
    x, w = sp.symbols("x w", positive=True)
    expr = sp.sqrt(2) * w * sp.exp(-(x**2)) / sp.sqrt(sp.pi) + sp.erf(x / sp.sqrt(2))
    f = torch_function(expr, (x, w))
    xs = torch.linspace(0, 3, 7, dtype=torch.float64)
    expected = torch.tensor(
        [
            math.sqrt(2) * 0.5 * math.exp(-(v**2)) / math.sqrt(math.pi)
            + math.erf(v / math.sqrt(2))
            for v in xs.tolist()
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(f(xs, torch.tensor(0.5, dtype=torch.float64)), expected)


def test_plain_lambdify_would_fail_on_the_same_expression() -> None:
    x = sp.Symbol("x")
    plain = sp.lambdify([x], sp.sqrt(2) * x, modules="torch")
    try:
        plain(torch.ones(2))
    except TypeError:
        pass
    else:  # pragma: no cover - a future SymPy may fix its printer; the helper stays correct either way
        return
    torch.testing.assert_close(
        torch_function(sp.sqrt(2) * x, [x])(torch.ones(2)),
        torch.full((2,), math.sqrt(2)),
    )


def test_arguments_are_checked_by_name() -> None:
    x, y = sp.symbols("x y")
    with pytest.raises(TypeError, match="expr must be a SymPy expression"):
        torch_function("x**2", [x])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="symbols must be a list or tuple"):
        torch_function(x**2, {x})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="symbols must hold SymPy symbols"):
        torch_function(x**2, ["x"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="symbols misses y"):
        torch_function(x * y, [x])
    with pytest.raises(ValueError, match="must not repeat"):
        torch_function(x, [x, x])
