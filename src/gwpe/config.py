"""Typed configuration: ``params.yaml`` (or any profile file) parsed into pydantic models.

Every model forbids unknown keys and is strict about types, so a typo or a quoted number fails before
any work starts, with one line naming the key, the value and what is allowed. No float anywhere (a field, an item
of a list, a value of a mapping) may be NaN or infinite (``.nan``/``.inf`` in YAML), so a range check such as
``min([nan, 4]) <= 0`` can never be slipped past.

The file is read strictly too: it must be UTF-8 text, and a key written twice in one mapping is an error naming
the key and both lines (PyYAML alone keeps the last value silently). YAML merge keys (``<<: *anchor``) may still be
overridden by the keys written beside them.

Missing sections and keys take the typed defaults below, which are never sized for paper scale where that means
data: ``h22.grid`` and ``h22.time`` default to the small default profile (``params.yaml``), so a profile without an
``h22`` section generates a few hundred waveforms, not the paper's 1,580,128 (757 GB); paper scale is always
written out (``experiments/paper.yaml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gwpe.errors import ConfigError

DEFAULT_PARAMS = "params.yaml"


class StrictModel(BaseModel):
    """Every config section: unknown keys and loose types fail, values are frozen, floats are finite (NaN and
    +-inf are refused in every float field, list item and mapping value)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class H22GridConfig(StrictModel):
    """The (q, s1z, s2z) training grid of Khan, Huerta & Das (sec. 2.1); validation/test use midpoints.

    Defaults: the default profile's coarse steps (dq 0.5, ds 0.2: 15 x 9 x 9 = 1,215 training waveforms), so a
    profile that leaves the grid out never gets paper scale by accident; the paper's steps (dq 0.08, ds 0.012:
    1,580,128 training waveforms) are written out in ``experiments/paper.yaml``."""

    q_min: float = Field(1.0, ge=1.0, le=10.0)
    q_max: float = Field(8.0, ge=1.0, le=10.0)
    dq: float = Field(0.5, gt=0.0, description="paper: 0.08")
    s_min: float = Field(-0.8, ge=-0.998, le=0.998)
    s_max: float = Field(0.8, ge=-0.998, le=0.998)
    ds: float = Field(0.2, gt=0.0, description="paper: 0.012")

    @model_validator(mode="after")
    def _ordered(self) -> "H22GridConfig":
        if self.q_max - self.q_min < self.dq:
            raise ValueError(f"q_max - q_min must be >= dq = {self.dq} (got q_min={self.q_min}, q_max={self.q_max})")
        if self.s_max - self.s_min < self.ds:
            raise ValueError(f"s_max - s_min must be >= ds = {self.ds} (got s_min={self.s_min}, s_max={self.s_max})")
        return self


class TimeGridConfig(StrictModel):
    """Uniform grid t/M in [t_start, t_end] with step dt; the amplitude peak of h22 sits at t = 0.

    Defaults: the default profile's 2,131 samples; the paper's span (t_start -10000, dt 0.1: 101,301 samples) is
    written out in ``experiments/paper.yaml``."""

    t_start: float = Field(-2000.0, lt=0.0, ge=-1.0e6, description="paper: -10000")
    t_end: float = Field(130.0, gt=0.0, le=400.0)
    dt: float = Field(1.0, gt=0.0, le=10.0, description="paper: 0.1")

    @property
    def length(self) -> int:
        return int(round((self.t_end - self.t_start) / self.dt)) + 1


class StoreConfig(StrictModel):
    """Zarr v3 store: one shard file per ``chunk_size`` waveforms, one compressed inner chunk per waveform."""

    root: str = "data/h22"
    chunk_size: int = Field(256, ge=1, le=1_000_000)
    compression_level: int = Field(5, ge=0, le=9)


class ComputeConfig(StrictModel):
    """Where generation runs: a Dask LocalCluster of ``workers`` processes, or an existing scheduler."""

    workers: int = Field(2, ge=0, le=4096, description="0 runs in-process without Dask")
    threads_per_worker: int = Field(1, ge=1, le=256)
    scheduler_address: str | None = None


class H22Config(StrictModel):
    """The l = m = 2 mode of aligned-spin binary black holes in geometric units.

    A profile without this section (or without ``grid``/``time``) gets the small default profile's grid and time
    axis, never the paper's (see ``H22GridConfig``)."""

    backend: Literal["imrphenomthm", "nrhybsur3dq8"] = "imrphenomthm"
    generation_dt: float = Field(1.0, gt=0.0, le=10.0)
    total_mass: float = Field(50.0, gt=1.0, le=1.0e4)
    surrogate_path: str | None = None
    grid: H22GridConfig = H22GridConfig()
    time: TimeGridConfig = TimeGridConfig()
    store: StoreConfig = StoreConfig()
    compute: ComputeConfig = ComputeConfig()


StrainParameter = Literal["m1", "m2", "phi0", "tc", "dL", "chi1z", "chi2z", "theta_jn", "ra", "dec", "psi"]


class StrainPriorConfig(StrictModel):
    """Prior ranges of Green et al. (2020), eqs. (22), and sec. IV for the spins."""

    mass_min: float = Field(35.0, gt=1.0, le=500.0)
    mass_max: float = Field(80.0, gt=1.0, le=500.0)
    distance_min: float = Field(1000.0, gt=0.0, le=1.0e5)
    distance_max: float = Field(3000.0, gt=0.0, le=1.0e5)
    tc_min: float = Field(0.65, ge=0.0)
    tc_max: float = Field(0.85, ge=0.0)
    chi_max: float = Field(1.0, ge=0.0, le=0.99999)

    @model_validator(mode="after")
    def _ordered(self) -> "StrainPriorConfig":
        for lo, hi in (("mass_min", "mass_max"), ("distance_min", "distance_max"), ("tc_min", "tc_max")):
            if getattr(self, lo) > getattr(self, hi):
                raise ValueError(f"{lo} = {getattr(self, lo)} must be <= {hi} = {getattr(self, hi)}")
        return self


class StrainDatasetConfig(StrictModel):
    """One strain dataset: which parameters are drawn and inferred, detectors, size and sampling."""

    parameters: list[StrainParameter] = Field(min_length=1)
    inferred: list[StrainParameter] | None = None
    detectors: list[Literal["H1", "L1", "V1"]] = Field(default_factory=list, description="empty: the '+' polarisation")
    n_signals: int = Field(ge=2, le=100_000_000)
    validation_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    sample_rate: float = Field(1024.0, ge=64.0, le=65536.0)
    duration: float = Field(1.0, gt=0.0, le=64.0)
    seed: int = Field(0, ge=0)
    prior: StrainPriorConfig = StrainPriorConfig()

    @model_validator(mode="after")
    def _consistent(self) -> "StrainDatasetConfig":
        if len(set(self.parameters)) != len(self.parameters):
            raise ValueError(f"parameters {self.parameters} contain duplicates")
        missing = [p for p in self.inferred or [] if p not in self.parameters]
        if missing:
            raise ValueError(f"inferred parameters {missing} are not among the drawn parameters {self.parameters}")
        if not {"m1", "m2"} <= set(self.parameters):
            raise ValueError("parameters must include m1 and m2")
        if self.prior.tc_max >= self.duration:
            raise ValueError(f"prior.tc_max = {self.prior.tc_max} must be < duration = {self.duration}")
        return self

    @property
    def inferred_parameters(self) -> list[str]:
        return list(self.inferred or self.parameters)


class StrainConfig(StrictModel):
    """Whitened detector strain (IMRPhenomPv2, aLIGO zero-detuned high-power PSD), one store per dataset."""

    approximant: Literal["IMRPhenomPv2"] = "IMRPhenomPv2"
    psd: Literal["aLIGOZeroDetHighPower"] = "aLIGOZeroDetHighPower"
    f_min: float = Field(20.0, gt=0.0)
    f_ref: float = Field(20.0, gt=0.0)
    reference_gps: float = Field(1126259462.0, gt=0.0, description="sets Earth's orientation for antenna patterns")
    psd_dir: str | None = Field(
        None,
        description="folder of measured PSDs ({detector}-psd.dat, written by `gwpe event prepare`) used instead of "
        "`psd` for every detector: the event profile whitens its training set with the event's noise",
    )
    store: StoreConfig = StoreConfig(root="data/strain", chunk_size=1024)
    compute: ComputeConfig = ComputeConfig()
    datasets: dict[str, StrainDatasetConfig] = Field(default_factory=dict)


class WaveNetModelConfig(StrictModel):
    """WaveNet root + leaves (Khan, Huerta & Das sec. 2.2); see ``gwpe.models.wavenet``."""

    channels: int = Field(16, ge=1, le=1024)
    skip_channels: int = Field(16, ge=1, le=1024)
    dilation_limit: int = Field(64, ge=1, le=1 << 16, description="dilation doubles 1, 2, 4, ... up to this")
    stacks: int = Field(1, ge=1, le=64, description="times the dilation stack is repeated")
    leaf_steps: int = Field(
        256, ge=1, le=1_000_000, description="last N time steps of the root output fed to the leaves"
    )
    leaf_hidden: int = Field(64, ge=1, le=65536)
    head: Literal["physics", "direct"] = "physics"
    spin_loss_weight: float = Field(
        0.0,
        ge=0.0,
        le=1000.0,
        description="physics head: weight of the spin-consistency "
        "term (spins solved from the predicted S_eff, sigma_eff at the true q); 0 = the paper's loss",
    )
    s_eff_scale: Literal["absolute", "mass_ratio"] = Field(
        "mass_ratio",
        description="physics head: the leaf predicts S_eff itself (absolute) or S_eff / (sigma_1 + sigma_2), "
        "its value in units of its range at that q (mass_ratio); see gwpe.models.wavenet",
    )


class TrainingConfig(StrictModel):
    """Optimisation and where it runs (Lightning Trainer arguments); domain-free."""

    batch_size: int = Field(32, ge=1, le=1 << 20)
    max_epochs: int = Field(10, ge=1, le=100_000)
    learning_rate: float = Field(1e-3, gt=0.0, le=10.0)
    seed: int = Field(0, ge=0)
    num_workers: int = Field(0, ge=0, le=256, description="DataLoader worker processes per rank")
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int | Literal["auto"] = "auto"
    num_nodes: int = Field(1, ge=1, le=100_000)
    strategy: Literal["auto", "ddp", "ddp_spawn", "fsdp"] = "auto"
    precision: Literal["32-true", "16-mixed", "bf16-mixed"] = "32-true"
    threads: int | None = Field(None, ge=1, le=1024, description="torch CPU threads (null: torch's default)")
    accumulate_grad_batches: int = Field(1, ge=1, le=65536, description="optimiser step every N batches")
    compile: bool = Field(False, description="torch.compile the model before training")
    optimizer: Literal["adam", "lamb"] = Field(
        "adam", description="lamb: pytorch-optimizer's LAMB, for large global batches"
    )
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="LAMB's decoupled weight decay")
    lr_scaling: Literal["none", "linear", "sqrt"] = Field(
        "none", description="scale learning_rate by global batch / reference_batch"
    )
    reference_batch: int = Field(32, ge=1, le=1 << 24, description="global batch that learning_rate was tuned at")
    warmup_epochs: float = Field(
        0.0, ge=0.0, le=10_000.0, description="linear learning-rate warm-up (in epochs of steps)"
    )
    in_memory: bool | None = Field(
        None,
        description="strain stores: hold each split in memory (a copy per loader worker); null: when it is at most "
        "1 GiB (gwpe.data.strain_dataset.IN_MEMORY_BYTES), else rows are read from the store (~2 ms each)",
    )

    def placement(self) -> set[str]:
        """Fields that say where training runs, not what it computes: a checkpoint resumes across them."""
        return {
            "accelerator",
            "devices",
            "num_nodes",
            "strategy",
            "threads",
            "num_workers",
            "precision",
            "compile",
            "in_memory",
        }

    def fingerprint_fields(self) -> dict:
        return self.model_dump(exclude=self.placement())


class WaveNetEvaluationConfig(StrictModel):
    """``gwpe evaluate wavenet``: batch size and the q slices of Figs. 8-11."""

    batch_size: int = Field(256, ge=1, le=1 << 20)
    q_slices: list[float] | None = Field(
        None, description="q values for the per-slice plots (null: 3 test q spread over the range)"
    )


class WaveNetSection(StrictModel):
    """The physics-inspired WaveNet regressor: model, training, evaluation, outputs and registry name."""

    model: WaveNetModelConfig = WaveNetModelConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: WaveNetEvaluationConfig = WaveNetEvaluationConfig()
    keep: Literal["best", "last"] = Field("best", description="save the lowest-validation-loss epoch, or the last")
    model_dir: str = "models/wavenet"
    checkpoint_dir: str = "checkpoints/wavenet"
    registered_name: str = Field("gwpe-wavenet", min_length=1)


class MAFOptions(StrictModel):
    """Masked autoregressive flow (Green et al. sec. III.B): ``transforms`` MADEs of ``hidden`` units."""

    transforms: int = Field(5, ge=1, le=1000)
    hidden: list[int] = Field(default_factory=lambda: [512, 512, 512], min_length=1)
    batchnorm: bool = Field(True, description="batch norm between the transforms (the paper's MAF)")
    momentum: float = Field(0.1, gt=0.0, le=1.0, description="batch-norm running-statistics momentum")


class CVAEOptions(StrictModel):
    """Conditional VAE with Gaussian encoder, decoder and prior networks of ``hidden`` units."""

    latent: int = Field(8, ge=1, le=4096)
    hidden: list[int] = Field(default_factory=lambda: [2048, 2048, 2048], min_length=1)


class CVAEPlusOptions(StrictModel):
    """CVAE+ (Green et al. sec. III.C): Gaussian parts of ``hidden``, an IAF after the encoder and MAFs after the
    prior and the decoder (``transforms`` each, ``flow_hidden`` units)."""

    latent: int = Field(8, ge=1, le=4096)
    hidden: list[int] = Field(default_factory=lambda: [1024, 1024, 1024], min_length=1)
    transforms: int = Field(5, ge=1, le=1000)
    flow_hidden: list[int] = Field(default_factory=lambda: [512, 512, 512], min_length=1)
    iaf_context: int = Field(8, ge=1, le=4096, description="encoder context fed to the IAF")
    frozen_prior: bool = Field(False, description="freeze the prior network (paper sec. IV, 8-d)")
    batchnorm: bool = True
    momentum: float = Field(0.1, gt=0.0, le=1.0)


class IAFOptions(StrictModel):
    """Inverse autoregressive flow over a context embedding (the distillation study's family)."""

    transforms: int = Field(5, ge=1, le=1000)
    hidden: list[int] = Field(default_factory=lambda: [128, 128], min_length=1)


FLOW_OPTIONS: dict[str, type[StrictModel]] = {
    "maf": MAFOptions,
    "cvae": CVAEOptions,
    "cvae_plus": CVAEPlusOptions,
    "iaf": IAFOptions,
}


class FlattenEmbeddingConfig(StrictModel):
    """The strain flattened into the flow's context (the paper's baseline)."""

    kind: Literal["flatten"] = "flatten"


class ConvEmbeddingConfig(StrictModel):
    """A Conv1d stack (``channels``, stride ``stride``) then a linear map to ``features``."""

    kind: Literal["conv"] = "conv"
    features: int = Field(128, ge=1, le=65536)
    channels: list[int] = Field(default_factory=lambda: [16, 32, 64], min_length=1)
    kernel_size: int = Field(7, ge=1, le=4096)
    stride: int = Field(2, ge=1, le=4096)


class ResNet1DEmbeddingConfig(StrictModel):
    """ResNet1D (``gwpe.models.flows.resnet1d``): ``depth`` residual blocks of ``width`` channels."""

    kind: Literal["resnet1d"] = "resnet1d"
    depth: int = Field(7, ge=1, le=1000)
    width: int = Field(100, ge=1, le=65536)
    features: int = Field(128, ge=1, le=65536)
    kernel_size: int = Field(3, ge=1, le=4096)
    stem_stride: int = Field(4, ge=1, le=4096)
    downsample_every: int = Field(2, ge=1, le=1000)
    pool: int = Field(8, ge=1, le=65536)


class SVDEmbeddingConfig(StrictModel):
    """A linear projection seeded by an SVD of whitened training signals, then residual blocks (DINGO-style)."""

    kind: Literal["svd"] = "svd"
    features: int = Field(128, ge=1, le=65536, description="SVD basis elements (the projection's outputs)")
    blocks: int = Field(2, ge=0, le=1000, description="residual blocks after the projection")
    hidden: int = Field(256, ge=1, le=65536, description="hidden width of each residual block")
    seed_signals: int = Field(4000, ge=1, le=10_000_000, description="training signals the SVD is computed from")


EmbeddingConfig = Annotated[
    FlattenEmbeddingConfig | ConvEmbeddingConfig | ResNet1DEmbeddingConfig | SVDEmbeddingConfig,
    Field(discriminator="kind"),
]


class GNPEInitConfig(StrictModel):
    """The GNPE init network q_0(t_c | strain): a small MAF on the unshifted strain."""

    transforms: int = Field(3, ge=1, le=100)
    hidden: list[int] = Field(default_factory=lambda: [128, 128], min_length=1)
    embedding: EmbeddingConfig | None = Field(None, description="null: flatten the strain")


class GNPEConfig(StrictModel):
    """GNPE on the arrival time (``gwpe.models.flows.gnpe``): the strain is shifted by a proxy t^ = t_c + e,
    e ~ U(-kernel, kernel), and the model conditions on t^; Gibbs sweeps at inference."""

    kernel: float = Field(0.002, gt=0.0, le=1.0, description="half-width of the uniform blurring kernel (s)")
    iterations: int = Field(30, ge=1, le=10_000, description="Gibbs sweeps per draw at inference")
    shift: Literal["fourier", "roll"] = Field(
        "fourier", description="fourier: exact sub-sample time shift (DINGO); roll: whole samples (older packages)"
    )
    init: GNPEInitConfig = Field(default_factory=GNPEInitConfig)


class FlowModelConfig(StrictModel):
    """One posterior model of ``gwpe.models.flows``: its kind, typed ``options`` (the kind's own model, defaults
    the paper's) and strain ``embedding`` (null: the flattened strain)."""

    kind: Literal["maf", "cvae", "cvae_plus"]
    options: MAFOptions | CVAEOptions | CVAEPlusOptions | None = Field(
        None, validate_default=True, description="e.g. transforms, hidden, latent; defaults: the paper's"
    )
    embedding: EmbeddingConfig | None = Field(
        None, description="null: flatten the strain; {kind: conv, ...}: Conv1d; {kind: resnet1d, ...}"
    )
    max_epochs: int | None = Field(
        None, ge=1, le=100_000, description="overrides flows.training.max_epochs for this model"
    )
    evaluation_injections: int | None = Field(
        None, ge=10, le=1_000_000, description="overrides flows.evaluation.injections for this model"
    )
    evaluation_samples: int | None = Field(
        None,
        ge=10,
        le=10_000_000,
        description="overrides flows.evaluation.samples for this model (a GNPE draw costs gnpe.iterations passes)",
    )
    gnpe: GNPEConfig | None = Field(None, description="null: no time-proxy; {kernel: s, iterations: N}: GNPE on t_c")
    # (2,2)-mode signals are unchanged by phi0 -> phi0 + pi, so the posterior holds two equal copies; folded
    # targets show the flow one of them and flows.phase_symmetry: pi restores the other (data/strain_dataset.py)
    phase_fold: bool = Field(
        False, description="train on phi0 mod pi (one of the (2,2)-mode posterior's two copies); MAF, phase_symmetry pi"
    )

    @field_validator("options", mode="before")
    @classmethod
    def _options_of_kind(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("kind")
        if kind not in FLOW_OPTIONS or isinstance(value, FLOW_OPTIONS[kind]):
            return value
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"a mapping of {kind} options; allowed keys: {', '.join(FLOW_OPTIONS[kind].model_fields)}")
        try:
            return FLOW_OPTIONS[kind].model_validate(value or {})
        except ValidationError as exc:
            raise ValueError(format_validation_error(exc, f"{kind} options", FLOW_OPTIONS[kind])) from None

    def flow_dict(self) -> dict:
        """The ``build_flow_model`` options of this entry (kind, options and embedding; no shapes)."""
        out = {"kind": self.kind, **self.options.model_dump()}
        if self.embedding is not None:
            out["embedding"] = self.embedding.model_dump()
        if self.gnpe is not None:
            out["gnpe"] = self.gnpe.model_dump()
        return out


class FlowReferenceConfig(StrictModel):
    """Reference posteriors for the first ``injections`` validation signals (``gwpe reference``): emcee run until
    ``sampling.convergence`` is met or ``max_steps``, or adaptive importance sampling seeded by the NPE
    ``sampling.model`` (exact weights; ``sampling.adaptive``)."""

    injections: int = Field(2, ge=0, le=10_000, description="0: no reference posteriors")
    method: Literal["emcee", "adaptive_is"] = Field(
        "adaptive_is",
        description="adaptive_is: exact weights from the NPE, emcee where it stalls; emcee: DE-move ensemble",
    )
    final_ess: float = Field(2000.0, gt=0.0, description="adaptive_is: final importance draws until this ESS")
    samples: int = Field(10_000, ge=10, le=100_000_000, description="adaptive_is: posterior draws resampled by weight")
    max_steps: int | None = Field(
        None, ge=2, le=10_000_000, description="emcee: steps are extended in rounds up to this cap; null: steps"
    )
    walkers: int = Field(32, ge=4, le=100_000)
    steps: int = Field(2000, ge=2, le=10_000_000)
    burn: int = Field(500, ge=0, le=10_000_000)
    workers: int = Field(2, ge=0, le=4096, description="processes generating templates; 0: in-process")
    seed: int = 0
    flow_samples: int = Field(10_000, ge=100, le=10_000_000, description="flow samples per reference injection")
    path: str = "data/reference"


class FlowEvaluationConfig(StrictModel):
    """``gwpe evaluate flow``: the p-p test's held-out injections and samples per injection."""

    injections: int = Field(300, ge=10, le=1_000_000, description="held-out injections for the p-p test")
    samples: int = Field(1000, ge=10, le=10_000_000, description="posterior samples per injection")


def _default_flow_training() -> "TrainingConfig":
    return TrainingConfig(batch_size=256, max_epochs=20, learning_rate=4e-4)


class FlowsSection(StrictModel):
    """Normalizing-flow posteriors on a strain dataset (Green, Gair & Messenger); one entry per model."""

    dataset: str = Field("strain-5d", min_length=1)
    models: dict[str, FlowModelConfig] = Field(
        default_factory=lambda: {"maf": FlowModelConfig(kind="maf"), "cvae_plus": FlowModelConfig(kind="cvae_plus")}
    )
    training: TrainingConfig = Field(default_factory=_default_flow_training)
    halve_every: int = Field(80, ge=1, le=100_000, description="learning rate halved every N epochs (paper: 80)")
    schedule: Literal["step", "cosine"] = Field(
        "step", description="step: halve every halve_every epochs (the paper); cosine: lr_0 (1 + cos(pi e / E)) / 2"
    )
    # exact for strain.approximant IMRPhenomPv2 with aligned spins (the only choice): it carries the (2, +-2)
    # modes only; an approximant with higher modes must set it false
    phase_flip: bool = Field(
        False, description="train on phi0 + pi with probability 1/2 (exact for (2,2)-mode-only signals)"
    )
    # MAFs only (models/flows/phase.py): "pi" wraps phi0 onto [0, 2 pi) and averages over phi0 -> phi0 + pi (exact
    # for (2,2)-mode signals, same condition as phase_flip); "periodic" only wraps (true of any phase); "none": the
    # paper's flow on the real line
    phase_symmetry: Literal["pi", "periodic", "none"] = Field(
        "pi", description="MAF posterior over phi0: pi (periodic, pi-symmetric), periodic, or none (the raw flow)"
    )
    evaluation: FlowEvaluationConfig = FlowEvaluationConfig()
    reference: FlowReferenceConfig = FlowReferenceConfig()
    model_dir: str = "models/flows"
    checkpoint_dir: str = "checkpoints/flows"
    registered_prefix: str = Field("gwpe-npe", min_length=1, description="registered as <prefix>-<model name>")

    @model_validator(mode="after")
    def _phase_fold_needs_symmetry(self) -> "FlowsSection":
        for name, model in self.models.items():
            if model.phase_fold and (model.kind != "maf" or self.phase_symmetry != "pi" or self.phase_flip):
                raise ValueError(
                    f"flows.models.{name}.phase_fold = true with kind {model.kind}, phase_symmetry "
                    f"{self.phase_symmetry}, phase_flip {self.phase_flip}; allowed: kind maf, phase_symmetry pi, "
                    "phase_flip false"
                )
        return self


class ResNetIAFConfig(StrictModel):
    """ResNet1D embedding + IAF posterior (the distillation study's teacher family); see ``gwpe.models.flows``."""

    depth: int = Field(7, ge=1, le=512, description="residual blocks (paper: 7-16)")
    width: int = Field(100, ge=1, le=4096, description="Conv1d channels (paper's hidden features: 70-120)")
    transforms: int = Field(7, ge=1, le=64, description="IAF transforms (paper: 7)")
    hidden: int = Field(120, ge=1, le=65536, description="width of each MADE's hidden layers (paper: 120)")
    hidden_layers: int = Field(2, ge=1, le=16)
    features: int = Field(128, ge=1, le=65536, description="embedding output fed to the IAF as context")
    kernel_size: int = Field(3, ge=1, le=255)
    stem_stride: int = Field(4, ge=1, le=64)
    downsample_every: int = Field(2, ge=1, le=512)
    pool: int = Field(8, ge=1, le=4096)


class SearchSpaceConfig(StrictModel):
    """Optuna search space, [low, high] inclusive; learning rate sampled log-uniformly."""

    depth: list[int] = Field([7, 16], min_length=2, max_length=2)
    width: list[int] = Field([70, 120], min_length=2, max_length=2)
    transforms: list[int] = Field([3, 8], min_length=2, max_length=2)
    learning_rate: list[float] = Field([1e-4, 1e-3], min_length=2, max_length=2)

    @model_validator(mode="after")
    def _ordered(self) -> "SearchSpaceConfig":
        for name in ("depth", "width", "transforms", "learning_rate"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} = [{low}, {high}]: need 0 < low <= high")
        return self


class SweepConfig(StrictModel):
    """``gwpe sweep``: one Optuna study over ``search_space``; objective = validation NLL after ``max_epochs``."""

    n_trials: int = Field(
        20, ge=1, le=1_000_000, description="finished (complete + pruned) trials in the study, all workers together"
    )
    workers: int = Field(1, ge=1, le=1024, description="local worker processes (--workers overrides)")
    storage: str = Field(
        "sqlite:///optuna.db",
        min_length=1,
        description="sqlite:///FILE (relative to the project root), any SQLAlchemy RDB URL, or journal:FILE",
    )
    study_name: str = Field("resnet-iaf", min_length=1)
    sampler_seed: int = Field(0, ge=0)
    pruner: Literal["median", "hyperband", "none"] = "median"
    startup_trials: int = Field(
        2, ge=0, le=1_000_000, description="median pruner: trials finished before pruning starts"
    )
    warmup_epochs: int = Field(1, ge=0, le=100_000, description="no pruning before this many epochs of a trial")
    max_epochs: int = Field(4, ge=1, le=100_000, description="epochs per trial")
    search_space: SearchSpaceConfig = SearchSpaceConfig()
    best_params: str = "models/sweep/best.json"


class StudentConfig(StrictModel):
    """Distilled student: the teacher's family with depth, width and MADE width scaled by ``factor``."""

    factor: float = Field(0.6, gt=0.0, le=1.0, description="paper eq. 9: d_student = c d_teacher")
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="weight of the NLL term; 1 - alpha weighs T^2 KL")
    temperature: list[float] = Field(
        [1.0, 4.0], min_length=2, max_length=2, description="T rises linearly from the first to the second value"
    )
    teacher_samples: int = Field(4, ge=1, le=100_000, description="teacher draws per event for the KL estimate")
    max_epochs: int | None = Field(None, ge=1, le=100_000, description="null: distill.training.max_epochs")

    @model_validator(mode="after")
    def _positive(self) -> "StudentConfig":
        if min(self.temperature) <= 0:
            raise ValueError(f"temperature = {list(self.temperature)}: both values must be > 0")
        return self


class DistillEvaluationConfig(StrictModel):
    """``gwpe evaluate distill``: events for Table I and the JS divergences, samples, latency repeats, threads."""

    events: int = Field(100, ge=1, le=1_000_000, description="held-out validation events for relative errors")
    js_events: int = Field(10, ge=1, le=100_000, description="held-out events for teacher-student JS divergences")
    samples: int = Field(10_000, ge=10, le=10_000_000, description="posterior samples per event (latency, JS, errors)")
    latency_repeats: int = Field(5, ge=1, le=1000)
    threads: int | None = Field(
        None, ge=1, le=1024, description="torch CPU threads when timing (null: torch's default)"
    )


def _default_distill_training() -> "TrainingConfig":
    return TrainingConfig(batch_size=64, max_epochs=20, learning_rate=3e-4)


class DistillSection(StrictModel):
    """ResNet1D+IAF teacher found by an Optuna sweep, distilled into a smaller student (two-detector strain)."""

    dataset: str = Field("strain-hl", min_length=1)
    model: ResNetIAFConfig = ResNetIAFConfig()
    sweep: SweepConfig = SweepConfig()
    training: TrainingConfig = Field(default_factory=_default_distill_training)
    student: StudentConfig = StudentConfig()
    evaluation: DistillEvaluationConfig = DistillEvaluationConfig()
    model_dir: str = "models/distill"
    checkpoint_dir: str = "checkpoints/distill"
    registered_teacher: str = Field("gwpe-teacher", min_length=1)
    registered_student: str = Field("gwpe-student", min_length=1)


class TrackingConfig(StrictModel):
    """MLflow experiment name; optional Weights & Biases mirror of every stage run (params, metrics)."""

    experiment: str = Field("gwpe", min_length=1)
    wandb: Literal["off", "offline", "online"] = Field(
        "off", description="offline: runs under ./wandb for `wandb sync`"
    )

    @field_validator("wandb", mode="before")
    @classmethod
    def _yaml_off(cls, value):
        return "off" if value is False else value  # YAML 1.1 reads a bare `off` as false


class FlowMCConfig(StrictModel):
    """Flow-enhanced MCMC settings (``gwpe.inference.flowmc``); the local kernel is a random walk (the
    lalsimulation likelihood has no gradient)."""

    chains: int = Field(64, ge=2, le=1_000_000)
    local_steps: int = Field(20, ge=1, le=100_000)
    production_local_steps: int = Field(
        10, ge=0, le=100_000, description="local steps per production loop (the frozen flow does most of the mixing)"
    )
    global_steps: int = Field(10, ge=0, le=100_000)
    step_size: float = Field(
        0.5, gt=0.0, description="initial random-walk scale, in units of 2.38 / sqrt(D) x chain covariance"
    )
    max_training_loops: int = Field(40, ge=1, le=100_000)
    train_until: float = Field(
        0.4, gt=0.0, le=1.0, description="training ends once flow proposals are accepted at this rate"
    )
    production_loops: int = Field(25, ge=1, le=100_000, description="at least this many production loops")
    max_production_loops: int = Field(100, ge=1, le=1_000_000)
    target_ess: float = Field(1500.0, gt=0.0, description="production goes on until this effective sample size")
    target_rhat: float | None = Field(
        None, gt=1.0, description="null, or production also goes on until every R-hat over chains is below this"
    )
    flow_epochs: int = Field(20, ge=1, le=10_000, description="epochs of proposal-flow fitting per training loop")
    history_loops: int = Field(3, ge=1, le=10_000, description="training loops of chain history the flow is fitted to")
    transforms: int = Field(4, ge=1, le=64)
    hidden: list[int] = Field(default_factory=lambda: [64, 64], min_length=1)
    warm_start_epochs: int = Field(
        20, ge=1, le=10_000, description="epochs fitting the proposal to NPE draws (warm start)"
    )
    defensive: float = Field(
        0.2, ge=0.0, lt=1.0, description="weight of the broad part (1 - a) q + a q_T of the global proposal; 0: q"
    )
    defensive_temperature: float = Field(1.5, gt=1.0, le=10.0, description="the broad part's base scale T")
    production_local: Literal["chain", "latent"] = Field(
        "latent",
        description="production's local steps: a random walk in sampler coordinates (chain) or in the frozen "
        "proposal's latent space (latent, NeuTra)",
    )
    latent_step: float = Field(1.0, gt=0.0, le=10.0, description="latent random-walk step, in units of 2.38 / sqrt(D)")
    production_chains: int | None = Field(
        None,
        ge=2,
        le=1_000_000,
        description="null: every chain; else production runs on this many of them, longer (R-hat's noise floor "
        "falls with the effective draws per chain)",
    )

    refine_rounds: int = Field(
        3,
        ge=0,
        le=1000,
        description="importance-weighted refits of the proposal between training and production "
        "(FlowMC._refine_proposal): its tails where the chains rarely go",
    )
    refine_draws: int = Field(2000, ge=2, le=10_000_000, description="proposal draws (likelihood calls) per refit")
    kernel_weight: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="share of the production global proposal drawn from the PMC kernel of the refine rounds' "
        "weighted draws (FlowMC._refine_proposal); 0: the flow's defensive mixture alone. Demo, 0.3 with "
        "fold_equal_mass: injection 1's cold run m1 sd error 3.3 -> 2.0 % at 320 loops, injection 0 unchanged",
    )
    fold_equal_mass: bool = Field(
        True,
        description="with sampling.mass_coordinates: probit, the proposal flow is folded at the equal-mass wall u = 0 "
        "(gwpe.inference.flowmc.StandardisedFlow) and the latent walk moves on the target mirrored there; false: an "
        "unfolded flow, whose largest p / q lie at the wall (demo injection 1's equal-mass mode)",
    )

    @property
    def chains_in_production(self) -> int:
        """How many chains the production samples hold."""
        return self.chains if self.production_chains is None else self.production_chains

    @model_validator(mode="after")
    def _production_chains_within_chains(self) -> "FlowMCConfig":
        if self.production_chains is not None and self.production_chains > self.chains:
            raise ValueError(f"production_chains = {self.production_chains}; allowed: 2 <= k <= chains ({self.chains})")
        return self


class EmceeConfig(StrictModel):
    """emcee in ``gwpe sample``: walkers, steps and the burn-in dropped; extended in rounds of ``extend_steps``
    up to ``max_steps`` until ``sampling.convergence`` is met."""

    walkers: int = Field(32, ge=4, le=100_000)
    steps: int = Field(2000, ge=2, le=10_000_000)
    burn: int = Field(500, ge=0, le=10_000_000)
    max_steps: int | None = Field(None, ge=2, le=10_000_000, description="cap of the extension rounds; null: steps")
    extend_steps: int = Field(500, ge=1, le=10_000_000, description="steps added per round until converged")
    latent: bool = Field(
        True,
        description="walk in the latent space of the warm flow-MCMC proposal (NeuTra); false: sampler coordinates",
    )


class ConvergenceConfig(StrictModel):
    """Convergence of every MCMC output (``gwpe.inference.convergence``): rank-normalised split R-hat and tail
    ESS (Vehtari et al. 2021); chains are extended until both hold or their cap, then recorded as not converged."""

    rhat: float = Field(1.01, gt=1.0, le=10.0, description="every parameter's R-hat at most this")
    tail_ess: float = Field(400.0, gt=0.0, description="every parameter's tail ESS at least this")
    sd_error: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="and every parameter's MC standard error of its sd, relative to it, at most this (ArviZ "
        "mcse sd); null: not asked. A width compared at 3 % needs ~0.01",
    )


class AdaptiveISConfig(StrictModel):
    """Adaptive importance sampling seeded by the NPE (``gwpe.inference.evidence.adaptive_importance_sampling``);
    its flow has ``transforms`` x ``hidden`` (its own: it must represent the posterior's far tails, which the
    flow-MCMC proposal need not) and is first fitted to the NPE draws for ``flowmc.warm_start_epochs``."""

    transforms: int = Field(
        8,
        ge=1,
        le=64,
        description="MAF transforms of the adapted flow; demo injection 1: with 4 x [64, 64] its draws missed the "
        "m1 tail towards equal mass (0.00 % of the weight at m1 < 67 Msun against dynesty's 0.46 %, m1 sd 14 % "
        "narrow), with 8 x [128, 128] 0.59 % in one run, 0.10-0.27 % in three since (m1 sd ~5 % narrow)",
    )
    hidden: list[int] = Field(default_factory=lambda: [128, 128], min_length=1)

    draws_per_round: int = Field(2000, ge=10, le=100_000_000, description="target evaluations per annealing round")
    ess_fraction: float = Field(0.3, gt=0.0, lt=1.0, description="each round moves beta as far as keeps this ESS / n")
    max_rounds: int = Field(25, ge=1, le=100_000)
    refine_rounds: int = Field(3, ge=0, le=100_000, description="rounds refitting at beta = 1 before the final draws")
    epochs: int = Field(20, ge=1, le=10_000, description="epochs of flow fitting per round")
    final_ess: float = Field(4000.0, gt=0.0, description="the final importance sampling draws until this ESS ...")
    final_batch: int = Field(5000, ge=10, le=100_000_000)
    max_final_draws: int = Field(50_000, ge=10, le=1_000_000_000, description="... or this many draws")
    final_sd_error: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="... and until every coordinate's sd has this relative standard error (weighted_sd_error); "
        "null: the ESS alone",
    )
    kernel_weight: float = Field(
        0.3,
        ge=0.0,
        lt=1.0,
        description="share of each proposal after the first round at beta = 1 drawn from the PMC kernel of the last "
        "round's weighted draws (evidence.adaptive_importance_sampling); 0: the flow's defensive mixture alone",
    )
    seed_draws: int = Field(
        2000,
        ge=0,
        le=1_000_000,
        description="gwpe evidence: warm flow-MCMC draws (evenly thinned) carrying half the kernel's mass at beta = 1, "
        "so the proposal covers every mode the chains found (weights stay exact); 0: adaptive IS alone",
    )
    seed_inflation: float = Field(
        1.5,
        ge=1.0,
        le=10.0,
        description="gwpe reference: the flow fitted to the NPE draws is widened by this factor in every "
        "standardised coordinate before the bridge starts, so a mode or tail the NPE under-covers is still proposed: "
        "demo injection 1 seeded by the GNPE MAF, 0.26 % of the weight at m1 < 67 Msun and m1 sd 6-8 % below emcee "
        "and flow-MCMC with 1, 0.60 % and m1 sd within 1 % with 1.5 (MCMC 0.44 %, dynesty 0.46 %). gwpe evidence "
        "keeps 1: its kernel holds the flow-MCMC's draws (seed_draws), and widened there its d_L sd read 2-3.6 % "
        "below both flow-MCMC runs (within 1 % at 1)",
    )
    mcmc_steps: int = Field(
        0,
        ge=0,
        le=10_000,
        description="random-walk steps moving the resampled draws each round (SMC); 0: reweighting only",
    )
    particle_sweeps: int = Field(
        1,
        ge=1,
        le=10_000,
        description="SMC: sets of particles at beta = 1, each after mcmc_steps more moves, the flow is fitted to",
    )
    fold_equal_mass: bool = Field(
        True,
        description="with sampling.mass_coordinates: probit, the flow is folded at the equal-mass wall u = 0 "
        "(gwpe.inference.flowmc.StandardisedFlow); false: an unfolded flow, which spills mass past it",
    )


class SamplingSection(StrictModel):
    """``gwpe sample`` / ``gwpe evidence``: likelihood-based posteriors and evidence for one injection of
    ``flows.dataset``, checked against the NPE flow ``model``."""

    model: str = Field(
        "maf",
        min_length=1,
        description="a flows.models entry: the NPE posterior used to warm-start and importance-sample",
    )
    injection: int = Field(
        0, ge=0, le=10_000_000, description="validation injection (the noise realisation the flows are evaluated on)"
    )
    workers: int = Field(2, ge=0, le=4096, description="processes generating templates; 0: in-process")
    template_segment: float | None = Field(
        None,
        gt=0.0,
        le=1024.0,
        description="seconds of the long segment the likelihood's templates are generated and whitened on "
        "(rounded up to a power of two of samples); null: the dataset's own (4 s for strain-5d). The hard f_min "
        "cut rings and wraps around it: see docs/evidence-segment.md for log Z against 4, 8 and 16 s",
    )
    seed: int = 0
    npe_samples: int = Field(
        10_000, ge=100, le=100_000_000, description="NPE draws: importance sampling of the NPE, and the warm start"
    )
    pilot_draws: int = Field(
        2000, ge=10, le=10_000_000, description="broad draws whose likelihoods place the phase window's walls"
    )
    mass_coordinates: Literal["probit", "chirp"] = Field(
        "probit",
        description="the samplers' mass columns: chirp (M_c, nu = m2/m1), or probit: nu through a half probit "
        "over its range at that M_c, which sends the prior triangle's wall m1 = m_max / m2 = m_min to -infinity",
    )
    adaptive: AdaptiveISConfig = AdaptiveISConfig()
    flowmc: FlowMCConfig = FlowMCConfig()
    compare: list[Literal["flowmc_cold", "emcee"]] = Field(
        ["flowmc_cold", "emcee"],
        description="samplers run beside the warm flow-MCMC (always run: the stage's posterior): a cold-start "
        "flow-MCMC from the prior, emcee in the warm proposal's latent space",
    )
    emcee: EmceeConfig = EmceeConfig()
    convergence: ConvergenceConfig = ConvergenceConfig()
    harmonic_temperature: float = Field(
        0.8, gt=0.0, le=1.0, description="T < 1 concentrates the learned harmonic mean's flow"
    )
    agreement_js: float = Field(
        0.01, gt=0.0, description="nats: the largest 1-D marginal JS divergence counted as agreement"
    )
    path: str = "data/sampling"

    @model_validator(mode="after")
    def _ordered(self) -> "SamplingSection":
        if self.emcee.burn >= self.emcee.steps:
            raise ValueError(f"emcee.burn = {self.emcee.burn}; allowed: < emcee.steps = {self.emcee.steps}")
        if self.flowmc.production_loops > self.flowmc.max_production_loops:
            raise ValueError(
                f"flowmc.production_loops = {self.flowmc.production_loops}; allowed: <= flowmc.max_production_loops"
            )
        return self


class EventPSDConfig(StrictModel):
    """The noise PSD of each detector from off-source data: Welch's method (``gwpe.waveforms.conditioning``)."""

    segment: float = Field(4.0, gt=0.0, le=4096.0, description="s per Welch segment (resolution 1/segment Hz)")
    overlap: float = Field(0.5, ge=0.0, lt=1.0, description="fraction of a segment shared with the next")
    window: Literal["hann", "tukey", "blackman"] = "hann"
    average: Literal["median", "mean"] = Field("median", description="median: robust to glitches and the signal")
    on_source_margin: float = Field(
        1.0, ge=0.0, le=1000.0, description="s excluded on each side of the analysis window besides the window itself"
    )


class EventInjectionConfig(StrictModel):
    """Injections into the event's off-source noise: the NPE's p-p test on real noise."""

    count: int = Field(100, ge=2, le=1_000_000)
    samples: int = Field(1000, ge=10, le=10_000_000, description="NPE draws per injection")
    step: float = Field(0.25, gt=0.0, description="s between the starts of successive noise windows")
    edge: float = Field(2.0, ge=0.0, description="s at each end of the segment never used (whitening filter)")
    seed: int = Field(0, ge=0)


class EventConfig(StrictModel):
    """A real event (``gwpe event``): its strain (local GWOSC files or a download), conditioning, the NPE that
    analyses it and the likelihood checks (the ``sampling`` section's settings)."""

    name: str = Field("GW150914", min_length=1)
    gps: float | None = Field(None, gt=0.0, description="geocentric trigger time; null: look it up on GWOSC")
    detectors: list[Literal["H1", "L1", "V1"]] = Field(default_factory=lambda: ["H1", "L1"], min_length=1)
    source: Literal["auto", "local", "gwosc"] = Field("auto", description="auto: local_dir first, then GWOSC")
    local_dir: str = "data/gwosc"
    gwosc_host: str = "https://gwosc.org"
    download_timeout: float = Field(20.0, gt=0.0)
    before: float = Field(16.0, gt=0.0, description="s of data before the trigger (PSD and window)")
    after: float = Field(15.5, gt=0.0, description="s of data after the trigger")
    dataset: str = Field("gw150914", min_length=1, description="the strain.datasets entry trained with its noise")
    model: str = Field("gw150914", min_length=1, description="the flows.models entry (the NPE), a MAF")
    window_start: float = Field(
        1.6, gt=0.0, description="s from the analysis window's start to the trigger (prior t_c is centred there)"
    )
    psd: EventPSDConfig = EventPSDConfig()
    injections: EventInjectionConfig = EventInjectionConfig()
    published: dict[str, list[float]] = Field(
        default_factory=dict, description="parameter: [5 %, median, 95 %] published values, marked on the plots"
    )
    path: str = Field("data/events/GW150914", description="conditioned data, PSDs and results")


class ProjectConfig(StrictModel):
    """A whole profile file. ``profile`` names it in MLflow and in dataset provenance."""

    profile: str = Field(min_length=1)
    tracking: TrackingConfig = TrackingConfig()
    h22: H22Config = H22Config()
    strain: StrainConfig = StrainConfig()
    wavenet: WaveNetSection = WaveNetSection()
    flows: FlowsSection = FlowsSection()
    distill: DistillSection = DistillSection()
    sampling: SamplingSection = SamplingSection()
    event: EventConfig | None = None


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "<root>"


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        model = field.annotation
    return sorted(model.model_fields)


def format_validation_error(exc: ValidationError, source: str, model: type[BaseModel] = ProjectConfig) -> str:
    """One line: ``<source>: <key> = <value>: <what is allowed>``."""
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not str(p).startswith("function-"))
    key = _dotted(loc)
    value = err.get("input")
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "finite_number":
        msg = "not a finite number; NaN and infinity are not allowed"
    if err["type"] == "extra_forbidden":
        msg = f"unknown key; allowed keys here: {', '.join(_allowed_keys(model, loc))}"
        text = f"{source}: {key}: {msg}"
    elif err["type"] == "missing":
        text = f"{source}: {key}: required key is missing"
    elif isinstance(value, dict):
        text = f"{source}: {key}: {msg}"
    else:
        text = f"{source}: {key} = {value!r}: {msg}"
    more = len(exc.errors()) - 1
    return text + (f" (and {more} more error{'s' if more > 1 else ''})" if more else "")


def parse_config(data: Any, source: str = "<config>") -> ProjectConfig:
    """Validate a parsed profile mapping; any error is one ``ConfigError`` line naming key, value and rule."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level, got {type(data).__name__}")
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("config error in " + format_validation_error(exc, source)) from None


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key written twice in one mapping (PyYAML keeps the last one silently).

    Keys brought in by a merge (``<<: *anchor``) may be overridden by the mapping's own keys, as YAML intends."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key: the base constructor reports it
                    continue
                if first is not key_node:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {key!r} (first at line {first.start_mark.line + 1}); write each key once",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> Any:
    """A YAML file's contents, every failure one ``ConfigError`` line: not UTF-8 text (a binary file), invalid
    YAML (with its line) or a duplicated key (with its line)."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a UTF-8 text file (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "a params file is YAML text"
        ) from None
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
        if isinstance(exc, yaml.reader.ReaderError):  # a control character: a binary file that decodes as UTF-8
            code = ord(exc.character) if isinstance(exc.character, str) else exc.character
            where, problem = f" offset {exc.position}", f"unacceptable character #x{code:04x} ({exc.reason})"
        raise ConfigError(f"{path}:{where} is not valid YAML: {' '.join(str(problem).split())}") from None


def load_config(path: str | Path = DEFAULT_PARAMS) -> ProjectConfig:
    """Read and validate a profile file (``params.yaml`` or ``experiments/<name>.yaml``); see ``read_yaml``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (pass --params FILE; profiles live in experiments/)")
    return parse_config(read_yaml(path), str(path))


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``, for logging resolved configs as MLflow params."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out
