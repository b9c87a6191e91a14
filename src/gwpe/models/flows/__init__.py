"""Normalizing-flow posteriors p(x | y) on zuko (Green, Gair & Messenger 2020): MAF, CVAE, CVAE+.

Domain-free: x has ``features`` dimensions, y is a context tensor mapped to a vector by an embedding. Every
model has ``log_prob(x, context)`` (exact for the MAF, the ELBO for CVAE/CVAE+), ``loss(x, context, epoch)``,
``sample(context, n)`` -> (n, *B, features) and ``parameter_groups``. No Lightning here.
"""

from gwpe.models.flows.annealing import annealed_kl, kl_weight
from gwpe.models.flows.batchnorm import BatchNormTransform, batchnorm_layers, set_batchnorm_statistics
from gwpe.models.flows.cvae import CVAE, CVAEPlus
from gwpe.models.flows.embedding import ConvEmbedding, FlattenEmbedding, build_embedding
from gwpe.models.flows.factory import build_flow_model, resolve_config
from gwpe.models.flows.fast_sampling import flow_inverse, made_inverse
from gwpe.models.flows.maf import MAFPosterior, build_maf

__all__ = [
    "BatchNormTransform",
    "CVAE",
    "CVAEPlus",
    "ConvEmbedding",
    "FlattenEmbedding",
    "MAFPosterior",
    "annealed_kl",
    "batchnorm_layers",
    "build_embedding",
    "build_flow_model",
    "build_maf",
    "flow_inverse",
    "kl_weight",
    "made_inverse",
    "resolve_config",
    "set_batchnorm_statistics",
]
