"""gwpe's MAF against the ``sbi`` library's NPE with a zuko MAF, in two arms: same data, same CPU threads.

Three fits learn p(theta | strain) on one strain-5d store (noise-free whitened signals; N(0, 1) noise added at
load time): gwpe's MAF and two arms of sbi's NPE that differ only in how noise reaches the training data
(below, "The two sbi arms"). By default each trains --epochs epochs; with --budget-seconds each sbi arm instead
trains for a wall-clock budget (S seconds, or, with no value, as long as gwpe's fit of the same seed took),
counting epochs as they come. All are measured in the same run on:
- validation NLL: mean -log q(theta_z | strain) over the store's whole validation split with gwpe's fixed
  noise realisation per index, in the SAME space for all: standardised parameters theta_z = (theta - mean)
  / std with the store's stored standardisation. sbi is trained on theta_z itself (its own z-scoring is then
  ~identity and its Jacobian is inside its flow), so its raw density estimator already reports log q in
  that space and no sum(log std) correction is needed (it would be, had sbi been fed physical theta);
  sbi's posterior.log_prob is not used: it renormalises for mass outside the prior box, gwpe has no box;
- KS p-value per parameter (chirp mass derived from m1, m2 too) of the p–p test on the first --injections
  validation signals, --samples draws each, in physical units (``gwpe.evaluation.calibration.calibrate``);
- training throughput: epochs x signals fitted per epoch / wall time of the whole fit (each fit's
  per-epoch validation included; gwpe's also includes its final whole-training-set batch-norm statistics pass;
  sbi's counts the signals it fits on, its held-out ones excluded); epochs trained and fit seconds are reported;
- interleaved step throughput: after each seed's evaluation, one optimisation step (forward, backward, Adam)
  of each fit on the same batch of 256 training signals, the fits alternating step by step (35 steps each,
  5 warm-up), median: the model-and-optimiser cost alone, paired in time, so host noise cancels in the ratio
  (the two sbi arms' steps are the same computation: a check on the pairing);
- every figure per training seed (--seeds, default 0 1 2) and, for the comparison, its median over the seeds
  (throughput: the mean). A KS p-value of one 20-epoch fit moves with the fit's random stream (measured: gwpe's
  t_c p went from 0.39 to 0.02-0.03 when only float rounding of the update changed), so one fit decides no
  column. Each seed fits all three, the order reversed between seeds (gwpe, sbi, sbi-fresh for even positions in
  the list, the reverse for odd: ABBA), so which runs first on a shared machine does not decide the throughput
  column; with a budget taken from gwpe's fit, gwpe fits first and only the two sbi arms alternate;
- sampling time for 10^4 samples for one observation (best of --repeats): gwpe ``module.sample`` (its fast
  sampler) vs sbi ``posterior.sample((10_000,), x=x0)``.

Fairness. Identical training signals (the store's train split, first --max-train), batch 256, Adam at 4e-4
(sbi's gradient clipping is turned off, gwpe has none). gwpe halves its learning rate every --halve-every
epochs (default 80, the paper's, so no schedule within 20 epochs, like sbi's constant rate; 7 is what the
default profile's ``gwpe train flow`` uses: measured, val NLL 0.092 instead of 0.050, phi0 KS 0.006 vs 0.005),
--epochs each unless --budget-seconds, flattened strain (1024) as context, no embedding net, 5 MADE units of
3 x 512 with alternating orders in all three fits (sbi's hidden_features=512 would mean num_transforms hidden
layers per unit, so the list [512, 512, 512] is passed).

The two sbi arms: the same network (``posterior_nn("zuko_maf")``, same sizes), the same signals, batch and
learning rate, both trained by sbi's own ``train()`` loop with its density estimator's loss and its Adam;
only the data feeding and the choice of weights differ.
- sbi (fixed pairs, sbi's usual use): trains on fixed (theta, x) pairs, one noise realisation per training
  signal (seed + 1, independent of the validation noise); sbi holds out its default 10 % of those pairs and
  returns the weights of its best epoch on them (on 3,600 signals it overfits the fixed pairs within a few
  epochs, so that is an early one). For --epochs: stop_after_epochs so large that it never stops early (its
  loop runs max_num_epochs + 1 epochs, so it is given --epochs - 1); with a budget, sbi's stopping rule
  (``_converged``, its only hook between epochs) is wrapped: sbi's own rule still scores each epoch and keeps
  the best, and when the budget is spent (checked after each epoch's validation) the best weights are loaded.
- sbi-fresh (fresh noise, like gwpe): the pairs hold the noise-free signals and a ``collate_fn`` passed through
  ``train(dataloader_kwargs=...)`` adds fresh N(0, 1) noise to every batch of every epoch; sbi's z-scoring of x
  is computed on one noisy realisation of the training signals (as the fixed arm's is), not on the noise-free
  ones. Its weights are those of its last epoch, like gwpe's, with the store's validation split as the test set
  (not used for selection): sbi's stopping rule is replaced by "--epochs epochs done" or "budget spent", so no
  best-epoch reload happens. sbi requires a non-empty held-out set, so it holds out 2 signals (one batch; its
  noisy loss is computed each epoch and not used) and fits on the rest, not 90 %.

Other differences, part of each design and kept: gwpe draws fresh noise every epoch like sbi-fresh; it keeps its
last epoch (the validation split is the test set here, so it is not used for selection); gwpe has batch norm
between MADE units, sbi's MAF has none but z-scores theta and x (sbi defaults); sbi's training loader drops the
last partial batch (gwpe's does not); gwpe's training uses its fused Adam
(``gwpe.models.optim.adam``) and MADE units that skip the strain's input gradient
(``gwpe.models.flows.made``), sbi torch's default Adam and zuko's MADE: the same update and the same function,
computed with less work, so that is part of gwpe's column.
gwpe's MAF wraps phi0 onto [0, 2 pi) and averages over phi0 -> phi0 + pi
(``--phase-symmetry``, gwpe's default ``flows.phase_symmetry: pi``; ``gwpe.models.flows.phase``): its samples and
its validation NLL are those of that density; sbi's flows are their own. sbi's prior is a BoxUniform over the
standardised prior box (m1 >= m2 is not a box, so not imposed): posterior.sample rejects draws outside it (its
default); the time without rejection and the accepted fraction are printed too (for each sbi arm). gwpe samples
are not truncated.
Threads: torch.set_num_threads(--threads) for everything; default 1, as in benchmarks/sampling.py: a
one-core sampling time is the per-observation cost, and it keeps timings stable on a shared machine.

    pip install -e '.[bench]'    # sbi
    python benchmarks/sbi_baseline.py --store data/strain/strain-5d.zarr [--epochs 20] [--injections 200]
        [--samples 1000] [--max-train N] [--threads 1] [--repeats 3] [--seed 0] [--halve-every 80]
        [--phase-symmetry pi] [--seeds 0 1 2] [--budget-seconds [S]] [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import time
import warnings
from types import SimpleNamespace
from typing import Callable, NamedTuple

import lightning as L
import numpy as np
import torch
import zarr
from torch.utils.data import default_collate

from gwpe.data.strain_datamodule import StrainDataModule, StrainDataset
from gwpe.evaluation.calibration import calibrate
from gwpe.models.flow_module import FlowModule
from gwpe.physics import chirp_mass
from gwpe.training.flow import phi0_symmetry
from gwpe.waveforms.priors import prior_bounds

BATCH, LR, HIDDEN, UNITS = 256, 4e-4, [512, 512, 512], 5
GWPE, SBI, SBI_FRESH = "gwpe MAF", "sbi NPE (zuko MAF)", "sbi-fresh NPE (zuko MAF)"


class Fit(NamedTuple):
    step: Callable  # one optimisation step on a batch (strain, theta), the fit's own optimiser
    rate: float  # epochs x signals fitted per epoch / wall time of the whole fit
    log_prob: Callable  # (theta_z, strain) -> log q(theta_z | strain)
    sample: Callable  # (strain, k) -> k standardised draws
    epochs: int  # epochs trained
    seconds: float  # wall time of the whole fit
    net: object = None  # sbi: its trained density estimator (sample, log_prob), for benchmarks/npe_quality.py


class Data(StrainDataModule):
    """StrainDataModule whose train split is cut to its first ``max_train`` signals."""

    def __init__(self, path, seed: int, max_train: int | None, phase_flip: bool = False):
        super().__init__(path, batch_size=BATCH, seed=seed, phase_flip=phase_flip)
        self.max_train = max_train

    def make_dataset(self, split):
        dataset = super().make_dataset(split)
        if split == "train" and self.max_train:
            dataset.targets = dataset.targets[: self.max_train]  # __len__ and indices follow the targets
        return dataset


class NoTracking:  # sbi's default tracker writes TensorBoard logs to ./sbi-logs
    log_dir = None
    log_metric = log_metrics = log_params = add_figure = flush = lambda self, *args, **kwargs: None


def best_of(repeats: int, draw) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        draw()
        times.append(time.perf_counter() - start)
    return min(times)


def validation_nll(log_prob, data) -> float:
    with torch.no_grad():
        values = [-log_prob(theta, strain) for strain, theta in data.val_dataloader()]
    return float(torch.cat(values).mean())


def train_gwpe(data, epochs: int, seed: int, halve_every: int, phase_symmetry: str):
    L.seed_everything(seed, verbose=False)
    n_train, context = len(data.dataset("train")), list(data.dataset("train")[0][0].shape)
    module = FlowModule(
        {
            "kind": "maf",
            "features": len(data.standardisation.parameters),
            "context_shape": context,
            "transforms": UNITS,
            "hidden": HIDDEN,
            "phase": phi0_symmetry(phase_symmetry, data.standardisation),
        },
        learning_rate=LR,
        halve_every=halve_every,
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    module.set_training_statistics(data.dataset("train"), BATCH)  # as gwpe train flow does before saving
    seconds = time.perf_counter() - start
    rate = epochs * n_train / seconds
    module.eval()
    optimizer = trainer.optimizers[0]  # the fit's own (fused) Adam, with its state

    def step(strain, theta):
        module.train()
        optimizer.zero_grad()
        module.model.loss(theta, strain).backward()
        optimizer.step()

    return Fit(step, rate, module.model.log_prob, module.sample, epochs, seconds)


def train_sbi(data, epochs: int, seed: int, box: np.ndarray, fresh: bool = False, budget: float | None = None):
    """sbi's NPE with a zuko MAF, trained by sbi's own ``train()`` loop (its density estimator, its loss, its
    Adam). ``fresh``: the pairs hold the noise-free signals and a collate function adds fresh N(0, 1) noise to
    every batch; sbi keeps a minimal held-out set (2 signals: its loader needs one batch) and the last epoch's
    weights are kept. Otherwise one fixed noise realisation per signal, sbi's default 10 % held out, its best
    epoch on them kept. ``budget``: train until that many seconds of wall clock have passed (checked after each
    epoch, so the last epoch ends past it) instead of ``epochs`` epochs."""
    from sbi.inference import NPE
    from sbi.neural_nets import posterior_nn
    from sbi.utils import BoxUniform

    torch.manual_seed(seed)
    signals = StrainDataset(data.path, "train", noise="none")
    pairs = [signals[i] for i in range(len(data.dataset("train")))]
    x = torch.stack([strain for strain, _ in pairs]).flatten(1)  # noise-free whitened signals
    theta = torch.stack([target for _, target in pairs])
    noise = torch.Generator().manual_seed(seed + 1)
    prior = BoxUniform(torch.as_tensor(box[:, 0], dtype=torch.float32), torch.as_tensor(box[:, 1], dtype=torch.float32))
    estimator = posterior_nn(model="zuko_maf", hidden_features=HIDDEN, num_transforms=UNITS)
    options = {}
    if fresh:

        def build(theta, x):  # sbi z-scores x on what it is given: one noisy realisation, as the fixed arm's
            return estimator(theta, x + torch.randn(x.shape, generator=noise))

        def collate(batch):  # every batch, every epoch: fresh noise (the held-out batch too, unused)
            theta, x, masks = default_collate(batch)
            return theta, x + torch.randn(x.shape, generator=noise), masks

        options = {"validation_fraction": 1.5 / len(x), "dataloader_kwargs": {"collate_fn": collate}}
    else:
        x = x + torch.randn(x.shape, generator=noise)  # one fixed realisation
        build = estimator
    inference = NPE(prior=prior, density_estimator=build, device="cpu", show_progress_bars=False, tracker=NoTracking())
    with warnings.catch_warnings():
        if fresh:  # sbi's z-scoring check of the noise-free x it is handed; build() z-scores noisy x instead
            warnings.filterwarnings("ignore", message="Data has extreme outliers")
        inference.append_simulations(theta, x)
    if fresh or budget is not None:
        # sbi's stopping rule, replaced: it is sbi's only hook between epochs (called before each, with the number
        # of epochs trained, after that epoch's validation). The fixed arm still runs sbi's own rule first, which
        # scores the epoch and keeps the best weights on its held-out pairs (it never stops: patience 10^9), and
        # reloads them when the time is up; the fresh arm stops and keeps the last epoch's weights.
        keep_best = inference._converged

        def converged(epoch: int, stop_after_epochs: int) -> bool:
            best = False if fresh else keep_best(epoch, stop_after_epochs)
            done = epoch >= 1 and time.perf_counter() > deadline if budget is not None else epoch >= epochs
            if done and not fresh:
                inference._neural_net.load_state_dict(inference._best_model_state_dict)
            return best or done

        inference._converged = converged
    start = time.perf_counter()
    deadline = start + (budget or 0.0)
    with contextlib.redirect_stdout(io.StringIO()):  # "converged after N epochs", printed without a newline
        net = inference.train(
            training_batch_size=BATCH,
            learning_rate=LR,
            stop_after_epochs=10**9,
            # no budget: the fixed arm's loop runs max_num_epochs + 1 epochs; the replaced rule stops the others
            max_num_epochs=epochs - 1 if not (fresh or budget is not None) else 2**31 - 1,
            clip_max_norm=None,
            **options,
        )
    seconds = time.perf_counter() - start
    trained = len(inference._summary["training_loss"])
    assert budget is not None or trained == epochs, f"sbi trained {trained} epochs, not {epochs}"
    n_fit = len(inference.train_indices)  # 90 % of the pairs (sbi's default validation_fraction); fresh: all but 2
    assert not fresh or n_fit == len(x) - 2, n_fit
    rate = trained * n_fit / seconds
    net.eval()
    posterior = inference.build_posterior(net)
    log_prob = lambda theta, strain: net.log_prob(theta.unsqueeze(0), strain.flatten(1))[0]  # noqa: E731

    def sample(x0, k, reject=True):
        return posterior.sample((k,), x=x0.reshape(1, -1), show_progress_bars=False, reject_outside_prior=reject)

    trained_net = inference._neural_net  # what sbi's optimiser holds (train() returns a copy of it)

    def step(strain, theta):  # one step of sbi's own epoch loop (NeuralInference._train_epoch), its optimiser
        trained_net.train()
        inference.optimizer.zero_grad()
        trained_net.loss(theta, strain.flatten(1)).mean().backward()
        inference.optimizer.step()

    return Fit(step, rate, log_prob, sample, trained, seconds, net)


def interleaved_step_seconds(steps: dict, batch, warmup: int = 5, n: int = 30) -> dict:
    """Median seconds of one optimisation step (forward, backward, Adam) of each side on the same batch, the
    sides alternating step by step (A B A B ...), so the shared machine's slow spells hit both alike."""
    times = {name: [] for name in steps}
    for i in range(warmup + n):
        for name, step in steps.items():
            start = time.perf_counter()
            step(*batch)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in times.items()}


def pp_test(sample, validation, standardisation, parameters, ranges, injections: int, k: int):
    draws, truth = [], []
    for index in range(injections):
        strain, theta = validation[index]
        draws.append(standardisation.inverse(sample(strain, k).double().numpy()))
        truth.append(standardisation.inverse(theta.double().numpy()))
    draws, truth = np.asarray(draws), np.asarray(truth)
    if "chirp_mass" in parameters:
        i, j = parameters.index("m1"), parameters.index("m2")
        draws = np.concatenate([draws, chirp_mass(draws[..., i], draws[..., j])[..., None]], axis=-1)
        truth = np.concatenate([truth, chirp_mass(truth[:, i], truth[:, j])[:, None]], axis=-1)
    return calibrate(draws, truth, parameters, ranges)


def budget_seconds(text: str) -> str | float:
    if text == "gwpe":
        return text
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"a budget must be positive seconds or 'gwpe', got {text}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="an existing strain-5d zarr store")
    parser.add_argument("--epochs", type=int, default=20, help="gwpe's epochs; sbi's too unless --budget-seconds")
    parser.add_argument(
        "--budget-seconds",
        type=budget_seconds,
        nargs="?",
        const="gwpe",
        default=None,
        help="each sbi arm trains for this many seconds of wall clock (epochs counted as they come) instead of "
        "--epochs; without a value (or 'gwpe'): as long as gwpe's fit of the same seed took (gwpe then fits first)",
    )
    parser.add_argument("--injections", type=int, default=200)
    parser.add_argument("--samples", type=int, default=1000, help="posterior samples per injection")
    parser.add_argument("--max-train", type=int, default=None, help="train on the first N training signals only")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="validation noise and sampling seed (the demo's is 0)")
    parser.add_argument(
        "--phase-flip",
        action="store_true",
        help="gwpe trains on phi0 + pi half the time (the profile's flows.phase_flip; exact for (2,2)-only signals)",
    )
    parser.add_argument(
        "--halve-every",
        type=int,
        default=80,
        help="gwpe's learning rate halves every N epochs "
        "(default 80, the paper's: none within 20 epochs; 7: the default profile's)",
    )
    parser.add_argument(
        "--phase-symmetry",
        choices=["pi", "periodic", "none"],
        default="pi",
        help="gwpe's MAF over phi0 (flows.phase_symmetry; default pi, gwpe's default; none: the paper's raw flow)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="training seeds: each side is fitted once per seed, the first side alternating (ABBA)",
    )
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds must be distinct, got {args.seeds}")
    if args.epochs < 2 and args.budget_seconds is None:
        parser.error("--epochs must be >= 2 (sbi always runs at least max_num_epochs + 1 = 2 epochs)")
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # device banners and tips
    warnings.filterwarnings("ignore", message=".*(LeafSpec|max_num_epochs|lie outside the prior support).*")
    data = Data(args.store, args.seed, args.max_train, args.phase_flip)
    standardisation, validation = data.standardisation, data.dataset("validation")
    parameters = list(standardisation.parameters)
    prior = SimpleNamespace(**zarr.open_group(args.store, mode="r").attrs["prior"])
    bounds = np.array([prior_bounds(prior, p) for p in parameters])
    box = (bounds - standardisation.mean[:, None]) / standardisation.std[:, None]
    if "m1" in parameters and "m2" in parameters:
        parameters.append("chirp_mass")
    ranges = [np.subtract(*prior_bounds(prior, p)[::-1]) for p in parameters]
    n_inj = min(args.injections, len(validation))
    x0 = validation[0][0]
    print(
        f"torch {torch.__version__}, {args.threads} CPU thread(s); {len(data.dataset('train')):,} training signals, "
        f"{len(validation):,} validation, {args.epochs} epochs; p–p: {n_inj} injections x {args.samples} samples",
        flush=True,
    )

    trainers = {
        GWPE: lambda seed, budget: train_gwpe(data, args.epochs, seed, args.halve_every, args.phase_symmetry),
        SBI: lambda seed, budget: train_sbi(data, args.epochs, seed, box, budget=budget),
        SBI_FRESH: lambda seed, budget: train_sbi(data, args.epochs, seed, box, fresh=True, budget=budget),
    }
    arms = [SBI, SBI_FRESH]
    runs, step_ratios = {name: [] for name in trainers}, {name: [] for name in arms}
    strain_batch, theta_batch = next(iter(data.train_dataloader()))
    for i, seed in enumerate(args.seeds):
        steps, budget = {}, None if args.budget_seconds == "gwpe" else args.budget_seconds
        order = list(trainers) if i % 2 == 0 else list(trainers)[::-1]  # ABBA: run order is not a bias
        if args.budget_seconds == "gwpe":  # gwpe's fit time is the budget: it fits first, the sbi arms alternate
            order = [GWPE] + (arms if i % 2 == 0 else arms[::-1])
        for name in order:
            fit = trainers[name](seed, budget)
            if name == GWPE and args.budget_seconds == "gwpe":
                budget = fit.seconds
            steps[name] = fit.step
            torch.manual_seed(args.seed)  # the same sampling stream for every fit
            calibration = pp_test(fit.sample, validation, standardisation, parameters, ranges, n_inj, args.samples)
            row = {
                "seed": seed,
                "val_nll": validation_nll(fit.log_prob, data),
                "train_samples_per_s": fit.rate,
                "epochs": fit.epochs,
                "fit_seconds": fit.seconds,
                "sampling_seconds_1e4": best_of(args.repeats, lambda sample=fit.sample: sample(x0, 10_000)),
                **calibration.summary(),
            }
            if name in arms:
                raw = fit.sample(x0, 10_000, reject=False)
                inside = ((raw >= torch.as_tensor(box[:, 0])) & (raw <= torch.as_tensor(box[:, 1]))).all(1)
                row.update(
                    budget_seconds=budget,
                    sampling_seconds_1e4_no_rejection=best_of(
                        args.repeats, lambda sample=fit.sample: sample(x0, 10_000, False)
                    ),
                    in_prior_fraction=float(inside.float().mean()),
                )
            runs[name].append(row)
            print(
                f"seed {seed}: {name}: val NLL {row['val_nll']:.3f}, min KS p {row['min_ks_pvalue']:.3f}, "
                f"{fit.rate:,.0f} samples/s, {fit.epochs} epochs in {fit.seconds:.1f} s",
                flush=True,
            )
        seconds = interleaved_step_seconds(steps, (strain_batch, theta_batch))  # after evaluation: it trains on
        for name in trainers:
            runs[name][-1]["step_samples_per_s"] = len(theta_batch) / seconds[name]
        for name in arms:
            step_ratios[name].append(seconds[name] / seconds[GWPE])
        print(
            f"seed {seed}: interleaved steps of {len(theta_batch)}: gwpe {1e3 * seconds[GWPE]:.1f} ms, "
            + ", ".join(
                f"{name.split()[0]} {1e3 * seconds[name]:.1f} ms ({step_ratios[name][-1]:.2f}x)" for name in arms
            ),
            flush=True,
        )

    results = {}
    for name, rows in runs.items():
        results[name] = {
            "val_nll": float(np.median([r["val_nll"] for r in rows])),
            "ks_pvalue": {p: float(np.median([r["ks_pvalue"][p] for r in rows])) for p in parameters},
            "train_samples_per_s": float(np.mean([r["train_samples_per_s"] for r in rows])),
            "step_samples_per_s": float(np.median([r["step_samples_per_s"] for r in rows])),
            "epochs": float(np.median([r["epochs"] for r in rows])),
            "fit_seconds": float(np.median([r["fit_seconds"] for r in rows])),
            "sampling_seconds_1e4": float(np.median([r["sampling_seconds_1e4"] for r in rows])),
            "seeds": rows,
        }
        for key in ("sampling_seconds_1e4_no_rejection", "in_prior_fraction"):
            if key in rows[0]:
                results[name][key] = float(np.median([r[key] for r in rows]))
    gwpe = results[GWPE]
    short = [p.replace("chirp_mass", "Mc") for p in parameters]
    width = 36
    print(
        f"\n{'method':<{width}}{'val NLL':>9}"
        + "".join(f"{'KS ' + p:>9}" for p in short)
        + f"{'epochs':>8}{'train [1/s]':>13}{'1e4 draws [s]':>15}"
    )
    for name, result in results.items():
        for r in result["seeds"] + [result]:
            label = (
                f"{name}, seed {r['seed']}" if "seed" in r else f"{name}, " + ("median" if len(args.seeds) > 1 else "")
            )
            print(
                f"{label.rstrip(', '):<{width}}{r['val_nll']:>9.3f}"
                + "".join(f"{r['ks_pvalue'][p]:>9.3f}" for p in parameters)
                + f"{r['epochs']:>8g}{r['train_samples_per_s']:>13.0f}{r['sampling_seconds_1e4']:>15.3f}"
            )
    comparisons = {}
    for name in arms:
        sbi = results[name]
        wins = {p: gwpe["ks_pvalue"][p] >= sbi["ks_pvalue"][p] for p in parameters}
        ratios = comparisons[name] = {
            "val_nll_difference": gwpe["val_nll"] - sbi["val_nll"],
            "train_throughput_ratio": gwpe["train_samples_per_s"] / sbi["train_samples_per_s"],
            "sampling_speedup": sbi["sampling_seconds_1e4"] / gwpe["sampling_seconds_1e4"],
            "step_throughput_ratio_median": float(np.median(step_ratios[name])),
            "step_throughput_ratios": step_ratios[name],
            "ks_columns_gwpe_at_least_sbi": sum(wins.values()),
        }
        print(
            f"{'gwpe vs ' + name.split()[0]:<{width}}{ratios['val_nll_difference']:>+9.3f}"
            + "".join(f"{'>=' if wins[p] else '<':>9}" for p in parameters)
            + f"{'':>8}{ratios['train_throughput_ratio']:>12.2f}x{ratios['sampling_speedup']:>14.1f}x"
        )
    for name in arms:
        print(
            f"interleaved optimisation steps, gwpe / {name.split()[0]} samples/s: median "
            f"{np.median(step_ratios[name]):.2f}x (per seed: {', '.join(f'{r:.2f}x' for r in step_ratios[name])})"
        )
    if args.budget_seconds is None:
        budget = f"{args.epochs} epochs each"
    elif args.budget_seconds == "gwpe":
        budget = f"gwpe {args.epochs} epochs, each sbi arm as long as gwpe's fit of its seed"
    else:
        budget = f"gwpe {args.epochs} epochs, each sbi arm {args.budget_seconds:g} s"
    print(
        f"(medians over training seeds {args.seeds}, throughput their mean; {budget}; "
        f"NLL in standardised parameters, nats, lower is better: gwpe - sbi; throughput gwpe/sbi; sampling speed-up "
        f"sbi/gwpe. Without prior rejection: "
        + "; ".join(
            f"{name.split()[0]} {results[name]['sampling_seconds_1e4_no_rejection']:.3f} s, "
            f"{100 * results[name]['in_prior_fraction']:.1f} % of its raw draws inside the prior box"
            for name in arms
        )
        + ")"
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {
                    "args": vars(args),
                    "torch": torch.__version__,
                    "results": results,
                    "gwpe_vs_sbi": comparisons[SBI],
                    "gwpe_vs_sbi_fresh": comparisons[SBI_FRESH],
                },
                handle,
                indent=2,
            )


if __name__ == "__main__":
    main()
