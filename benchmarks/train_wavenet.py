"""WaveNet training throughput: samples/s of full optimisation steps (forward, backward, Adam) at the
default and paper input lengths, with each profile's own architecture, on CPU and on the GPU when present.

Inputs are synthetic tensors of the stored shape (2, L), so the figure is the model's cost alone; reading
the stores is measured by ``benchmarks/loader.py``. Each figure is the median of ``--steps`` steps after
one warm-up step (``gwpe.training.wavenet.measure_training_rate``, which ``gwpe train wavenet --dry-run``
also uses).

    python benchmarks/train_wavenet.py [--steps 5] [--devices cpu cuda]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from gwpe.config import load_config
from gwpe.training.wavenet import measure_training_rate
from gwpe.waveforms.grid import split_size

REPO = Path(__file__).resolve().parents[1]
CASES = {  # name: (profile, CPU batch, GPU batch)
    "default": (REPO / "params.yaml", 32, 128),
    "paper": (REPO / "experiments" / "paper.yaml", 2, 16),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=["default", "paper"])
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
        + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU")
    )
    for device in args.devices:
        for name in args.cases:
            path, cpu_batch, gpu_batch = CASES[name]
            config = load_config(path)
            rate = measure_training_rate(config, device, gpu_batch if device == "cuda" else cpu_batch, steps=args.steps)
            seconds = split_size(config.h22.grid, "train") / rate["samples_per_second"]
            epoch = f"{seconds / 3600:8.1f} h" if seconds >= 3600 else f"{seconds:8.1f} s"
            memory = f", peak {rate['peak_gpu_bytes'] / 2**30:.1f} GiB" if rate["peak_gpu_bytes"] else ""
            print(
                f"{name:>7} | L = {rate['length']:>7,} | {rate['parameters'] / 1e6:6.2f} M params | {device:>4} batch "
                f"{rate['batch']:>3} | {rate['samples_per_second']:9.1f} samples/s | "
                f"one epoch of the profile's train split: "
                f"{epoch}{memory}"
            )


if __name__ == "__main__":
    main()
