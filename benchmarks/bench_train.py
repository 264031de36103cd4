"""Training iterations per second of MPU-Net: float32 against faster modes whose loss curve matches.

Modes: float32 (the reference), bfloat16 autocast, channels-last (3D) memory format, and
`torch.compile`. Each mode trains the same network from the same initial weights on the same
random crops for `--steps` steps (after `--warmup` untimed steps); a mode's speed counts only if its
loss curve stays within `--tolerance` (relative, per step) of float32's.

    python benchmarks/bench_train.py                                  # released preset, 48x256x256
    python benchmarks/bench_train.py --channels 8 16 32 48 64 --crop 24 64 64 --steps 5   # quick, CPU
    python benchmarks/bench_train.py --device cuda --epoch-volumes 88  # also seconds per epoch (paper: 107 s)

Not a test: run it by hand; it prints a table.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from MPUNetCore.inference import select_device  # noqa: E402
from MPUNetCore.losses import HybridLoss  # noqa: E402
from MPUNetCore.networks import MPUNet  # noqa: E402

MODES = ("float32", "bfloat16", "channels_last", "compile")


def run_mode(
    mode: str,
    base: torch.nn.Module,
    batches: List[torch.Tensor],
    labels: List[torch.Tensor],
    device: torch.device,
    warmup: int,
) -> Dict[str, object]:
    """Train a copy of `base` on the batches; returns losses and timed iterations per second."""
    model = copy.deepcopy(base).to(device).train()
    if mode == "channels_last":
        model = model.to(memory_format=torch.channels_last_3d)
    step_fn = model
    if mode == "compile":
        step_fn = torch.compile(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = HybridLoss()
    losses, times = [], []
    for x, y in zip(batches, labels):
        x, y = x.to(device), y.to(device)
        if mode == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last_3d)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode == "bfloat16"):
            outputs = step_fn(x)
        loss = loss_fn([o.float() for o in outputs], y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        losses.append(float(loss.detach()))
        step = f"{len(times)}/{len(batches)}"
        print(f"  {mode}: step {step} loss {losses[-1]:.4f} {times[-1]:.1f} s", file=sys.stderr, flush=True)
    timed = times[warmup:] or times
    return {"losses": losses, "it_per_s": len(timed) / sum(timed)}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="released", choices=("released", "paper"))
    parser.add_argument(
        "--channels", type=int, nargs=5, default=None, help="encoder widths (default: the preset's)"
    )
    parser.add_argument("--crop", type=int, nargs=3, default=(48, 256, 256), metavar=("D", "H", "W"))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=8, help="steps per mode, warm-up included")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument(
        "--tolerance", type=float, default=0.05, help="largest relative loss difference per step"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--epoch-volumes", type=int, default=0, help="also print seconds per epoch of N crops"
    )
    args = parser.parse_args(argv)

    device = select_device(args.device)
    torch.manual_seed(0)
    overrides = {"channels": tuple(args.channels)} if args.channels else {}
    base = MPUNet(preset=args.preset, out_channels=2, **overrides)
    generator = torch.Generator().manual_seed(0)
    shape = (args.batch, 1, *args.crop)
    batches = [torch.rand(shape, generator=generator) * 2 - 1 for _ in range(args.steps)]
    labels = [(b[:, 0] > 0.3).long() for b in batches]
    params = sum(p.numel() for p in base.parameters())
    print(f"MPUNet {args.preset} {params:,} parameters, crops {shape}, {device}")
    results = {mode: run_mode(mode, base, batches, labels, device, args.warmup) for mode in args.modes}
    reference = results.get("float32")
    print(f"{'mode':<14} {'it/s':>8} {'ratio':>7} {'max rel. loss diff':>19}  matches")
    for mode, result in results.items():
        diff = 0.0
        if reference is not None:
            diff = max(abs(a - b) / max(abs(b), 1e-8) for a, b in zip(result["losses"], reference["losses"]))
        ratio = result["it_per_s"] / reference["it_per_s"] if reference else float("nan")
        print(f"{mode:<14} {result['it_per_s']:8.3f} {ratio:7.2f} {diff:19.4f}  {diff <= args.tolerance}")
        if args.epoch_volumes:
            print(
                f"{'':<14} {args.epoch_volumes / result['it_per_s'] / args.batch:8.1f} s per epoch of "
                f"{args.epoch_volumes} crops (paper, Quadro RTX 6000: 107 s)"
            )


if __name__ == "__main__":
    main()
