"""Part II of the book: attention (``chapters/attention``)."""

from kexue.attention.entropy_normalization import (
    constant_entropy_sample,
    entropy_normalize,
    power_normalize,
)
from kexue.attention.entropy_scale import (
    SalientValueHead,
    attention_entropy,
    entropy_gap,
    entropy_invariant_scale,
    laplace_entropy_gap,
    scaled_attention,
    visible_keys,
)
from kexue.attention.fastformer import (
    FastformerAttention,
    FastformerBlock,
    SequenceClassifier,
    TokenRegressor,
    explicit_softmax_attention,
)
from kexue.attention.gau import (
    GatedAttentionUnit,
    relu2_attention,
)
from kexue.attention.linear import (
    OneLayerAttention,
    favor_features,
    linear_attention,
    orthogonal_gaussian,
    performer_attention,
    performer_relative_error,
)
from kexue.attention.nystrom import (
    NystromAttention,
    filter_factors,
    hyperpower_step,
    iterative_pinv,
    kmeans_landmarks,
    local_sequence,
    nystrom_attention,
    nystrom_factors,
    pinv_residuals,
    predicted_pinv_residuals,
    segment_landmarks,
    smooth_sequence,
    steps_to_tolerance,
)

__all__ = [
    "FastformerAttention",
    "FastformerBlock",
    "GatedAttentionUnit",
    "NystromAttention",
    "OneLayerAttention",
    "SalientValueHead",
    "SequenceClassifier",
    "TokenRegressor",
    "attention_entropy",
    "constant_entropy_sample",
    "entropy_gap",
    "entropy_invariant_scale",
    "entropy_normalize",
    "explicit_softmax_attention",
    "favor_features",
    "filter_factors",
    "hyperpower_step",
    "iterative_pinv",
    "kmeans_landmarks",
    "laplace_entropy_gap",
    "linear_attention",
    "local_sequence",
    "nystrom_attention",
    "nystrom_factors",
    "orthogonal_gaussian",
    "performer_attention",
    "performer_relative_error",
    "pinv_residuals",
    "power_normalize",
    "predicted_pinv_residuals",
    "relu2_attention",
    "scaled_attention",
    "segment_landmarks",
    "smooth_sequence",
    "steps_to_tolerance",
    "visible_keys",
]
