"""``gwpe``: one subcommand per pipeline stage. Only parses: each subcommand calls one ``gwpe.stages`` entry."""

from __future__ import annotations

import argparse
import sys

from gwpe.errors import GwpeError, as_user_error
from gwpe.redaction import redact

SPLIT_CHOICES = ("train", "validation", "test", "all")


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line (naming the bad value and the allowed ones) and exit code 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _params(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="profile file (default: params.yaml)")


def _metrics(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--metrics", default=None, help=f"write {what} as DVC metrics JSON here")


def _no_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (default when stderr is not a terminal: DVC, CI)"
    )


def _training(parser: argparse.ArgumentParser, dry_run: bool = True) -> None:
    """The flags every ``gwpe train`` subcommand shares."""
    _params(parser)
    parser.add_argument("--resume", action="store_true", help="continue an unfinished run from its last checkpoint")
    _metrics(parser, "final losses")
    _no_progress(parser)
    if dry_run:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="measure training samples/s here and price the profile's epochs; train nothing",
        )


def _no_register(parser: argparse.ArgumentParser, what: str = "the model") -> None:
    parser.add_argument("--no-register", action="store_true", help=f"do not register {what} in MLflow")


def _port(text: str) -> int:
    """A TCP port argument (argparse reports the one-line error)."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"port = {text!r}; allowed: an integer 1-65535")
    return int(text)


def _handler(module: str, function: str = "main"):
    """The stage entry ``gwpe.stages.<module>.<function>``, imported only when its subcommand runs."""

    def call(args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(f"gwpe.stages.{module}"), function)(args)

    call.stage = (module, function)  # what the subcommand runs, for help and tests
    return call


def build_parser() -> argparse.ArgumentParser:
    """The ``gwpe`` command line: one subcommand per stage, each handled by ``gwpe.stages.<module>.main``."""
    parser = OneLineParser(
        prog="gwpe", description="Gravitational-wave parameter estimation platform: one subcommand per pipeline stage."
    )
    parser.add_argument("--version", action="version", version=f"gwpe {__import__('gwpe').__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    dry_run_data = "print counts, disk size and CPU-hours; generate nothing"

    generate = commands.add_parser("generate", help="generate a waveform dataset (DVC stage)")
    products = generate.add_subparsers(dest="product", required=True, metavar="PRODUCT", parser_class=OneLineParser)
    h22 = products.add_parser("h22", help="l=m=2 mode of aligned-spin BBHs on the Khan-Huerta-Das (q, s1z, s2z) grid")
    h22.add_argument("--split", default="all", choices=SPLIT_CHOICES, help="which split (default: all)")
    _params(h22)
    _metrics(h22, "the split's figures ('{split}' is replaced)")
    h22.add_argument("--dry-run", action="store_true", help=dry_run_data)
    h22.set_defaults(handler=_handler("generate_h22"))

    strain = products.add_parser(
        "strain", help="whitened IMRPhenomPv2 detector strain for posterior estimation (Green et al.)"
    )
    strain.add_argument("--dataset", default="all", help="a name under strain.datasets in the profile, or 'all'")
    _params(strain)
    _metrics(strain, "the dataset's figures ('{dataset}' is replaced)")
    strain.add_argument("--plots", default=None, help="write the SNR histogram as DVC plot data ('{dataset}' replaced)")
    strain.add_argument("--dry-run", action="store_true", help=dry_run_data)
    strain.set_defaults(handler=_handler("generate_strain"))

    train = commands.add_parser("train", help="train a model (DVC stage)")
    models = train.add_subparsers(dest="model", required=True, metavar="MODEL", parser_class=OneLineParser)
    wavenet = models.add_parser(
        "wavenet", help="physics-inspired WaveNet regressor of (q, s1z, s2z) from h22 (Khan, Huerta & Das)"
    )
    _training(wavenet)
    wavenet.set_defaults(handler=_handler("train_wavenet"))

    flow = models.add_parser(
        "flow", help="a normalizing-flow posterior of flows.models on its strain dataset (Green et al.)"
    )
    flow.add_argument("--model", required=True, help="a name under flows.models in the profile (e.g. maf, cvae_plus)")
    _training(flow)
    flow.set_defaults(handler=_handler("train_flow"))

    teacher = models.add_parser(
        "teacher", help="ResNet1D+IAF teacher with the sweep's best depth, width, transforms and learning rate"
    )
    _training(teacher, dry_run=False)
    teacher.set_defaults(handler=_handler("train_distill", "main_teacher"))

    student = models.add_parser(
        "student", help="a smaller ResNet1D+IAF, distilled from the teacher or trained directly"
    )
    student.add_argument(
        "--mode",
        required=True,
        choices=("distilled", "direct"),
        help="distilled: NLL + T^2 KL to the teacher; direct: NLL only",
    )
    _training(student, dry_run=False)
    student.set_defaults(handler=_handler("train_distill", "main_student"))

    evaluate = commands.add_parser("evaluate", help="evaluate a trained model on its test set (DVC stage)")
    evaluated = evaluate.add_subparsers(dest="model", required=True, metavar="MODEL", parser_class=OneLineParser)
    wavenet = evaluated.add_parser(
        "wavenet", help="Table 1, overlaps, Figs. 8-11; register the model and move 'champion' if better"
    )
    _params(wavenet)
    wavenet.add_argument("--model", default=None, help="model folder (default: wavenet.model_dir of the profile)")
    _metrics(wavenet, "Table 1")
    wavenet.add_argument("--plots-dir", default="plots/wavenet", help="write the figures here (default: plots/wavenet)")
    wavenet.add_argument("--limit", type=int, default=None, help="evaluate only the first N test waveforms")
    _no_register(wavenet)
    _no_progress(wavenet)
    wavenet.set_defaults(handler=_handler("evaluate_wavenet"))

    flow = evaluated.add_parser(
        "flow", help="validation NLL, p-p test with KS p-values, 90%% widths, sampling time; register"
    )
    flow.add_argument("--model", required=True, help="a name under flows.models in the profile")
    _params(flow)
    _metrics(flow, "the report")
    flow.add_argument("--plots-dir", default="plots/flows", help="write the p-p plot here (default: plots/flows)")
    _no_register(flow)
    _no_progress(flow)
    flow.set_defaults(handler=_handler("evaluate_flow"))

    distill = evaluated.add_parser(
        "distill", help="Table II (NLL, latency, parameters, memory), JS teacher-student, Table I; register"
    )
    _params(distill)
    _metrics(distill, "the report")
    distill.add_argument("--plots-dir", default="plots/distill", help="write the figures here (default: plots/distill)")
    _no_register(distill, "the models")
    _no_progress(distill)
    distill.set_defaults(handler=_handler("evaluate_distill"))

    sweep = commands.add_parser(
        "sweep", help="Optuna study of ResNet depth, width, IAF transforms and learning rate (DVC stage)"
    )
    _params(sweep)
    sweep.add_argument(
        "--workers", type=int, default=None, help="local worker processes on the study (default: distill.sweep.workers)"
    )
    _metrics(sweep, "the study summary")
    sweep.add_argument("--plots-dir", default="plots/sweep", help="write the study's plots here (default: plots/sweep)")
    _no_progress(sweep)
    sweep.add_argument(
        "--dry-run", action="store_true", help="price the sweep, teacher and students from rates measured here"
    )
    sweep.set_defaults(handler=_handler("sweep"))

    reference = commands.add_parser(
        "reference", help="emcee reference posteriors for validation injections of flows.dataset (DVC stage)"
    )
    _params(reference)
    _metrics(reference, "the sampler diagnostics")
    _no_progress(reference)
    reference.set_defaults(handler=_handler("reference"))

    sample = commands.add_parser(
        "sample",
        help="flow-MCMC (NPE warm start; cold start and emcee per sampling.compare) for one injection (DVC stage)",
    )
    _params(sample)
    _metrics(sample, "the samplers' diagnostics")
    sample.add_argument("--plots-dir", default=None, help="also write the convergence plot here")
    _no_progress(sample)
    sample.set_defaults(handler=_handler("sample"))

    evidence = commands.add_parser(
        "evidence",
        help="importance-sampled NPE, learned harmonic mean and posterior agreement for `gwpe sample`'s injection",
    )
    _params(evidence)
    _metrics(evidence, "evidences, efficiencies and JS divergences")
    evidence.add_argument("--plots-dir", default=None, help="also write the corner plot and the annealing plot here")
    _no_progress(evidence)
    evidence.set_defaults(handler=_handler("evidence"))

    registry = commands.add_parser(
        "models", help="registered models: list, promote (move an alias), pull (download), serve (HTTP)"
    )
    actions = registry.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=OneLineParser)
    listing = actions.add_parser("list", help="names, versions, aliases and each version's key metric")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=_handler("models", "list_main"))
    promote = actions.add_parser("promote", help="point an alias (e.g. champion) at a version")
    promote.add_argument("name", help="registered model name, e.g. gwpe-npe-maf (see `gwpe models list`)")
    promote.add_argument("version", type=int, help="the version number the alias should point at")
    promote.add_argument("--alias", required=True, help="alias to move, e.g. champion")
    promote.set_defaults(handler=_handler("models", "promote_main"))
    pull = actions.add_parser("pull", help="download NAME@ALIAS or NAME/VERSION into a folder (works against a server)")
    pull.add_argument(
        "reference", metavar="NAME@ALIAS|NAME/VERSION", help="which model: gwpe-npe-maf@champion or gwpe-npe-maf/3"
    )
    pull.add_argument("--out", "--dest", dest="dest", required=True, help="folder to write the package into")
    pull.add_argument(
        "--overwrite", action="store_true", help="replace the package's files in a non-empty folder (default: refuse)"
    )
    pull.set_defaults(handler=_handler("models", "pull_main"))
    serve = actions.add_parser(
        "serve", help="answer posterior requests over HTTP (mlflow models serve, this environment's tools)"
    )
    serve.add_argument(
        "reference", metavar="NAME@ALIAS|NAME/VERSION", help="which model: gwpe-npe-maf@champion or gwpe-npe-maf/3"
    )
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1, loopback only)")
    serve.add_argument("--port", type=_port, default=5001, help="TCP port, 1-65535 (default: 5001)")
    serve.set_defaults(handler=_handler("models", "serve_main"))

    infer = commands.add_parser("infer", help="posterior samples (flows) or (q, s1z, s2z) (WaveNet) from strain files")
    infer.add_argument("--model", required=True, help="NAME@ALIAS, NAME/VERSION or a package folder")
    infer.add_argument(
        "--strain", required=True, nargs="+", help="strain file(s): .npy, .npz, .h5/.hdf5 (gwpe or GWOSC), .txt (GWOSC)"
    )
    infer.add_argument("--n-samples", type=int, default=10_000, help="posterior samples (flows; default 10000)")
    infer.add_argument("--out", required=True, help="output HDF5 file (.h5); the corner plot goes beside it (.png)")
    infer.add_argument(
        "--overwrite", action="store_true", help="replace existing output files (default: refuse, nothing is lost)"
    )
    infer.add_argument("--sample-rate", type=float, default=None, help="Hz, for files that do not record it")
    infer.add_argument(
        "--detectors", default=None, help="comma-separated, e.g. H1,L1, for files that do not record them"
    )
    infer.add_argument(
        "--start",
        type=float,
        default=None,
        help="GPS start of the model's window inside a longer segment (the rest, off-source, checks the noise)",
    )
    infer.add_argument("--whiten", action="store_true", help="the strain is raw: whiten it with the model's PSD first")
    infer.add_argument("--seed", type=int, default=None, help="seed the sampler (reproducible samples)")
    infer.add_argument(
        "--force",
        action="store_true",
        help="run despite a failed data-quality check (noise PSD, whiteness, on-source RMS, signal SNR): the checks "
        "print as a table on stderr and the failures are recorded in the output (forced_checks)",
    )
    infer.add_argument("--no-plot", action="store_true", help="no corner plot")
    _no_progress(infer)
    infer.set_defaults(handler=_handler("infer"))

    event = commands.add_parser("event", help="a real event: fetch its strain, condition it, analyse it (DVC stages)")
    steps = event.add_subparsers(dest="step", required=True, metavar="STEP", parser_class=OneLineParser)
    fetch = steps.add_parser("fetch", help="an event's GWOSC strain by name or GPS into a folder (local copy first)")
    fetch.add_argument("event", metavar="NAME|GPS", help="e.g. GW150914 or 1126259462.4")
    fetch.add_argument("--detectors", nargs="+", default=["H1", "L1"], help="default: H1 L1")
    fetch.add_argument("--before", type=float, default=16.0, help="s before the event (default 16)")
    fetch.add_argument("--after", type=float, default=15.5, help="s after the event (default 15.5)")
    fetch.add_argument("--dest", default="data/gwosc", help="folder of GWOSC files (default: data/gwosc)")
    fetch.add_argument("--source", choices=("auto", "local", "gwosc"), default="auto", help="default: auto")
    fetch.add_argument("--host", default="https://gwosc.org", help="GWOSC server (default: https://gwosc.org)")
    fetch.add_argument("--timeout", type=float, default=20.0, help="s per download request (default 20)")
    fetch.set_defaults(handler=_handler("event", "fetch"))
    for name, function, what in (
        ("prepare", "prepare", "strain, resampling, off-source Welch PSDs, whitened data and their plots"),
        ("analyse", "analyse", "NPE posterior (gwpe infer) checked by adaptive IS and flow-MCMC; report and files"),
        ("injections", "injections", "NPE p-p test on injections into the event's off-source noise"),
    ):
        step = steps.add_parser(name, help=what)
        _params(step)
        _metrics(step, "the stage's figures")
        step.add_argument("--plots-dir", default=None, help="figures here (default: plots/events/<event>)")
        _no_progress(step)
        step.set_defaults(handler=_handler("event", function))

    verify = commands.add_parser(
        "verify", help="check zarr stores: every chunk present, every crc32c right; prints bytes read and GB/s"
    )
    verify.add_argument(
        "stores", nargs="+", metavar="STORE", help="a store folder, e.g. data/strain/strain-5d.zarr or data/h22/*.zarr"
    )
    verify.add_argument(
        "--threads", type=int, default=None, help="chunk files read at once (default: CPU count, at least 4)"
    )
    verify.add_argument("--no-progress", action="store_true", help="no progress bar (default: a bar on a terminal)")
    verify.set_defaults(handler=_handler("verify"))

    ui = commands.add_parser("ui", help="start the MLflow UI on the project's tracking store")
    ui.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1, loopback only)")
    ui.add_argument("--port", type=_port, default=5000, help="TCP port, 1-65535 (default: 5000)")
    ui.set_defaults(handler=_handler("models", "ui_main"))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; a ``GwpeError`` becomes one line on stderr and its exit code."""
    args = build_parser().parse_args(argv)
    if hasattr(args, "no_progress") and not sys.stderr.isatty():
        args.no_progress = True  # bars redrawn into a log file are noise (18 KB per DVC stage)
    try:
        return args.handler(args)
    except GwpeError as exc:
        print(f"gwpe: error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("gwpe: interrupted; finished chunks are kept, rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # a full disk or a locked/damaged mlflow.db: one line; anything else is a bug
        error = as_user_error(exc)
        if error is None:
            raise
        print(f"gwpe: error: {redact(' '.join(str(error).split()))}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
