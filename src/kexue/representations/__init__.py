"""Part V of the book: representations (``chapters/representations``)."""

from kexue.representations.encoder import (
    BertEncoder,
    WordPieceTokenizer,
    encode_poolings,
    encode_sentences,
    load_minilm,
    mean_pool,
)
from kexue.representations.whitening import (
    Whitening,
    anisotropy,
    cosine_matrix,
    covariance_rank,
    fit_whitening,
    spearman,
)

__all__ = [
    "BertEncoder",
    "Whitening",
    "WordPieceTokenizer",
    "anisotropy",
    "cosine_matrix",
    "covariance_rank",
    "encode_poolings",
    "encode_sentences",
    "fit_whitening",
    "load_minilm",
    "mean_pool",
    "spearman",
]
