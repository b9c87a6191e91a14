"""One training step of the default MAF: zuko's MADE and torch's loop Adam against gwpe's split MADE and fused Adam.

The default profile's MAF (5 MADE units of 3 x 512, batch norm, 5 parameters conditioned on 1,024 strain
samples), batch 256, on CPU. Four variants of the same model from the same initial weights:
- zuko + Adam: zuko's ``MaskedAutoregressiveTransform.meta`` (concatenates [x, c], so backward computes the
  gradient with respect to the 1,024 strain columns too) and ``torch.optim.Adam`` (for-loop implementation,
  torch's CPU default; what sbi uses);
- split MADE: ``gwpe.models.flows.made.ContextSplitMADE`` (x and c through separate parts of the first layer);
- fused Adam: ``gwpe.models.optim.adam`` (one fused kernel over all tensors);
- gwpe: both, what ``gwpe train flow`` runs.
Steps alternate between the variants (A B C D A B C D ...), so a slow spell of a shared machine hits all of
them alike; each figure is the median over --steps steps after --warmup, ratios against zuko + Adam from the
same run. Forward, backward and optimiser step are timed separately.

    python benchmarks/flow_step.py [--threads 1] [--steps 30] [--warmup 5] [--batch 256] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import nullcontext

import torch

from gwpe.models.flows import build_maf
from gwpe.models.flows.made import zuko_made
from gwpe.models.optim import adam

VARIANTS = {
    "zuko + Adam": (False, False),
    "split MADE + Adam": (True, False),
    "zuko + fused Adam": (False, True),
    "gwpe (split + fused)": (True, True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.batch < 1 or args.threads < 1:
        parser.error(
            f"--steps {args.steps}, --warmup {args.warmup}, --batch {args.batch}, --threads {args.threads}: "
            "allowed: steps >= 1, warmup >= 0, batch >= 1, threads >= 1"
        )
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    first = build_maf(5, 1024)
    models, optimizers = {}, {}
    for name, (_, fused) in VARIANTS.items():
        model = build_maf(5, 1024)
        model.load_state_dict(first.state_dict())
        models[name] = model.train()
        optimizers[name] = adam(model.parameters(), lr=4e-4) if fused else torch.optim.Adam(model.parameters(), lr=4e-4)
    x, strain = torch.randn(args.batch, 5), torch.randn(args.batch, 1024)
    times = {name: {"forward": [], "backward": [], "optimiser": [], "step": []} for name in VARIANTS}
    for step in range(args.warmup + args.steps):
        for name, (split, _) in VARIANTS.items():
            model, optimizer = models[name], optimizers[name]
            with nullcontext() if split else zuko_made(model):
                t0 = time.perf_counter()
                loss = model.loss(x, strain)
                t1 = time.perf_counter()
                optimizer.zero_grad()
                loss.backward()
                t2 = time.perf_counter()
                optimizer.step()
                t3 = time.perf_counter()
            if step >= args.warmup:
                for key, value in (
                    ("forward", t1 - t0),
                    ("backward", t2 - t1),
                    ("optimiser", t3 - t2),
                    ("step", t3 - t0),
                ):
                    times[name][key].append(1e3 * value)
    medians = {name: {k: statistics.median(v) for k, v in parts.items()} for name, parts in times.items()}
    base = medians["zuko + Adam"]["step"]
    print(
        f"torch {torch.__version__}, {args.threads} CPU thread(s), batch {args.batch}, "
        f"{sum(p.numel() for p in first.parameters()):,} parameters; median of {args.steps} interleaved steps"
    )
    print(
        f"{'variant':<24}{'forward ms':>12}{'backward ms':>13}{'Adam ms':>10}{'step ms':>10}"
        f"{'samples/s':>11}{'speed-up':>10}"
    )
    for name, m in medians.items():
        print(
            f"{name:<24}{m['forward']:>12.1f}{m['backward']:>13.1f}{m['optimiser']:>10.1f}{m['step']:>10.1f}"
            f"{1e3 * args.batch / m['step']:>11.0f}{base / m['step']:>9.2f}x"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "torch": torch.__version__, "median_ms": medians}, handle, indent=2)


if __name__ == "__main__":
    main()
