"""Turning SymPy results into torch functions, to check implementations against them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sympy as sp

__all__ = [
    "torch_function",
]


def torch_function(expr: sp.Expr, symbols: Sequence[sp.Symbol]) -> Callable:
    """``sympy.lambdify(symbols, expr, modules="torch")``, numeric constants evaluated.

    SymPy's torch printer writes constants such as ``sqrt(2)`` as ``torch.sqrt(2)``,
    which fails on a Python number; evaluating every numeric subexpression to a float
    first (17 digits) avoids that. Functions SymPy maps to torch (``exp``, ``erf``,
    ``erfc``, ``log``, trigonometric functions, ...) are kept as they are. The returned
    function takes tensors (or numbers) in the order of ``symbols``.
    """
    evaluated = expr.replace(
        lambda e: (
            e.is_number and not e.is_Integer and not e.is_Float
        ),  # sqrt(2), pi, 1/3, ... anywhere
        lambda e: sp.Float(sp.N(e, 17), 17),
    )
    return sp.lambdify(list(symbols), evaluated, modules="torch")
