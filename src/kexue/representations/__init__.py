"""Part V of the book: representations (``chapters/representations``)."""

from kexue.representations.desensitized import (
    MaskedLanguageModel,
    frequency_rank_alignment,
    mlm_mask,
    permutation_cipher,
)
from kexue.representations.embedding_dimension import (
    cooccurrence,
    fit_log_bilinear,
    log_bilinear_cross_entropy,
    log_bilinear_entropy,
    min_dimension,
    pair_entropy,
)
from kexue.representations.encoder import (
    BertEncoder,
    WordPieceTokenizer,
    encode_poolings,
    encode_sentences,
    load_minilm,
    mean_pool,
)
from kexue.representations.globalpointer import (
    EfficientGlobalPointer,
    GlobalPointer,
    decode_spans,
    multilabel_categorical_crossentropy,
    nested_entity_task,
    span_f1,
)
from kexue.representations.jl_lemma import (
    distortion,
    gaussian_projection,
    jl_min_dim,
    randomized_svd,
    simhash,
    simhash_cosine,
)
from kexue.representations.lossless_scaling import (
    repeat_features,
    widen_bert,
    widen_embedding,
    widen_layer_norm,
    widen_linear,
)
from kexue.representations.simcse import (
    alignment,
    info_nce,
    simcse_loss,
    uniformity,
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
    "EfficientGlobalPointer",
    "GlobalPointer",
    "MaskedLanguageModel",
    "Whitening",
    "WordPieceTokenizer",
    "alignment",
    "anisotropy",
    "cooccurrence",
    "cosine_matrix",
    "covariance_rank",
    "decode_spans",
    "distortion",
    "encode_poolings",
    "encode_sentences",
    "fit_log_bilinear",
    "fit_whitening",
    "frequency_rank_alignment",
    "gaussian_projection",
    "info_nce",
    "jl_min_dim",
    "load_minilm",
    "log_bilinear_cross_entropy",
    "log_bilinear_entropy",
    "mean_pool",
    "min_dimension",
    "mlm_mask",
    "multilabel_categorical_crossentropy",
    "nested_entity_task",
    "pair_entropy",
    "permutation_cipher",
    "randomized_svd",
    "repeat_features",
    "simcse_loss",
    "simhash",
    "simhash_cosine",
    "span_f1",
    "spearman",
    "uniformity",
    "widen_bert",
    "widen_embedding",
    "widen_layer_norm",
    "widen_linear",
]
