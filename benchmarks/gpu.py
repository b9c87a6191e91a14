"""GPU training throughput of the paper-scale models: samples/s at fp32 and bf16, with and without
torch.compile, peak memory, and the largest batch that fits.

    .venv/bin/python benchmarks/gpu.py                    # on a CUDA machine; says so and stops when there is none
    .venv/bin/python benchmarks/gpu.py --device cpu --smoke   # the same code path on CPU with tiny sizes

Models: the WaveNet of experiments/paper.yaml at the paper's input length (t/M in [-10000, 130] at 0.1 M:
101,301 samples, 2 channels) and the MAF of Green et al. (5 MADE units of 3 x 512, strain of 1 x 1024), both
timed as full optimisation steps (forward, backward, Adam) on synthetic batches of the stored shapes.
The largest batch doubles from the timing batch until CUDA runs out of memory.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def models(smoke: bool):
    from gwpe.config import load_config
    from gwpe.models.flow_module import FlowModule
    from gwpe.models.wavenet import WaveNetConfig
    from gwpe.models.wavenet_module import WaveNetModule

    paper = load_config("experiments/paper.yaml")
    w = paper.wavenet.model
    length = 2001 if smoke else paper.h22.time.length
    config = WaveNetConfig(
        channels=4 if smoke else w.channels,
        skip_channels=4 if smoke else w.skip_channels,
        dilation_limit=16 if smoke else w.dilation_limit,
        stacks=1 if smoke else w.stacks,
        leaf_steps=min(w.leaf_steps, length),
        leaf_hidden=8 if smoke else w.leaf_hidden,
    )
    wavenet = WaveNetModule(config, torch.zeros(3), torch.ones(3))

    def wavenet_loss(batch, device):
        x = torch.randn(batch, 2, length, device=device)
        return torch.nn.functional.mse_loss(wavenet(x), torch.randn(batch, 3, device=device))

    maf = FlowModule(
        {
            "kind": "maf",
            "features": 5,
            "context_shape": [1, 1024],
            "transforms": 5,
            "hidden": [64] * 3 if smoke else [512] * 3,
        }
    )

    def maf_loss(batch, device):
        return maf.model.loss(torch.randn(batch, 5, device=device), torch.randn(batch, 1, 1024, device=device))

    return {
        "wavenet (L = %d)" % length: (wavenet, wavenet_loss, 4 if smoke else 32),
        "maf (Green et al.)": (maf, maf_loss, 64 if smoke else 512),
    }


def step_rate(module, loss_fn, batch: int, device, bf16: bool, compiled: bool, steps: int) -> tuple[float, float]:
    """(samples/s, peak memory GiB) of full optimisation steps."""
    model = torch.compile(module) if compiled else module
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(steps + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(batch, device)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= 2:  # compile and cudnn autotuning happen in the first steps
            times.append(time.perf_counter() - start)
    del model
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return batch / statistics.median(times), peak


def largest_batch(module, loss_fn, start: int, device, bf16: bool, limit: int = 1 << 16) -> int:
    """Largest power-of-two multiple of ``start`` whose optimisation step fits in GPU memory."""
    if device.type != "cuda":
        return -1
    fits, batch = 0, start
    while batch <= limit:
        try:
            step_rate(module, loss_fn, batch, device, bf16, False, steps=1)
            fits, batch = batch, batch * 2
        except torch.OutOfMemoryError:
            break
        finally:
            torch.cuda.empty_cache()
    return fits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (checks the code path, e.g. on CPU)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "benchmarks/gpu.py: no CUDA GPU on this machine; nothing measured "
            "(run it where one is, or --device cpu --smoke)"
        )
        return
    device = torch.device(args.device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}")
    print(f"{'model':<22}{'batch':>7}{'precision':>11}{'compile':>9}{'samples/s':>12}{'peak GiB':>10}")
    for label, (module, loss_fn, batch) in models(args.smoke).items():
        module.to(device).train()
        for bf16 in (False, True):
            for compiled in (False, True) if not args.no_compile else (False,):
                try:
                    rate, peak = step_rate(module, loss_fn, batch, device, bf16, compiled, args.steps)
                    print(
                        f"{label:<22}{batch:>7}{'bf16' if bf16 else 'fp32':>11}{str(compiled):>9}"
                        f"{rate:>12.1f}{peak:>10.2f}",
                        flush=True,
                    )
                except Exception as error:  # e.g. torch.compile without a working compiler toolchain
                    print(
                        f"{label:<22}{batch:>7}{'bf16' if bf16 else 'fp32':>11}{str(compiled):>9}  "
                        f"failed: {type(error).__name__}: "
                        f"{str(error).splitlines()[0][:80]}",
                        flush=True,
                    )
        for bf16 in (False, True):
            fits = largest_batch(module, loss_fn, batch, device, bf16)
            if fits >= 0:
                print(f"{label:<22} largest batch that fits ({'bf16' if bf16 else 'fp32'}): {fits}")


if __name__ == "__main__":
    main()
