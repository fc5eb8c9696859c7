"""Part I of the book: position encodings (``chapters/positions``)."""

from kexue.positions.rope import (
    OneLayerAttention,
    RotaryEmbedding,
    apply_rope,
    decay_bound,
    lag_copy_batch,
    rope_angles,
    rope_cos_sin,
    rope_linear_attention,
)
from kexue.positions.rope2d import (
    MixedRotaryEmbedding2d,
    PatchAttention,
    additive_residual,
    apply_rope_2d,
    grid_coords,
    offset_share,
    symbol_above_task,
)
from kexue.positions.sinusoidal import (
    SinusoidalEmbedding,
    covariance_dominance,
    decay_integral,
    frequencies,
    power_decay_integral,
    relative_shift_matrix,
    share_explained_by_groups,
    sinusoidal_embedding,
    toeplitz_share,
)

__all__ = [
    "MixedRotaryEmbedding2d",
    "OneLayerAttention",
    "PatchAttention",
    "RotaryEmbedding",
    "SinusoidalEmbedding",
    "additive_residual",
    "apply_rope",
    "apply_rope_2d",
    "covariance_dominance",
    "decay_bound",
    "decay_integral",
    "frequencies",
    "grid_coords",
    "lag_copy_batch",
    "offset_share",
    "power_decay_integral",
    "relative_shift_matrix",
    "rope_angles",
    "rope_cos_sin",
    "rope_linear_attention",
    "share_explained_by_groups",
    "sinusoidal_embedding",
    "symbol_above_task",
    "toeplitz_share",
]
