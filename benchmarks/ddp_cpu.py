"""CPU data parallelism: training samples/s with 1 and 2 DDP processes (gloo), measured in one run.

    .venv/bin/python benchmarks/ddp_cpu.py [--model wavenet|maf] [--epochs 3] [--samples N] [--batch B ...]
        [--compare-broadcast]

Each process gets one intra-op thread, so 2 processes use the 2 cores a 1-process run leaves half idle;
the per-process batch is fixed (the global batch doubles, as when nodes are added). Synthetic data of the
default profile's shapes, at the default profile's per-process batch and, for the MAF, also at Green et
al.'s 512 (the gradient all-reduce is per step, so its share falls as the batch grows). Epochs are 1,024
waveforms (WaveNet) and 16,384 signals (MAF), close to the default profile's 1,215 and 18,000, so an epoch's
fixed costs (loader start, epoch-end sync) weigh as in the pipeline; shorter epochs scatter the ratio by +-7 %.
The first epoch (process start, gloo rendezvous, warm-up) is
not timed. The 2-process runs use gwpe's strategy (``gwpe.training.trainer.ddp_strategy``: no per-step
buffer broadcast, batch-norm statistics averaged once per epoch); ``--compare-broadcast`` adds Lightning's
default DDP, which copies rank 0's buffers to every rank at each step, measured in the same run.
Prints samples/s per configuration, the speed-up and the per-rank efficiency (goal: >= 1.6x on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset


class EpochTimer(L.Callback):
    def __init__(self, out: str):
        self.out, self.times, self._start = out, [], None

    def on_train_epoch_start(self, trainer, module):
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        self.times.append(time.perf_counter() - self._start)
        if trainer.is_global_zero:
            Path(self.out).write_text(json.dumps(self.times))


class Data(L.LightningDataModule):
    def __init__(self, x, y, batch):
        super().__init__()
        self.data, self.batch = TensorDataset(x, y), batch

    def train_dataloader(self):
        rank, world = (self.trainer.global_rank, self.trainer.world_size)
        return DataLoader(
            self.data, batch_size=self.batch, sampler=DistributedSampler(self.data, world, rank, shuffle=True)
        )


from gwpe.models.flow_module import FlowModule  # noqa: E402


class PlainNLL(FlowModule):
    """The MAF's NLL without per-step logging: time the optimisation, not the metric sync."""

    def training_step(self, batch, batch_index):
        return self.model.loss(batch[1], batch[0])


def build(model: str):
    if model == "wavenet":
        from gwpe.models.wavenet import WaveNetConfig
        from gwpe.models.wavenet_module import WaveNetModule

        config = WaveNetConfig(channels=16, skip_channels=16, dilation_limit=256, leaf_steps=256, leaf_hidden=64)
        module = WaveNetModule(config, torch.zeros(3), torch.ones(3), learning_rate=1e-3, max_epochs=10)
        return module, (2, 2131), 3
    module = PlainNLL({"kind": "maf", "features": 5, "context_shape": [1, 1024], "transforms": 5, "hidden": [512] * 3})
    return module, (1, 1024), 5


def run(model: str, devices: int, samples: int, batch: int, epochs: int, broadcast: bool = False) -> float:
    from gwpe.training.trainer import AverageBuffers, ddp_strategy

    module, shape, features = build(model)
    x, y = torch.randn(samples, *shape), torch.randn(samples, features)
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    strategy = ("ddp_spawn" if broadcast else ddp_strategy("ddp_spawn")) if devices > 1 else "auto"
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[EpochTimer(out), AverageBuffers()],
    )
    trainer.fit(module, datamodule=Data(x, y, batch))
    times = json.loads(Path(out).read_text())[1:]
    return samples / (sum(times) / len(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("all", "wavenet", "maf"), default="all")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=None, help="per epoch (default: wavenet 1024, maf 16384)")
    parser.add_argument(
        "--batch",
        type=int,
        nargs="+",
        default=None,
        help="per process, one or more (default: wavenet 16; maf 256, the default profile's, and 512, Green et al.'s)",
    )
    parser.add_argument(
        "--compare-broadcast",
        action="store_true",
        help="also time Lightning's default DDP (buffers broadcast every step)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    defaults = {"wavenet": (1024, [16]), "maf": (16384, [256, 512])}
    report = []
    for model, batch in (
        (m, b)
        for m in (("wavenet", "maf") if args.model == "all" else (args.model,))
        for b in (args.batch or defaults[m][1])
    ):
        samples = args.samples or defaults[model][0]
        rates = {devices: run(model, devices, samples, batch, args.epochs) for devices in (1, 2)}
        broadcast = run(model, 2, samples, batch, args.epochs, broadcast=True) if args.compare_broadcast else None
        report.append(
            f"{model}: {samples} samples/epoch, batch {batch} per process, 1 thread per process, "
            f"{args.epochs - 1} timed epochs"
        )
        for devices, rate in rates.items():
            report.append(
                f"  {devices} process{'es' if devices > 1 else '  '}: {rate:8.1f} samples/s  "
                f"({rate / devices:.1f} per rank)"
            )
        report.append(
            f"  speed-up 2 vs 1: {rates[2] / rates[1]:.2f}x   "
            f"per-rank efficiency {rates[2] / rates[1] / 2:.0%}  (goal >= 1.6x)"
        )
        if broadcast is not None:
            report.append(
                f"  Lightning's default DDP (buffers broadcast each step), 2 processes: {broadcast:8.1f} samples/s, "
                f"{broadcast / rates[1]:.2f}x"
            )
    print("\n".join(report))


if __name__ == "__main__":
    main()
