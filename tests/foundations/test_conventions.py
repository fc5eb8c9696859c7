"""kexue.foundations.conventions: the geometric sum of the "How the chapters work" chapter.

References are independent of the code under test: mpmath at 50 digits for values, explicit term-by-term
summation for shapes and signs, and the derivative sum_k k r^(k-1) for gradients.
"""

from __future__ import annotations

import mpmath
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.foundations.conventions import (
    amplification,
    geometric_sum,
    geometric_sum_exact,
    geometric_sum_naive,
    ulps,
)

mpmath.mp.dps = 50


def exact(ratio: float, n: int) -> float:
    """S_n(r) to 50 digits, rounded to float64 once."""
    return float(mpmath.fsum(mpmath.mpf(ratio) ** k for k in range(n)))


def hard_ratios(dtype: torch.dtype) -> torch.Tensor:
    """Ratios near +-1 (where 1 - r^n cancels), across [-2, 2], and the special points."""
    h = torch.logspace(-8, 0, 60, dtype=torch.float64)
    grid = torch.linspace(-2, 2, 41, dtype=torch.float64)
    special = torch.tensor([0.0, 1.0, -1.0, 1e-30, -1e-30, 3.0, -3.0])
    return torch.cat([1 - h, 1 + h, -1 + h, -1 - h, grid, special]).to(dtype)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 10, 100, 1000])
@pytest.mark.parametrize(
    ("dtype", "max_eps"),
    [
        (torch.float64, 4.0),
        (torch.float32, 4.0),
        (torch.float16, 1.0),
        (torch.bfloat16, 1.0),
    ],
)
def test_within_a_few_ulps_of_the_exact_sum(
    n: int, dtype: torch.dtype, max_eps: float
) -> None:
    ratios = hard_ratios(dtype)
    got = geometric_sum(ratios, n)
    assert got.dtype == dtype
    ref = torch.tensor(
        [exact(r, n) for r in ratios.double().tolist()], dtype=torch.float64
    )
    representable = ref.abs() < torch.finfo(dtype).max
    assert torch.equal(
        torch.isinf(got), ~representable
    )  # overflow where, and only where, it must
    nonzero = representable & (ref != 0)
    rel = (got.double() - ref).abs()[nonzero] / ref.abs()[nonzero]
    # Measured: at most 2.0 eps (float64/32) and 0.5 eps (half types, computed in float32).
    worst = rel.max().item() if rel.numel() else 0.0  # n = 0: every sum is exactly 0
    assert worst <= max_eps * torch.finfo(dtype).eps
    assert torch.all(got[representable & (ref == 0)] == 0)


def test_naive_closed_form_loses_digits_near_one() -> None:
    """The failure the stable form exists for: float32, n = 1000, r = 1 - 2^-20."""
    ratio = torch.tensor([1 - 2.0**-20], dtype=torch.float32)
    ref = exact(ratio.item(), 1000)
    naive_error = abs(geometric_sum_naive(ratio, 1000).item() - ref) / ref
    stable_error = abs(geometric_sum(ratio, 1000).item() - ref) / ref
    assert naive_error > 1e3 * stable_error
    assert stable_error < 2 * torch.finfo(torch.float32).eps


def test_value_and_gradient_at_exactly_one() -> None:
    ratio = torch.ones(5, dtype=torch.float64, requires_grad=True)
    n = torch.tensor([0, 1, 2, 7, 100])
    value = geometric_sum(ratio, n)
    (grad,) = torch.autograd.grad(value.sum(), ratio)
    assert value.tolist() == [0.0, 1.0, 2.0, 7.0, 100.0]
    assert grad.tolist() == [0.0, 0.0, 1.0, 21.0, 4950.0]  # n(n-1)/2


@pytest.mark.parametrize("n", [0, 1, 2, 5, 40])
def test_gradient_matches_the_term_by_term_derivative(n: int) -> None:
    ratio = torch.tensor(
        [-1.5, -1.0, -0.3, 0.0, 1e-30, 0.7, 1.0, 1.0 + 1e-9, 1.2], dtype=torch.float64
    )
    ratio.requires_grad_(True)
    (grad,) = torch.autograd.grad(geometric_sum(ratio, n).sum(), ratio)
    expected = torch.stack(
        [sum(k * r ** (k - 1) for k in range(1, n)) + 0 * r for r in ratio.detach()]
    )
    torch.testing.assert_close(grad, expected, rtol=1e-6, atol=1e-12)


def test_gradcheck_away_from_the_special_points() -> None:
    ratio = torch.tensor(
        [-1.7, -0.9, 0.2, 0.99, 1.01, 1.6], dtype=torch.float64, requires_grad=True
    )
    assert torch.autograd.gradcheck(lambda r: geometric_sum(r, 9), (ratio,))


def test_broadcasts_ratio_against_n(device: torch.device) -> None:
    ratio = torch.tensor([[0.5], [-2.0], [1.0]], device=device)
    n = torch.arange(4, device=device)
    got = geometric_sum(ratio, n)
    assert got.shape == (3, 4)
    assert got.device.type == device.type
    expected = torch.tensor(
        [[0.0, 1.0, 1.5, 1.75], [0.0, 1.0, -1.0, 3.0], [0.0, 1.0, 2.0, 3.0]],
        device=device,
    )
    torch.testing.assert_close(got, expected)


def test_same_numbers_on_every_device(device: torch.device) -> None:
    ratios = hard_ratios(torch.float32)
    torch.testing.assert_close(
        geometric_sum(ratios.to(device), 333).cpu(), geometric_sum(ratios, 333)
    )


@settings(max_examples=200, deadline=None)
@given(
    ratio=st.floats(-1.5, 1.5, allow_nan=False),
    m=st.integers(0, 60),
    n=st.integers(0, 60),
)
def test_splitting_the_sum(ratio: float, m: int, n: int) -> None:
    """S_{m+n}(r) = S_m(r) + r^m S_n(r): the first m terms, then the rest factored by r^m."""
    r = torch.tensor(ratio, dtype=torch.float64)
    whole = geometric_sum(r, m + n)
    split = geometric_sum(r, m) + r**m * geometric_sum(r, n)
    scale = sum(abs(ratio) ** k for k in range(m + n)) + 1e-300
    assert abs(whole - split).item() <= 1e-13 * scale


@settings(max_examples=100, deadline=None)
@given(ratio=st.floats(-2.0, 2.0, allow_nan=False), n=st.integers(0, 50))
def test_one_more_term(ratio: float, n: int) -> None:
    """S_{n+1}(r) = 1 + r S_n(r)."""
    r = torch.tensor(ratio, dtype=torch.float64)
    lhs, rhs = geometric_sum(r, n + 1), 1 + r * geometric_sum(r, n)
    scale = sum(abs(ratio) ** k for k in range(n + 1))
    assert abs(lhs - rhs).item() <= 1e-13 * scale


@pytest.mark.parametrize(
    "ratio", [torch.tensor([1, 2]), torch.tensor([True]), [0.5], 0.5]
)
def test_ratio_must_be_a_floating_tensor(ratio: object) -> None:
    with pytest.raises(TypeError, match="ratio must be a real floating-point tensor"):
        geometric_sum(ratio, 3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "n", [2.0, torch.tensor([2.0]), torch.tensor([True]), True, "3"]
)
def test_n_must_be_integer_valued(n: object) -> None:
    with pytest.raises(TypeError, match="n must be"):
        geometric_sum(torch.tensor([0.5]), n)  # type: ignore[arg-type]


def test_negative_n_is_rejected() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        geometric_sum(torch.tensor([0.5, 0.25]), torch.tensor([3, -1]))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_mismatched_devices_are_rejected() -> None:
    with pytest.raises(ValueError, match="is on"):
        geometric_sum(torch.tensor([0.5], device="cuda"), torch.tensor([3]))


# --- the chapter's references: geometric_sum_exact, amplification, ulps ---------------


def test_exact_reference_matches_term_by_term_summation() -> None:
    ratios = torch.tensor([[-1.5], [-1.0], [0.0], [1 - 2.0**-20], [1.0], [1.25]])
    n = torch.tensor([0, 1, 7, 300])
    got = geometric_sum_exact(ratios, n)
    assert got.dtype == torch.float64 and got.shape == (6, 4)
    expected = torch.tensor(
        [[exact(r, m) for m in n.tolist()] for r in ratios.flatten().tolist()],
        dtype=torch.float64,
    )
    torch.testing.assert_close(got, expected, rtol=1e-15, atol=0.0)


def test_exact_reference_takes_the_binary_value_of_the_ratio() -> None:
    """float32(0.999) is not 0.999: the reference must sum the float32 number."""
    ratio = torch.tensor([0.999], dtype=torch.float32)
    got = geometric_sum_exact(ratio, 1000).item()
    assert got == pytest.approx(exact(float(ratio.item()), 1000), rel=1e-15)
    assert got != pytest.approx(exact(0.999, 1000), rel=1e-6)


def test_amplification_against_its_closed_form_and_limit() -> None:
    ratios = torch.tensor([0.5, 0.9, 1.5, -0.5, 1 - 1e-6, 1.0], dtype=torch.float64)
    got = amplification(ratios, 5)
    q = ratios[:5]
    torch.testing.assert_close(got[:5], (q**5 / (1 - q**5)).abs(), rtol=1e-9, atol=0)
    assert got[4].item() * 5 * 1e-6 == pytest.approx(1.0, rel=1e-5)  # ~ 1/(n h)
    assert got[5].item() == float("inf")
    assert amplification(torch.tensor([-1.0]), 4).item() == float("inf")


def test_ulps_counts_relative_error_in_machine_epsilons() -> None:
    exact_values = torch.tensor([1.0, 2.0, 0.0, 0.0], dtype=torch.float64)
    eps = torch.finfo(torch.float32).eps
    computed = torch.tensor([1 + eps, 2.0, 0.0, 1.0], dtype=torch.float32)
    assert ulps(computed, exact_values).tolist() == [1.0, 0.0, 0.0, float("inf")]


@pytest.mark.parametrize("fn", [geometric_sum_exact, amplification])
def test_references_reject_bad_arguments(fn) -> None:
    with pytest.raises(TypeError, match="ratio must be"):
        fn(torch.tensor([1, 2]), 3)
    with pytest.raises(ValueError, match="non-negative"):
        fn(torch.tensor([0.5]), -2)
    with pytest.raises(ValueError, match="digits"):
        fn(torch.tensor([0.5]), 2, digits=10)


def test_ulps_rejects_non_floating_input() -> None:
    with pytest.raises(TypeError, match="computed must be"):
        ulps(torch.tensor([1]), torch.tensor([1.0]))
    with pytest.raises(TypeError, match="exact must be"):
        ulps(torch.tensor([1.0]), [1.0])  # type: ignore[arg-type]
