"""Teacher vs students: inference latency and peak memory for N posterior samples of one event, in one run.

    .venv/bin/python benchmarks/distill.py [--models models/distill] [--n 1 1000 10000 50000] [--threads 2]

Loads the three packages written by `dvc repro` (teacher, student-direct, student-distilled), times
``sample(strain, N)`` (embedding once + N IAF draws; median of --repeats after a warm-up, interleaved across
models so machine noise hits all alike) and measures peak memory (weights + peak tensor bytes on CPU,
``max_memory_allocated`` on a GPU). Prints the Table II columns and the student/teacher ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from gwpe.evaluation.distill import ROLES, peak_memory
from gwpe.models.flow_module import FlowModule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="models/distill")
    parser.add_argument("--n", type=int, nargs="+", default=[1, 1000, 10_000, 50_000])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    modules = {role: FlowModule.load_model(Path(args.models) / role).to(device) for role in ROLES}
    shape = modules["teacher"].flow_config["context_shape"]
    strain = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
    print(f"device {device} ({torch.get_num_threads()} threads), strain {tuple(shape)}")
    print(f"{'model':<19}{'parameters':>12}")
    for role, module in modules.items():
        print(f"{role:<19}{sum(p.numel() for p in module.parameters()):>12,}")

    def timed(module, n):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        module.sample(strain, n)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    print(
        f"\n{'N':>7}"
        + "".join(f"{role + ' ms':>22}" for role in ROLES)
        + f"{'distilled/teacher':>19}"
        + f"{'mem teacher MB':>16}{'mem distilled MB':>18}"
    )
    for n in args.n:
        for module in modules.values():
            timed(module, n)  # warm-up
        times = {role: [] for role in ROLES}
        for _ in range(args.repeats):
            for role, module in modules.items():
                times[role].append(timed(module, n))
        median = {role: 1e3 * statistics.median(t) for role, t in times.items()}
        memory = {
            role: peak_memory(modules[role], strain, n)["peak_memory_mb"] for role in ("teacher", "student-distilled")
        }
        print(
            f"{n:>7}"
            + "".join(f"{median[role]:>22.2f}" for role in ROLES)
            + f"{median['student-distilled'] / median['teacher']:>19.2f}"
            + f"{memory['teacher']:>16.2f}{memory['student-distilled']:>18.2f}"
        )


if __name__ == "__main__":
    main()
