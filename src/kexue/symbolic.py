"""Turning SymPy results into torch functions, to check implementations against them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sympy as sp

__all__ = [
    "torch_function",
]


def torch_function(expr: sp.Expr, symbols: Sequence[sp.Symbol]) -> Callable[..., Any]:
    """``sympy.lambdify(symbols, expr, modules="torch")``, numeric constants evaluated.

    SymPy's torch printer writes constants such as ``sqrt(2)`` as ``torch.sqrt(2)``,
    which fails on a Python number; evaluating every numeric subexpression to a float
    first (17 digits) avoids that. Functions SymPy maps to torch (``exp``, ``erf``,
    ``erfc``, ``log``, trigonometric functions, ...) are kept as they are. The returned
    function takes tensors (or numbers) in the order of ``symbols``; it computes in
    their dtype and on their device, and returns a plain number for an expression
    without symbols.

    Raises:
        TypeError: ``expr`` is not a SymPy expression; ``symbols`` is not an ordered
            sequence (list, tuple) of SymPy symbols.
        ValueError: ``symbols`` repeats a symbol or misses one of ``expr``'s.
    """
    symbols = _symbols(expr, symbols)
    evaluated = expr.replace(
        lambda e: (
            e.is_number and not e.is_Integer and not e.is_Float
        ),  # sqrt(2), pi, 1/3, ... anywhere
        lambda e: sp.Float(sp.N(e, 17), 17),
    )
    return sp.lambdify(symbols, evaluated, modules="torch")


def _symbols(expr: object, symbols: object) -> list[sp.Symbol]:
    """Check ``torch_function``'s arguments; return ``symbols`` as a list."""
    if not isinstance(expr, sp.Basic):
        raise TypeError(f"expr must be a SymPy expression, got {type(expr).__name__}")
    if isinstance(symbols, str) or not isinstance(symbols, Sequence):
        raise TypeError(
            "symbols must be a list or tuple of SymPy symbols (in argument order), "
            f"got {type(symbols).__name__}"
        )
    symbols = list(symbols)
    for s in symbols:
        if not isinstance(s, sp.Symbol):
            raise TypeError(f"symbols must hold SymPy symbols, got {type(s).__name__}")
    if len(set(symbols)) != len(symbols):
        raise ValueError(f"symbols must not repeat a symbol, got {symbols}")
    missing = expr.free_symbols - set(symbols)
    if missing:
        names = ", ".join(sorted(str(s) for s in missing))
        raise ValueError(f"symbols misses {names}, which expr depends on")
    return symbols
