"""``build_flow_model(config)``: a MAF, CVAE or CVAE+ posterior from a JSON-able dict.

    {"kind": "maf" | "cvae" | "cvae_plus" | "iaf", "features": 5, "context_shape": [1, 1024],
     "embedding": {"kind": "flatten"} | {"kind": "conv", "features": 128, ...}
                  | {"kind": "resnet1d", "depth": 7, "width": 100, ...},          # optional, default flatten
     ...kind options (defaults = the paper's 5-d settings, ``DEFAULTS``)}

MAF option ``phase``: ``{"index": k, "low": a, "period": P, "copies": c}`` (``phase.PeriodicSymmetry``, in the
model's standardised units) makes feature k periodic with a P / c shift symmetry; ``gwpe train flow`` fills it in
for phi0 from ``flows.phase_symmetry``. Strain-8d CVAE+ (paper sec. IV):
``{"latent": 16, "transforms": 10, "iaf_context": 16, "frozen_prior": true}``.
``support`` (any kind; ``support.ParameterSupport``'s config, null for none): the model is built on the prior's
support, wrapped in ``SupportedPosterior``; packages saved without it load unbounded, as they were trained.
The returned module carries ``config`` (all defaults filled in), so state dict + ``json.dumps(model.config)``
rebuild it without pickle.
"""

from __future__ import annotations

import copy

from torch import nn

from gwpe.config import FLOW_OPTIONS
from gwpe.models.flows.cvae import CVAE, CVAEPlus
from gwpe.models.flows.embedding import build_embedding
from gwpe.models.flows.gnpe import GNPEPosterior, ProxyEmbedding
from gwpe.models.flows.iaf import IAFPosterior
from gwpe.models.flows.maf import MAFPosterior
from gwpe.models.flows.support import ParameterSupport, SupportedPosterior, check_support

# the paper's settings, from the typed config (the one place defaults live); "phase" is filled in by training
DEFAULTS: dict[str, dict] = {kind: model().model_dump() for kind, model in FLOW_OPTIONS.items()}
DEFAULTS["maf"]["phase"] = None
CLASSES = {"maf": MAFPosterior, "cvae": CVAE, "cvae_plus": CVAEPlus, "iaf": IAFPosterior}


def resolve_config(config: dict) -> dict:
    """Fill in defaults and check keys; raises ValueError naming what is wrong."""
    config = copy.deepcopy(dict(config))
    kind = config.pop("kind", None)
    if kind not in DEFAULTS:
        raise ValueError(f"flow kind = {kind!r}; allowed: {', '.join(DEFAULTS)}")
    for key in ("features", "context_shape"):
        if key not in config:
            raise ValueError(f"flow config needs {key!r}")
    resolved = {
        "kind": kind,
        "features": int(config.pop("features")),
        "context_shape": [int(s) for s in config.pop("context_shape")],
        "embedding": config.pop("embedding", None) or {"kind": "flatten"},
        "support": check_support(config.pop("support")) if config.get("support") else None,
        "gnpe": check_gnpe(config.pop("gnpe")) if config.get("gnpe") else None,
    }
    config.pop("support", None)
    config.pop("gnpe", None)
    options = DEFAULTS[kind]
    unknown = sorted(set(config) - set(options))
    if unknown:
        raise ValueError(f"unknown {kind} options {unknown}; allowed: {sorted(options)}")
    resolved.update({**copy.deepcopy(options), **config})
    return resolved


GNPE_KEYS = ("index", "mean", "std", "kernel", "reference", "sample_rate", "iterations", "low", "high", "init")


def check_gnpe(config: dict) -> dict:
    """The ``gnpe`` option (``gnpe.GNPEPosterior``'s proxy plus ``init``: the init flow's transforms, hidden,
    embedding); ValueError naming a missing key or a non-positive kernel."""
    config = copy.deepcopy(dict(config))
    missing = [key for key in GNPE_KEYS if key not in config]
    if missing:
        raise ValueError(f"gnpe config needs {missing}")
    if not float(config["kernel"]) > 0:
        raise ValueError(f"gnpe kernel = {config['kernel']}; allowed: > 0 seconds")
    return config


def build_gnpe(resolved: dict, embedding: nn.Module, options: dict) -> GNPEPosterior:
    """GNPE on t_c (``gnpe.GNPEPosterior``): the configured model on (shifted strain, t^) through a
    ``ProxyEmbedding``, t_c's column replaced by t_c - t^ on [-kernel, kernel]; a small MAF init network on t_c's
    prior range. Both on the prior's support when ``support`` is given."""
    gnpe, shape, support = resolved["gnpe"], resolved["context_shape"], resolved["support"]
    k, kernel = int(gnpe["index"]), float(gnpe["kernel"])
    proxied = ProxyEmbedding(embedding, shape, proxies=1)
    inner = CLASSES[resolved["kind"]](resolved["features"], proxied.features, embedding=proxied, **options)
    init_options = dict(gnpe["init"])
    init_embedding = build_embedding(shape, init_options.pop("embedding", None))
    init = MAFPosterior(
        1,
        init_embedding.features,
        transforms=int(init_options.get("transforms", 3)),
        hidden=tuple(init_options.get("hidden", (128, 128))),
        embedding=init_embedding,
    )
    if support is not None:
        relative = copy.deepcopy(support)
        relative["mean"][k] = 0.0
        relative["pieces"] = [p for p in relative["pieces"] if p.get("index") != k]
        relative["pieces"].append({"kind": "interval", "index": k, "low": -kernel, "high": kernel})
        inner = SupportedPosterior(inner, ParameterSupport(relative))
        init = SupportedPosterior(
            init,
            ParameterSupport(
                {
                    "parameters": [support["parameters"][k]],
                    "mean": [float(gnpe["mean"])],
                    "std": [float(gnpe["std"])],
                    "pieces": [{"kind": "interval", "index": 0, "low": gnpe["low"], "high": gnpe["high"]}],
                }
            ),
        )
    return GNPEPosterior(inner, init, gnpe)


def build_flow_model(config: dict) -> nn.Module:
    """The posterior model for ``config`` (see module doc); its ``config`` attribute is the resolved dict."""
    resolved = resolve_config(config)
    embedding = build_embedding(resolved["context_shape"], resolved["embedding"])
    fixed = ("kind", "features", "context_shape", "embedding", "support", "gnpe")
    options = {k: v for k, v in resolved.items() if k not in fixed}
    for key in ("hidden", "flow_hidden"):
        if key in options:
            options[key] = tuple(options[key])
    if resolved["gnpe"] is not None:
        model = build_gnpe(resolved, embedding, options)
        model.config = resolved
        return model
    model = CLASSES[resolved["kind"]](resolved["features"], embedding.features, embedding=embedding, **options)
    if resolved["support"] is not None:
        if len(resolved["support"]["parameters"]) != resolved["features"]:
            count = len(resolved["support"]["parameters"])
            raise ValueError(f"support has {count} parameters; features = {resolved['features']}")
        model = SupportedPosterior(model, ParameterSupport(resolved["support"]))
    model.config = resolved
    return model
