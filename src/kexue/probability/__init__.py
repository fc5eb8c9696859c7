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
from kexue.probability.sampling import (
    bigram_log_probs,
    distinct_n,
    sample_chain,
    top_k_filter,
    top_p_filter,
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
    "bigram_log_probs",
    "c4",
    "convolve_numerically",
    "distinct_n",
    "expectation_iid",
    "gaussian_classifier",
    "gaussian_regression",
    "jackknife",
    "kernel_density",
    "log_variance_bias",
    "mean_and_error",
    "pooled_covariance",
    "sample_chain",
    "smooth_abs",
    "smooth_floor",
    "smooth_max",
    "smooth_relu",
    "smooth_step",
    "step_smoothed_relu",
    "top_k_filter",
    "top_p_filter",
    "unbiased_std",
    "variance",
]
