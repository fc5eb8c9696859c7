"""Part III of the book: probability and statistics (``chapters/probability``)."""

from kexue.probability.estimators import (
    c4,
    expectation_iid,
    jackknife,
    log_variance_bias,
    mean_and_error,
    unbiased_std,
    variance,
)
from kexue.probability.logistic_closed_form import (
    gaussian_classifier,
    gaussian_regression,
    pooled_covariance,
)
from kexue.probability.smoothing import (
    convolve_numerically,
    kernel_density,
    smooth_abs,
    smooth_floor,
    smooth_max,
    smooth_relu,
    smooth_step,
    step_smoothed_relu,
)

__all__ = [
    "c4",
    "convolve_numerically",
    "expectation_iid",
    "gaussian_classifier",
    "gaussian_regression",
    "jackknife",
    "kernel_density",
    "log_variance_bias",
    "mean_and_error",
    "pooled_covariance",
    "smooth_abs",
    "smooth_floor",
    "smooth_max",
    "smooth_relu",
    "smooth_step",
    "step_smoothed_relu",
    "unbiased_std",
    "variance",
]
