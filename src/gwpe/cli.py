"""``gwpe``: one subcommand per pipeline stage. Thin: parses arguments, then calls the library."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gwpe.errors import GwpeError

SPLIT_CHOICES = ("train", "validation", "test", "all")


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line (naming the bad value and the allowed ones) and exit code 2."""

    def error(self, message: str) -> None:  # noqa: D401
        self.exit(2, f"{self.prog}: error: {message}\n")


def _generate_h22(args: argparse.Namespace) -> int:
    from gwpe.config import load_config
    from gwpe.waveforms.grid import SPLITS

    config = load_config(args.params)
    splits = SPLITS if args.split == "all" else (args.split,)
    if args.dry_run:
        return _dry_run_h22(config, splits)
    from gwpe.data.checksum import dvc_md5
    from gwpe.data.h22 import generate_split
    from gwpe.tracking import stage_run

    for split in splits:
        with stage_run(
            config, stage="generate-h22", run_name=f"generate-h22-{split}", tags={"gwpe.split": split}
        ) as run:
            result = generate_split(config, split)
            digest = run.log_dataset("output", f"h22-{split}", result.path) or dvc_md5(result.path)
            metrics = {
                "n_waveforms": result.n_waveforms,
                "bytes_on_disk": result.bytes_on_disk,
                "chunks_total": result.stats.chunks_total,
                "chunks_skipped": result.stats.chunks_skipped,
                "generation_seconds": round(result.stats.seconds, 3),
                "waveforms_per_second": round(result.stats.items_per_second, 3),
            }
            run.log_metrics(metrics)
            from gwpe.evaluation.h22_plots import h22_overview

            run.log_figure(h22_overview(result.path), f"plots/h22-{split}.png")
            if args.metrics:
                out = Path(str(args.metrics).replace("{split}", split))
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps({**metrics, "md5": digest}, indent=2) + "\n")
        print(
            f"{split}: {result.n_waveforms} waveforms -> {result.path} ({result.bytes_on_disk / 1e6:.1f} MB, md5 {digest})"
        )
    return 0


def _dry_run_h22(config, splits) -> int:
    from gwpe.data.h22 import estimate_split
    from gwpe.waveforms.grid import split_size

    from gwpe.errors import SurrogateNotFoundError

    h22 = config.h22
    length = h22.time.length
    print(
        f"profile {config.profile}: backend {h22.backend}, t/M in [{h22.time.t_start}, {h22.time.t_end}] step {h22.time.dt} ({length} samples)"
    )
    try:
        estimate = estimate_split(config)
    except SurrogateNotFoundError:
        # Counts do not depend on the backend; sizes barely do. CPU time is then IMRPhenomTHM's, not the surrogate's.
        print("note: NRHybSur3dq8 data file not found; CPU and size figures below are measured with imrphenomthm")
        estimate = estimate_split(config.model_copy(update={"h22": h22.model_copy(update={"backend": "imrphenomthm"})}))
    print(
        f"measured: {estimate['cpu_seconds_per_waveform'] * 1e3:.1f} ms CPU and {estimate['bytes_per_waveform'] / 1e3:.1f} kB compressed per waveform "
        f"({estimate['raw_bytes_per_waveform'] / 1e3:.1f} kB raw)"
    )
    print(f"{'split':<11}{'waveforms':>12}{'disk GB':>11}{'raw GB':>11}{'CPU-hours':>11}")
    totals = [0, 0.0, 0.0, 0.0]
    for split in splits:
        n = split_size(h22.grid, split)
        row = [
            n,
            n * estimate["bytes_per_waveform"] / 1e9,
            n * estimate["raw_bytes_per_waveform"] / 1e9,
            n * estimate["cpu_seconds_per_waveform"] / 3600,
        ]
        totals = [a + b for a, b in zip(totals, row)]
        print(f"{split:<11}{row[0]:>12,}{row[1]:>11.2f}{row[2]:>11.2f}{row[3]:>11.2f}")
    if len(splits) > 1:
        print(f"{'total':<11}{totals[0]:>12,}{totals[1]:>11.2f}{totals[2]:>11.2f}{totals[3]:>11.2f}")
    return 0


def _generate_strain(args: argparse.Namespace) -> int:
    from gwpe.config import load_config
    from gwpe.data.strain import dataset_config

    config = load_config(args.params)
    names = list(config.strain.datasets) if args.dataset == "all" else [args.dataset]
    for name in names:
        dataset_config(config, name)  # unknown names fail before any work
    if args.dry_run:
        return _dry_run_strain(config, names)
    import numpy as np

    from gwpe.data.checksum import dvc_md5
    from gwpe.data.strain import generate_dataset, snr_histogram, snr_summary
    from gwpe.tracking import stage_run

    for name in names:
        with stage_run(
            config, stage="generate-strain", run_name=f"generate-{name}", tags={"gwpe.dataset": name}
        ) as run:
            result = generate_dataset(config, name)
            digest = run.log_dataset("output", name, result.path) or dvc_md5(result.path)
            metrics = {
                "n_signals": result.n_signals,
                "bytes_on_disk": result.bytes_on_disk,
                "generation_seconds": round(result.stats.seconds, 3),
                "signals_per_second": round(result.stats.items_per_second, 3),
                **{k: round(float(v), 4) for k, v in snr_summary(result.snr).items()},
            }
            run.log_metrics(metrics)
            run.log_figure(snr_histogram(result.snr, name), f"plots/{name}-snr.png")
            if args.metrics:
                out = Path(str(args.metrics).replace("{dataset}", name))
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps({**metrics, "md5": digest}, indent=2) + "\n")
            if args.plots:
                counts, edges = np.histogram(result.snr, bins=40)
                rows = [
                    {"snr": round(float(c), 3), "signals": int(n)}
                    for c, n in zip(0.5 * (edges[1:] + edges[:-1]), counts)
                ]
                out = Path(str(args.plots).replace("{dataset}", name))
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(rows, indent=1) + "\n")
        print(
            f"{name}: {result.n_signals} signals -> {result.path} ({result.bytes_on_disk / 1e6:.1f} MB), "
            f"median SNR {metrics['snr_median']:.1f}, md5 {digest}"
        )
    return 0


def _dry_run_strain(config, names) -> int:
    from gwpe.data.strain import dataset_config, estimate_dataset, split_sizes

    print(
        f"profile {config.profile}: {config.strain.approximant}, PSD {config.strain.psd}, f_min {config.strain.f_min} Hz"
    )
    print(
        f"{'dataset':<12}{'train':>11}{'validation':>12}{'samples':>9}{'ms CPU':>8}{'disk GB':>10}{'raw GB':>9}{'CPU-hours':>11}"
    )
    for name in names:
        dataset = dataset_config(config, name)
        estimate = estimate_dataset(config, name)
        n = dataset.n_signals
        n_train, n_validation = split_sizes(dataset)
        length = int(round(dataset.sample_rate * dataset.duration)) * max(1, len(dataset.detectors))
        print(
            f"{name:<12}{n_train:>11,}{n_validation:>12,}{length:>9}{estimate['cpu_seconds_per_signal'] * 1e3:>8.2f}"
            f"{n * estimate['bytes_per_signal'] / 1e9:>10.2f}{n * estimate['raw_bytes_per_signal'] / 1e9:>9.2f}"
            f"{n * estimate['cpu_seconds_per_signal'] / 3600:>11.2f}"
        )
    return 0


def _train_wavenet(args: argparse.Namespace) -> int:
    from gwpe.config import load_config
    from gwpe.training.wavenet import train_wavenet, write_metrics

    config = load_config(args.params)
    if args.dry_run:
        from gwpe.training.wavenet import price_training

        print(price_training(config))
        return 0
    result = train_wavenet(config, resume=args.resume, progress_bar=not args.no_progress)
    if args.metrics:
        write_metrics(args.metrics, result.metrics)
    print(
        f"train wavenet: {result.epochs} epochs in {result.seconds:.0f} s, val_loss {result.metrics.get('val_loss', float('nan')):.4f} "
        f"-> {result.model_dir} (MLflow run {result.run_id})"
    )
    return 0


def _train_flow(args: argparse.Namespace) -> int:
    from gwpe.config import load_config
    from gwpe.training.flow import train_flow
    from gwpe.training.wavenet import write_metrics

    config = load_config(args.params)
    if args.dry_run:
        from gwpe.training.flow import price_flow_training

        print(price_flow_training(config, args.model))
        return 0
    result = train_flow(config, args.model, resume=args.resume, progress_bar=not args.no_progress)
    if args.metrics:
        write_metrics(args.metrics, result.metrics)
    print(
        f"train flow {args.model}: {result.epochs} epochs in {result.seconds:.0f} s, val NLL "
        f"{result.metrics.get('best_val_loss', float('nan')):.4f} -> {result.model_dir} (MLflow run {result.run_id})"
    )
    return 0


def _evaluate_flow(args: argparse.Namespace) -> int:
    from gwpe.config import load_config
    from gwpe.evaluation.flow_stage import evaluate_flow, format_report
    from gwpe.training.wavenet import write_metrics

    metrics = evaluate_flow(
        load_config(args.params),
        args.model,
        plots_dir=args.plots_dir,
        register=not args.no_register,
        progress=not args.no_progress,
    )
    if args.metrics:
        write_metrics(args.metrics, metrics)
    print(format_report(args.model, metrics))
    return 0


def _reference(args: argparse.Namespace) -> int:
    from gwpe.config import load_config
    from gwpe.inference.reference_stage import build_reference_posteriors
    from gwpe.training.wavenet import write_metrics

    summary = build_reference_posteriors(load_config(args.params), progress=not args.no_progress)
    if args.metrics:
        write_metrics(args.metrics, summary)
    print(f"reference posteriors for {len(summary['injections'])} {summary['dataset']} injections -> {summary['path']}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from gwpe.config import load_config
    from gwpe.inference.sample_stage import run_sampling
    from gwpe.training.wavenet import write_metrics

    metrics = run_sampling(load_config(args.params), progress=not args.no_progress, plots_dir=args.plots_dir)
    if args.metrics:
        write_metrics(args.metrics, metrics)
    print(
        f"flow-MCMC (warm, cold) and emcee posteriors for {metrics['dataset']} injection {metrics['injection']} -> {metrics['path']}"
    )
    return 0


def _evidence(args: argparse.Namespace) -> int:
    from gwpe.config import load_config
    from gwpe.inference.evidence_stage import format_evidence, run_evidence
    from gwpe.training.wavenet import write_metrics

    metrics = run_evidence(load_config(args.params), plots_dir=args.plots_dir, progress=not args.no_progress)
    if args.metrics:
        write_metrics(args.metrics, metrics)
    print(format_evidence(metrics))
    return 0


def _evaluate_wavenet(args: argparse.Namespace) -> int:
    from gwpe.config import load_config
    from gwpe.evaluation.wavenet_stage import evaluate_stage, format_table1
    from gwpe.training.wavenet import write_metrics

    config = load_config(args.params)
    metrics = evaluate_stage(
        config,
        args.params,
        model_dir=args.model,
        plots_dir=args.plots_dir,
        limit=args.limit,
        register=not args.no_register,
        progress=not args.no_progress,
    )
    if args.metrics:
        write_metrics(args.metrics, metrics)
    print(format_table1(metrics))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from gwpe.config import load_config
    from gwpe.tuning.sweep import run_sweep

    if args.dry_run:
        from gwpe.training.distill import price_distill

        print(price_distill(load_config(args.params)))
        return 0
    summary = run_sweep(
        load_config(args.params),
        workers=args.workers,
        metrics_path=args.metrics,
        plots_dir=args.plots_dir,
        progress_bar=not args.no_progress,
    )
    print(
        f"sweep {summary['study']}: trials {summary['trials']}; best trial {summary['trial']} val NLL {summary['value']:.4f} "
        f"with {summary['params']} -> {load_config(args.params).distill.sweep.best_params}"
    )
    return 0


def _train_teacher(args: argparse.Namespace) -> int:
    from gwpe.config import load_config
    from gwpe.training.distill import train_teacher
    from gwpe.training.wavenet import write_metrics

    result = train_teacher(load_config(args.params), resume=args.resume, progress_bar=not args.no_progress)
    if args.metrics:
        write_metrics(args.metrics, result.metrics)
    print(
        f"train teacher: {result.epochs} epochs in {result.seconds:.0f} s, val NLL {result.metrics.get('best_val_loss', float('nan')):.4f}, "
        f"{result.metrics['parameters']:,} parameters -> {result.model_dir} (MLflow run {result.run_id})"
    )
    return 0


def _train_student(args: argparse.Namespace) -> int:
    from gwpe.config import load_config
    from gwpe.training.distill import train_student
    from gwpe.training.wavenet import write_metrics

    result = train_student(load_config(args.params), args.mode, resume=args.resume, progress_bar=not args.no_progress)
    if args.metrics:
        write_metrics(args.metrics, result.metrics)
    print(
        f"train student ({args.mode}): {result.epochs} epochs in {result.seconds:.0f} s, val NLL "
        f"{result.metrics.get('best_val_loss', float('nan')):.4f}, {result.metrics['parameters']:,} parameters -> {result.model_dir}"
    )
    return 0


def _evaluate_distill(args: argparse.Namespace) -> int:
    from gwpe.config import load_config
    from gwpe.evaluation.distill_stage import evaluate_distill, format_table2
    from gwpe.training.wavenet import write_metrics

    metrics = evaluate_distill(
        load_config(args.params), plots_dir=args.plots_dir, register=not args.no_register, progress=not args.no_progress
    )
    if args.metrics:
        write_metrics(args.metrics, metrics)
    print(format_table2(metrics))
    return 0


def _models_list(args: argparse.Namespace) -> int:
    from gwpe.tracking.registry import list_models

    rows = list_models()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no registered models (run: dvc repro, or gwpe evaluate ...)")
        return 0
    print(f"{'name':<22}{'version':>8}  {'aliases':<18}{'metric':<16}{'value':>10}  run")
    for row in rows:
        print(
            f"{row['name']:<22}{row['version']:>8}  {','.join(row['aliases']) or '-':<18}{row['metric'] or '-':<16}"
            f"{row['value']:>10.4f}  {row['run_id']}"
        )
    return 0


def _models_promote(args: argparse.Namespace) -> int:
    from gwpe.tracking.registry import promote

    result = promote(args.name, args.version, args.alias)
    before = f" (was version {result['previous']})" if result["previous"] is not None else ""
    print(f"{result['name']}@{result['alias']} -> version {result['version']}{before}")
    return 0


def _models_pull(args: argparse.Namespace) -> int:
    from gwpe.tracking.registry import pull

    folder = pull(args.reference, args.dest)
    print(f"{args.reference} -> {folder} (weights.pt + config.json; load with gwpe.models.package.load_package)")
    return 0


def _infer(args: argparse.Namespace) -> int:
    from gwpe.inference.infer import format_result, run_infer

    detectors = args.detectors.split(",") if args.detectors else None
    result = run_infer(
        args.model,
        args.strain,
        args.n_samples,
        args.out,
        sample_rate=args.sample_rate,
        detectors=detectors,
        start=args.start,
        whiten_raw=args.whiten,
        plot=not args.no_plot,
        progress=not args.no_progress,
        seed=args.seed,
    )
    print(format_result(result))
    return 0


def _ui(args: argparse.Namespace) -> int:
    import os

    from gwpe.tracking import tracking_uri, ui_command

    command = ui_command(args.host, args.port)
    print(
        f"MLflow UI for {tracking_uri()} on http://{args.host}:{args.port}  (runs table: "
        f"http://{args.host}:{args.port}/#/experiments/1/runs?workflowType=machine_learning)",
        flush=True,
    )
    os.execv(command[0], command)
    return 0  # not reached


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="gwpe", description="Gravitational-wave parameter estimation platform: one subcommand per pipeline stage."
    )
    parser.add_argument("--version", action="version", version=f"gwpe {__import__('gwpe').__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)

    generate = commands.add_parser("generate", help="generate a waveform dataset (DVC stage)")
    products = generate.add_subparsers(dest="product", required=True, metavar="PRODUCT", parser_class=OneLineParser)
    h22 = products.add_parser("h22", help="l=m=2 mode of aligned-spin BBHs on the Khan-Huerta-Das (q, s1z, s2z) grid")
    h22.add_argument("--split", default="all", choices=SPLIT_CHOICES, help="which split (default: all)")
    h22.add_argument("--params", default="params.yaml", help="profile file (default: params.yaml)")
    h22.add_argument("--metrics", default=None, help="write DVC metrics JSON here ('{split}' is replaced)")
    h22.add_argument("--dry-run", action="store_true", help="print counts, disk size and CPU-hours; generate nothing")
    h22.set_defaults(handler=_generate_h22)

    strain = products.add_parser(
        "strain", help="whitened IMRPhenomPv2 detector strain for posterior estimation (Green et al.)"
    )
    strain.add_argument(
        "--dataset", default="all", help="a name under strain.datasets in the profile, or 'all' (default)"
    )
    strain.add_argument("--params", default="params.yaml", help="profile file (default: params.yaml)")
    strain.add_argument("--metrics", default=None, help="write DVC metrics JSON here ('{dataset}' is replaced)")
    strain.add_argument(
        "--plots", default=None, help="write the SNR histogram as DVC plot data here ('{dataset}' is replaced)"
    )
    strain.add_argument(
        "--dry-run", action="store_true", help="print counts, disk size and CPU-hours; generate nothing"
    )
    strain.set_defaults(handler=_generate_strain)

    train = commands.add_parser("train", help="train a model (DVC stage)")
    models = train.add_subparsers(dest="model", required=True, metavar="MODEL", parser_class=OneLineParser)
    wavenet = models.add_parser(
        "wavenet", help="physics-inspired WaveNet regressor of (q, s1z, s2z) from h22 (Khan, Huerta & Das)"
    )
    wavenet.add_argument("--params", default="params.yaml", help="profile file (default: params.yaml)")
    wavenet.add_argument("--resume", action="store_true", help="continue an unfinished run from its last checkpoint")
    wavenet.add_argument("--metrics", default=None, help="write final losses as DVC metrics JSON here")
    wavenet.add_argument("--no-progress", action="store_true", help="no progress bar")
    wavenet.add_argument(
        "--dry-run",
        action="store_true",
        help="measure training samples/s here and price the profile's epochs; train nothing",
    )
    wavenet.set_defaults(handler=_train_wavenet)

    flow = models.add_parser(
        "flow", help="a normalizing-flow posterior of flows.models on its strain dataset (Green et al.)"
    )
    flow.add_argument("--model", required=True, help="a name under flows.models in the profile (e.g. maf, cvae_plus)")
    flow.add_argument("--params", default="params.yaml", help="profile file (default: params.yaml)")
    flow.add_argument("--resume", action="store_true", help="continue an unfinished run from its last checkpoint")
    flow.add_argument("--metrics", default=None, help="write final losses as DVC metrics JSON here")
    flow.add_argument("--no-progress", action="store_true", help="no progress bar")
    flow.add_argument(
        "--dry-run",
        action="store_true",
        help="measure training samples/s here and price the profile's epochs; train nothing",
    )
    flow.set_defaults(handler=_train_flow)

    teacher = models.add_parser(
        "teacher", help="ResNet1D+IAF teacher with the sweep's best depth, width, transforms and learning rate"
    )
    teacher.add_argument("--params", default="params.yaml", help="profile file (default: params.yaml)")
    teacher.add_argument("--resume", action="store_true", help="continue an unfinished run from its last checkpoint")
    teacher.add_argument("--metrics", default=None, help="write final losses as DVC metrics JSON here")
    teacher.add_argument("--no-progress", action="store_true", help="no progress bar")
    teacher.set_defaults(handler=_train_teacher)

    student = models.add_parser(
        "student", help="a smaller ResNet1D+IAF, distilled from the teacher or trained directly"
    )
    student.add_argument(
        "--mode",
        required=True,
        choices=("distilled", "direct"),
        help="distilled: NLL + T^2 KL to the teacher; direct: NLL only",
    )
    student.add_argument("--params", default="params.yaml", help="profile file (default: params.yaml)")
    student.add_argument("--resume", action="store_true", help="continue an unfinished run from its last checkpoint")
    student.add_argument("--metrics", default=None, help="write final losses as DVC metrics JSON here")
    student.add_argument("--no-progress", action="store_true", help="no progress bar")
    student.set_defaults(handler=_train_student)

    evaluate = commands.add_parser("evaluate", help="evaluate a trained model on its test set (DVC stage)")
    evaluated = evaluate.add_subparsers(dest="model", required=True, metavar="MODEL", parser_class=OneLineParser)
    wavenet = evaluated.add_parser(
        "wavenet", help="Table 1, overlaps, Figs. 8-11; register the model and move 'champion' if better"
    )
    wavenet.add_argument("--params", default="params.yaml", help="profile file (default: params.yaml)")
    wavenet.add_argument("--model", default=None, help="model folder (default: wavenet.model_dir of the profile)")
    wavenet.add_argument("--metrics", default=None, help="write Table 1 as DVC metrics JSON here")
    wavenet.add_argument("--plots-dir", default="plots/wavenet", help="write the figures here (default: plots/wavenet)")
    wavenet.add_argument("--limit", type=int, default=None, help="evaluate only the first N test waveforms")
    wavenet.add_argument("--no-register", action="store_true", help="do not register the model in MLflow")
    wavenet.add_argument("--no-progress", action="store_true", help="no progress bar")
    wavenet.set_defaults(handler=_evaluate_wavenet)

    flow = evaluated.add_parser(
        "flow", help="validation NLL, p-p test with KS p-values, 90% widths, sampling time; register"
    )
    flow.add_argument("--model", required=True, help="a name under flows.models in the profile")
    flow.add_argument("--params", default="params.yaml", help="profile file (default: params.yaml)")
    flow.add_argument("--metrics", default=None, help="write the report as DVC metrics JSON here")
    flow.add_argument("--plots-dir", default="plots/flows", help="write the p-p plot here (default: plots/flows)")
    flow.add_argument("--no-register", action="store_true", help="do not register the model in MLflow")
    flow.add_argument("--no-progress", action="store_true", help="no progress bar")
    flow.set_defaults(handler=_evaluate_flow)

    distill = evaluated.add_parser(
        "distill", help="Table II (NLL, latency, parameters, memory), JS teacher-student, Table I; register"
    )
    distill.add_argument("--params", default="params.yaml", help="profile file (default: params.yaml)")
    distill.add_argument("--metrics", default=None, help="write the report as DVC metrics JSON here")
    distill.add_argument("--plots-dir", default="plots/distill", help="write the figures here (default: plots/distill)")
    distill.add_argument("--no-register", action="store_true", help="do not register the models in MLflow")
    distill.add_argument("--no-progress", action="store_true", help="no progress bar")
    distill.set_defaults(handler=_evaluate_distill)

    sweep = commands.add_parser(
        "sweep", help="Optuna study of ResNet depth, width, IAF transforms and learning rate (DVC stage)"
    )
    sweep.add_argument("--params", default="params.yaml", help="profile file (default: params.yaml)")
    sweep.add_argument(
        "--workers", type=int, default=None, help="local worker processes on the study (default: distill.sweep.workers)"
    )
    sweep.add_argument("--metrics", default=None, help="write the study summary as DVC metrics JSON here")
    sweep.add_argument("--plots-dir", default="plots/sweep", help="write the study's plots here (default: plots/sweep)")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep.add_argument(
        "--dry-run",
        action="store_true",
        help="price the sweep, teacher and students from rates measured here; run nothing",
    )
    sweep.set_defaults(handler=_sweep)

    reference = commands.add_parser(
        "reference", help="emcee reference posteriors for validation injections of flows.dataset (DVC stage)"
    )
    reference.add_argument("--params", default="params.yaml", help="profile file (default: params.yaml)")
    reference.add_argument("--metrics", default=None, help="write the sampler diagnostics as DVC metrics JSON here")
    reference.add_argument("--no-progress", action="store_true", help="no progress bar")
    reference.set_defaults(handler=_reference)

    sample = commands.add_parser(
        "sample", help="flow-MCMC (NPE warm start and cold start) and emcee posteriors for one injection (DVC stage)"
    )
    sample.add_argument("--params", default="params.yaml", help="profile file (default: params.yaml)")
    sample.add_argument("--metrics", default=None, help="write the samplers' diagnostics as DVC metrics JSON here")
    sample.add_argument("--plots-dir", default=None, help="also write the convergence plot here")
    sample.add_argument("--no-progress", action="store_true", help="no progress bars")
    sample.set_defaults(handler=_sample)

    evidence = commands.add_parser(
        "evidence",
        help="importance-sampled NPE, learned harmonic mean and posterior agreement for `gwpe sample`'s injection (DVC stage)",
    )
    evidence.add_argument("--params", default="params.yaml", help="profile file (default: params.yaml)")
    evidence.add_argument(
        "--metrics", default=None, help="write evidences, efficiencies and JS divergences as DVC metrics JSON here"
    )
    evidence.add_argument("--plots-dir", default=None, help="also write the corner plot and the annealing plot here")
    evidence.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
    evidence.set_defaults(handler=_evidence)

    registry = commands.add_parser(
        "models", help="registered models: list, promote (move an alias), pull (download a package)"
    )
    actions = registry.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=OneLineParser)
    listing = actions.add_parser("list", help="names, versions, aliases and each version's key metric")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=_models_list)
    promote = actions.add_parser("promote", help="point an alias (e.g. champion) at a version")
    promote.add_argument("name")
    promote.add_argument("version", type=int)
    promote.add_argument("--alias", required=True)
    promote.set_defaults(handler=_models_promote)
    pull = actions.add_parser(
        "pull", help="download NAME@ALIAS or NAME/VERSION into a folder (works against a remote server)"
    )
    pull.add_argument("reference", metavar="NAME@ALIAS|NAME/VERSION")
    pull.add_argument("--dest", required=True, help="folder to write the package into")
    pull.set_defaults(handler=_models_pull)

    infer = commands.add_parser("infer", help="posterior samples (flows) or (q, s1z, s2z) (WaveNet) from strain files")
    infer.add_argument("--model", required=True, help="NAME@ALIAS, NAME/VERSION or a package folder")
    infer.add_argument(
        "--strain", required=True, nargs="+", help="strain file(s): .npy, .npz, .h5/.hdf5 (gwpe or GWOSC), .txt (GWOSC)"
    )
    infer.add_argument("--n-samples", type=int, default=10_000, help="posterior samples (flows; default 10000)")
    infer.add_argument("--out", required=True, help="output HDF5 file (.h5); the corner plot goes beside it (.png)")
    infer.add_argument("--sample-rate", type=float, default=None, help="Hz, for files that do not record it")
    infer.add_argument(
        "--detectors", default=None, help="comma-separated, e.g. H1,L1, for files that do not record them"
    )
    infer.add_argument(
        "--start", type=float, default=None, help="GPS start of the model's window inside a longer segment"
    )
    infer.add_argument("--whiten", action="store_true", help="the strain is raw: whiten it with the model's PSD first")
    infer.add_argument("--seed", type=int, default=None, help="seed the sampler (reproducible samples)")
    infer.add_argument("--no-plot", action="store_true", help="no corner plot")
    infer.add_argument("--no-progress", action="store_true", help="no progress bar")
    infer.set_defaults(handler=_infer)

    ui = commands.add_parser("ui", help="start the MLflow UI on the project's tracking store")
    ui.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1, loopback only)")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(handler=_ui)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except GwpeError as exc:
        print(f"gwpe: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("gwpe: interrupted; finished chunks are kept, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
