"""The generative-models part of the book (``chapters/generative``)."""

from kexue.generative.common import (
    Decoder,
    Encoder,
    bernoulli_nll,
    gaussian_kl,
    mlp,
)
from kexue.generative.eae import (
    EntropicAutoencoder,
    eae_loss,
    knn_entropy,
    log_unit_ball_volume,
)
from kexue.generative.fvae import (
    AffineCoupling,
    RealNVP,
    fvae_loss,
    vae_loss,
)
from kexue.generative.simvq import (
    VectorQuantizer,
    codebook_usage,
    nearest_code,
    rotation_trick,
)
from kexue.generative.upsample_guidance import (
    ConvDenoiser,
    GaussianFieldDenoiser,
    avg_pool,
    cosine_alpha_sigma,
    ddim_sample,
    eps_loss,
    gaussian_field,
    matched_time,
    pool_rescale,
    upsample,
    upsample_guided_eps,
)
from kexue.generative.vmf_vae import (
    VMFVAE,
    VonMisesFisher,
    kl_to_uniform,
    vmf_log_normalizer,
    vmf_mean_cosine,
)
from kexue.generative.wgan import (
    MLPCritic,
    WassersteinGAN,
    c_transform,
    exact_w1,
    gradient_penalty,
    wasserstein_critic_estimate,
)

__all__ = [
    "VMFVAE",
    "AffineCoupling",
    "ConvDenoiser",
    "Decoder",
    "Encoder",
    "EntropicAutoencoder",
    "GaussianFieldDenoiser",
    "MLPCritic",
    "RealNVP",
    "VectorQuantizer",
    "VonMisesFisher",
    "WassersteinGAN",
    "avg_pool",
    "bernoulli_nll",
    "c_transform",
    "codebook_usage",
    "cosine_alpha_sigma",
    "ddim_sample",
    "eae_loss",
    "eps_loss",
    "exact_w1",
    "fvae_loss",
    "gaussian_field",
    "gaussian_kl",
    "gradient_penalty",
    "kl_to_uniform",
    "knn_entropy",
    "log_unit_ball_volume",
    "matched_time",
    "mlp",
    "nearest_code",
    "pool_rescale",
    "rotation_trick",
    "upsample",
    "upsample_guided_eps",
    "vae_loss",
    "vmf_log_normalizer",
    "vmf_mean_cosine",
    "wasserstein_critic_estimate",
]
