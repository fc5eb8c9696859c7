"""kexue.probability.smoothing against numerical convolution, torch's own activations and extreme inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kexue.probability.smoothing import (
    KERNELS,
    convolve_numerically,
    smooth_abs,
    smooth_floor,
    smooth_max,
    smooth_relu,
    smooth_step,
    step_smoothed_relu,
)
from kexue.probability.smoothing import (
    kernel_density as library_density,
)


def kernel_density(kernel: str, u: torch.Tensor, width: float) -> torch.Tensor:
    z = u / width
    if kernel == "gaussian":
        return torch.exp(-0.5 * z * z) / (math.sqrt(2 * math.pi) * width)
    return torch.sigmoid(z) * torch.sigmoid(-z) / width


def convolve(f, kernel: str, x: torch.Tensor, width: float) -> torch.Tensor:
    """int f(y) phi(x - y) dy by the trapezoid rule on a fine grid (independent of the closed forms)."""
    y = torch.linspace(
        -60 * width + x.min().item(),
        60 * width + x.max().item(),
        400_001,
        dtype=torch.float64,
    )
    weights = kernel_density(kernel, x[:, None] - y[None, :], width)
    return torch.trapezoid(f(y)[None, :] * weights, y, dim=-1)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("width", [0.3, 1.0])
def test_relu_and_step_match_numerical_convolution(kernel: str, width: float) -> None:
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    # the trapezoid rule's error at the kink is about phi * h^2 / 4 with h = 3e-4: a few 1e-9
    torch.testing.assert_close(
        smooth_relu(x, width, kernel=kernel),
        convolve(F.relu, kernel, x, width),
        atol=2e-8,
        rtol=0,
    )
    heaviside = lambda y: (y > 0).double()  # noqa: E731
    # at the jump the trapezoid rule is only first order: error up to about h * max(phi) / 2 = 2e-4
    torch.testing.assert_close(
        smooth_step(x, width, kernel=kernel),
        convolve(heaviside, kernel, x, width),
        atol=3e-4,
        rtol=0,
    )


def test_step_smoothing_gives_torchs_gelu_and_silu(device: torch.device) -> None:
    x = torch.linspace(-8, 8, 1001, device=device, dtype=torch.float64)
    torch.testing.assert_close(step_smoothed_relu(x, 1.0), F.gelu(x))
    torch.testing.assert_close(step_smoothed_relu(x, 1.0, kernel="logistic"), F.silu(x))
    torch.testing.assert_close(
        smooth_relu(x, 0.5, kernel="logistic"), F.softplus(x, beta=2.0)
    )


@pytest.mark.parametrize("kernel", KERNELS)
def test_abs_max_are_built_from_relu(kernel: str) -> None:
    x = torch.linspace(-4, 4, 81, dtype=torch.float64)
    torch.testing.assert_close(
        smooth_abs(x, 0.2, kernel=kernel), 2 * smooth_relu(x, 0.2, kernel=kernel) - x
    )
    a, b = torch.randn(2, 50, dtype=torch.float64)
    assert (
        smooth_max(a, b, 1e-3, kernel=kernel) - torch.maximum(a, b)
    ).abs().max() < 1e-3
    assert (smooth_abs(x, 1e-3, kernel=kernel) - x.abs()).abs().max() < 2e-3


@pytest.mark.parametrize(
    ("kernel", "bound"),
    [("gaussian", 1 / math.sqrt(2 * math.pi)), ("logistic", math.log(2))],
)
def test_sup_error_is_linear_in_the_width(kernel: str, bound: float) -> None:
    x = torch.linspace(-10, 10, 200_001, dtype=torch.float64)
    for width in (1.0, 0.1, 0.01):
        error = (smooth_relu(x, width, kernel=kernel) - F.relu(x)).abs().max().item()
        assert error == pytest.approx(bound * width, rel=1e-9)  # attained at x = 0


def test_floor_numbers_from_the_article() -> None:
    values = smooth_floor(
        torch.tensor([3.2, 7.9], dtype=torch.float64), 0.1, lo=-5, hi=10
    )
    assert values.tolist() == pytest.approx([2.88, 7.27], abs=5e-3)
    sharp = smooth_floor(torch.tensor([-2.5, 0.5, 3.2, 7.9, 10.5]), 1e-3, lo=-5, hi=10)
    assert sharp.tolist() == pytest.approx([-3.0, 0.0, 3.0, 7.0, 10.0], abs=1e-6)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_extreme_inputs_stay_finite(
    kernel: str, dtype: torch.dtype, device: torch.device
) -> None:
    x = torch.tensor(
        [-1e4, -100.0, -1.0, 0.0, 1.0, 100.0, 1e4], dtype=dtype, device=device
    )
    for function in (smooth_relu, smooth_step, step_smoothed_relu, smooth_abs):
        out = function(x, 0.5, kernel=kernel)
        assert out.dtype == dtype and torch.isfinite(out).all(), function.__name__
    relu = smooth_relu(x, 0.5, kernel=kernel)
    assert (relu >= 0).all() and relu[-1].item() == pytest.approx(1e4, rel=1e-2)


@pytest.mark.parametrize("kernel", KERNELS)
def test_gradients(kernel: str) -> None:
    x = torch.linspace(-3, 3, 9, dtype=torch.float64, requires_grad=True)
    for function in (smooth_relu, smooth_step, step_smoothed_relu):
        assert torch.autograd.gradcheck(
            lambda t, f=function: f(t, 0.7, kernel=kernel), (x,)
        )
    # the derivative of the smoothed ReLU is the smoothed step
    (grad,) = torch.autograd.grad(smooth_relu(x, 0.7, kernel=kernel).sum(), x)
    torch.testing.assert_close(grad, smooth_step(x.detach(), 0.7, kernel=kernel))


def test_width_can_be_a_tensor() -> None:
    x = torch.zeros(3)
    widths = torch.tensor([0.5, 1.0, 2.0])
    torch.testing.assert_close(smooth_relu(x, widths), widths / math.sqrt(2 * math.pi))


@pytest.mark.parametrize("width", [0.0, -1.0, math.inf, math.nan])
def test_bad_width_is_rejected(width: float) -> None:
    with pytest.raises(ValueError, match=r"width must be (positive|a finite number)"):
        smooth_relu(torch.zeros(3), width)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="kernel must be one of"):
        smooth_step(torch.zeros(3), 1.0, kernel="cauchy")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        smooth_relu(torch.zeros(3, dtype=torch.long), 1.0)
    with pytest.raises(ValueError, match="lo <= 0 <= hi"):
        smooth_floor(torch.zeros(3), 0.1, lo=1, hi=5)
    with pytest.raises(TypeError, match=r"b must be a torch\.Tensor"):
        smooth_max(torch.zeros(3), 0.0, 1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_density_is_a_density_with_the_stated_width(kernel: str) -> None:
    u = torch.linspace(-60, 60, 600_001, dtype=torch.float64)
    density = library_density(u, 0.5, kernel=kernel)
    assert density.dtype == torch.float64
    assert torch.trapezoid(density, u).item() == pytest.approx(1.0, abs=1e-12)
    variance = torch.trapezoid(u * u * density, u).item()
    expected = 0.25 if kernel == "gaussian" else 0.25 * math.pi**2 / 3
    assert variance == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("kernel", KERNELS)
def test_convolve_numerically_against_the_test_reference(kernel: str) -> None:
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)
    grid = torch.linspace(-40, 40, 400_001, dtype=torch.float64)
    got = convolve_numerically(F.relu, x, 0.5, kernel=kernel, grid=grid)
    torch.testing.assert_close(got, convolve(F.relu, kernel, x, 0.5), atol=1e-8, rtol=0)
    identity = convolve_numerically(lambda y: y, x, 0.5, kernel=kernel, grid=grid)
    torch.testing.assert_close(identity, x, atol=1e-9, rtol=0)  # symmetric kernel


def test_convolve_numerically_rejects_bad_grids() -> None:
    x = torch.zeros(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="grid must have 1 dimensions"):
        convolve_numerically(F.relu, x, 1.0, grid=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="increasing"):
        convolve_numerically(F.relu, x, 1.0, grid=torch.tensor([0.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="width must be positive"):
        convolve_numerically(F.relu, x, -1.0, grid=torch.linspace(-1, 1, 5))
