"""kexue.sequences.hippo: the matrices, the O(N) matvec, discretisations against scipy, online memory."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.signal import cont2discrete
from scipy.special import eval_legendre

from kexue.sequences.hippo import (
    METHODS,
    discretize,
    lagt,
    legendre_projection,
    legs,
    legs_matvec,
    legs_memory,
    legs_solve,
    legt,
    legt_memory,
    reconstruct,
)


def test_legs_entries_and_spectrum() -> None:
    A, B = legs(4)
    assert A[2, 0].item() == pytest.approx(-math.sqrt(5 * 1))
    assert A[3, 1].item() == pytest.approx(-math.sqrt(7 * 3))
    assert torch.diagonal(A).tolist() == [-1.0, -2.0, -3.0, -4.0]
    assert torch.all(torch.triu(A, diagonal=1) == 0)
    assert B.tolist() == pytest.approx([math.sqrt(2 * (2 * n + 1)) for n in range(4)])
    eigenvalues = torch.linalg.eigvals(legs(12)[0]).real.sort().values
    torch.testing.assert_close(
        eigenvalues, -torch.arange(12, 0, -1, dtype=torch.float64)
    )


def test_legt_entries_and_window() -> None:
    A, B = legt(3, window=2.0)
    for n in range(3):
        for k in range(3):
            sign = 1 if k < n else (-1) ** (n - k)
            assert A[n, k].item() == pytest.approx(
                -math.sqrt((2 * n + 1) * (2 * k + 1)) * sign / 2
            )
    assert B.tolist() == pytest.approx(
        [math.sqrt(2 * (2 * n + 1)) / 2 for n in range(3)]
    )


def test_s4_conventions() -> None:
    """S4's legt is window 2 and its B is this B / sqrt(2); LegS A is shared."""
    A, B = legt(5, window=2.0)
    n = torch.arange(5, dtype=torch.float64)
    r = torch.sqrt(2 * n + 1)
    s4_A = (
        -0.5
        * r[:, None]
        * r[None, :]
        * torch.where(
            n[:, None] >= n[None, :], 1.0, (-1.0) ** (n[:, None] - n[None, :])
        )
    )
    torch.testing.assert_close(A, s4_A)
    torch.testing.assert_close(B / math.sqrt(2), 0.5 * r)


def test_lagt() -> None:
    A, B = lagt(3)
    assert A.tolist() == [[-0.5, 0.0, 0.0], [-1.0, -0.5, 0.0], [-1.0, -1.0, -0.5]]
    assert B.tolist() == [1.0, 1.0, 1.0]


def test_matvec_equals_dense(device: torch.device) -> None:
    for N in (1, 2, 7, 64):
        A, _ = legs(N)
        v = torch.randn(5, N, dtype=torch.float64, device=device)
        torch.testing.assert_close(legs_matvec(v), v @ A.to(device).T)


def test_matvec_weights_cached_in_inference_mode_still_take_gradients() -> None:
    N = 37  # a size no other test uses: the first call fills the cache
    with torch.inference_mode():
        legs_matvec(torch.randn(2, N, dtype=torch.float64))
    v = torch.randn(2, N, dtype=torch.float64, requires_grad=True)
    legs_matvec(v).sum().backward()
    A, _ = legs(N)
    torch.testing.assert_close(v.grad, A.sum(0).expand(2, N))


@pytest.mark.parametrize("method", METHODS)
def test_discretisations_against_scipy(method: str) -> None:
    A, B = legt(6, window=1.5)
    names = {
        "forward": "euler",
        "backward": "backward_diff",
        "bilinear": "bilinear",
        "zoh": "zoh",
    }
    A_bar, B_bar = discretize(A, B, 0.05, method=method)
    ref = cont2discrete(
        (A.numpy(), B.numpy()[:, None], np.eye(6), np.zeros((6, 1))),
        0.05,
        method=names[method],
    )
    torch.testing.assert_close(A_bar, torch.from_numpy(ref[0]), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(
        B_bar, torch.from_numpy(ref[1][:, 0]), rtol=1e-10, atol=1e-12
    )


def test_discretize_is_batched_over_steps() -> None:
    A, B = legs(4)
    steps = torch.tensor([0.1, 0.2, 0.5], dtype=torch.float64)
    A_bar, B_bar = discretize(A, B, steps, method="zoh")
    assert A_bar.shape == (3, 4, 4) and B_bar.shape == (3, 4)
    torch.testing.assert_close(A_bar[1], torch.matrix_exp(0.2 * A))


def test_zoh_handles_a_singular_matrix() -> None:
    A = torch.zeros(2, 2, dtype=torch.float64)
    A_bar, B_bar = discretize(A, torch.ones(2, dtype=torch.float64), 0.3, method="zoh")
    torch.testing.assert_close(A_bar, torch.eye(2, dtype=torch.float64))
    torch.testing.assert_close(B_bar, torch.full((2,), 0.3, dtype=torch.float64))


def test_legs_memory_tracks_the_projection() -> None:
    """After 2000 samples of a smooth signal, the coefficients match the projection of the history."""
    length, N = 2000, 6
    t = torch.arange(1, length + 1, dtype=torch.float64)
    signal = torch.sin(6 * t / length) + t / length
    coeffs = legs_memory(signal[None], N)[0, -1]
    s = torch.linspace(-1, 1, 20001, dtype=torch.float64)
    history = torch.sin(6 * (s + 1) / 2) + (s + 1) / 2
    expected = torch.stack(
        [
            torch.trapezoid(
                history
                * math.sqrt((2 * n + 1) / 2)
                * torch.from_numpy(eval_legendre(n, s.numpy())),
                s,
            )
            for n in range(N)
        ]
    )
    torch.testing.assert_close(coeffs, expected, atol=5e-3, rtol=0)


def test_legt_memory_reconstructs_the_window() -> None:
    dt, window = 0.01, 1.0
    t = torch.arange(0, 4, dt, dtype=torch.float64)
    coeffs = legt_memory(torch.sin(3 * t)[None], 12, window=window, dt=dt)[0, -1]
    s = torch.linspace(-1, 1, 50, dtype=torch.float64)
    times = t[-1] - window + (s + 1) * window / 2
    assert (reconstruct(coeffs, s) - torch.sin(3 * times)).abs().max() < 2e-2


def test_reconstruct_inverts_the_basis() -> None:
    s = torch.linspace(-1, 1, 7, dtype=torch.float64)
    for n in range(5):
        coeffs = torch.zeros(5, dtype=torch.float64)
        coeffs[n] = 1.0
        expected = math.sqrt((2 * n + 1) / 2) * torch.from_numpy(
            eval_legendre(n, s.numpy())
        )
        torch.testing.assert_close(reconstruct(coeffs, s), expected)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="N must be a positive int"):
        legs(0)
    with pytest.raises(ValueError, match="window must be"):
        legt(4, window=0.0)
    with pytest.raises(ValueError, match="method must be one of"):
        discretize(*legs(3), 0.1, method="rk4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="step must be positive"):
        discretize(*legs(3), -0.1)
    with pytest.raises(ValueError, match="need A"):
        discretize(torch.zeros(3, 2), torch.zeros(3), 0.1)
    with pytest.raises(ValueError, match="batch, length"):
        legs_memory(torch.zeros(5), 4)


def test_legendre_projection_against_scipy_quad() -> None:
    """Gauss-Legendre against adaptive quadrature (scipy.integrate.quad), float64."""
    from scipy.integrate import quad

    def u(t):
        return torch.sin(3 * t) + t / 2

    got = legendre_projection(u, 2.0, 1.0, 8)
    expected = [
        quad(
            lambda x, n=n: (
                (math.sin(3 * (2.0 + (x + 1) / 2)) + (2.0 + (x + 1) / 2) / 2)
                * math.sqrt((2 * n + 1) / 2)
                * eval_legendre(n, x)
            ),
            -1,
            1,
            limit=200,
            epsabs=1e-13,
            epsrel=1e-12,
        )[0]
        for n in range(8)
    ]
    torch.testing.assert_close(
        got, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12
    )


def test_legendre_projection_is_exact_for_polynomials_and_inverts_reconstruct() -> None:
    coeffs = torch.tensor([0.5, -1.0, 2.0, 0.25], dtype=torch.float64)
    got = legendre_projection(
        lambda t: reconstruct(coeffs, 2 * t - 1), 0.0, 1.0, 6, nodes=5
    )
    expected = torch.cat([coeffs, torch.zeros(2, dtype=torch.float64)])
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-14)


def test_legendre_projection_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="nodes must be"):
        legendre_projection(torch.sin, 0.0, 1.0, 4, nodes=0)
    with pytest.raises(ValueError, match="width must be positive"):
        legendre_projection(torch.sin, 0.0, -1.0, 4)
    with pytest.raises(
        ValueError, match=r"u must map times .* to values of the same shape"
    ):
        legendre_projection(lambda t: t.sum(), 0.0, 1.0, 4)


@pytest.mark.parametrize("lam", [0.01, 0.3, 2.0])
def test_legs_solve_against_a_dense_solve(device: torch.device, lam: float) -> None:
    torch.manual_seed(1)
    A = legs(24)[0].to(device)
    v = torch.randn(3, 24, dtype=torch.float64, device=device)
    dense = torch.linalg.solve(
        torch.eye(24, dtype=torch.float64, device=device) - lam * A, v.T
    ).T
    torch.testing.assert_close(legs_solve(v, lam), dense, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="singular"):
        legs_solve(v, -0.5)
    with pytest.raises(TypeError, match="v must have a floating dtype"):
        legs_solve(torch.ones(3, dtype=torch.int64), 0.1)


def test_legs_memory_schemes(device: torch.device) -> None:
    """The exact scheme keeps a constant exactly; all schemes approach the projection."""
    constant = torch.ones(2, 40, dtype=torch.float64, device=device)
    exact = legs_memory(constant, 6, scheme="exact")[:, -1].cpu()
    expected = torch.zeros(6, dtype=torch.float64)
    expected[0] = math.sqrt(2)
    torch.testing.assert_close(exact, expected.expand(2, 6), rtol=0, atol=1e-12)
    length = 4000
    held = torch.arange(length, dtype=torch.float64) + 0.5  # midpoints of [k, k + 1)
    u = torch.sin(6 * held / length)[None].to(device)
    target = legendre_projection(lambda t: torch.sin(6 * t / length), 0.0, length, 8)
    for scheme, tolerance in (("s4", 2e-3), ("article", 2e-3), ("exact", 1e-6)):
        last = legs_memory(u, 8, scheme=scheme)[0, -1].cpu()
        assert (last - target).abs().max().item() < tolerance, scheme
    with pytest.raises(ValueError, match="scheme"):
        legs_memory(u, 8, scheme="euler")
