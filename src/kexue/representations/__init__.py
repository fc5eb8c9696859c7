"""Part V of the book: representations (``chapters/representations``)."""

from kexue.representations.desensitized import (
    MaskedLanguageModel,
    frequency_rank_alignment,
    mlm_mask,
    permutation_cipher,
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
    "cosine_matrix",
    "covariance_rank",
    "decode_spans",
    "encode_poolings",
    "encode_sentences",
    "fit_whitening",
    "frequency_rank_alignment",
    "info_nce",
    "load_minilm",
    "mean_pool",
    "mlm_mask",
    "multilabel_categorical_crossentropy",
    "nested_entity_task",
    "permutation_cipher",
    "repeat_features",
    "simcse_loss",
    "span_f1",
    "spearman",
    "uniformity",
    "widen_bert",
    "widen_embedding",
    "widen_layer_norm",
    "widen_linear",
]
