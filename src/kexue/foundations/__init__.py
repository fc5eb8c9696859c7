"""Part 0 of the book: how the chapters work (``chapters/foundations``)."""

from kexue.foundations.conventions import (
    amplification,
    geometric_sum,
    geometric_sum_exact,
    geometric_sum_naive,
    ulps,
)
from kexue.foundations.masking import (
    as_sdpa_mask,
    causal_mask,
    keep_mask,
    lengths_to_mask,
    mask_to_bias,
    masked_max,
    masked_mean,
    masked_softmax,
    masked_sum,
    padded_bidirectional,
    reverse_padded,
    split_bidirectional,
)

__all__ = [
    "amplification",
    "as_sdpa_mask",
    "causal_mask",
    "geometric_sum",
    "geometric_sum_exact",
    "geometric_sum_naive",
    "keep_mask",
    "lengths_to_mask",
    "mask_to_bias",
    "masked_max",
    "masked_mean",
    "masked_softmax",
    "masked_sum",
    "padded_bidirectional",
    "reverse_padded",
    "split_bidirectional",
    "ulps",
]
