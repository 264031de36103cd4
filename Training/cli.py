"""`python -m Training` / `mpunet-train`: train, evaluate, export and report MPU-Net experiments."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from MPUNetCore.allocator import reexec_with_tuned_allocator

from .config import ConfigError, load_config

EXAMPLES = """examples:
  python -m Training train --config lits_mpunet_released --set data.root=/data/LiTS
  torchrun --nproc_per_node=4 -m Training train --config lits_mpunet_released --set data.root=/data/LiTS
  python -m Training train --resume --run-dir runs/lits_mpunet_released
  python -m Training evaluate runs/lits_mpunet_released
  python -m Training export runs/lits_mpunet_released
  python -m Training report runs/lits_mpunet_released runs/lits_unet --output runs/report
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with the four sub-commands."""
    parser = argparse.ArgumentParser(
        prog="mpunet-train",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    train = sub.add_parser("train", help="train a model from a TOML config")
    train.add_argument("--config", help="TOML file or bundled config name (Training/configs/)")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value (repeatable), e.g. --set train.epochs=10",
    )
    train.add_argument(
        "--run-dir", type=Path, help="run folder (default: experiment.output_dir/experiment.name)"
    )
    train.add_argument("--resume", action="store_true", help="continue the run in the run folder exactly")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    train.add_argument("--progress", choices=("bar", "json", "none"), default="bar")
    train.set_defaults(run=_train)

    evaluate = sub.add_parser("evaluate", help="score the best checkpoint on the test split (Tables 8-9)")
    evaluate.add_argument("run_dir", type=Path, help="a run folder")
    evaluate.add_argument("--split", choices=("test", "val", "train"), default="test")
    evaluate.add_argument("--checkpoint", choices=("best", "last"), default="best")
    evaluate.add_argument("--device", default=None, help="auto, cpu, cuda (default: the run's)")
    evaluate.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override e.g. inference.tta=true for the evaluation",
    )
    evaluate.add_argument("--progress", choices=("bar", "json", "none"), default="bar")
    evaluate.set_defaults(run=_evaluate)

    export = sub.add_parser("export", help="write a checkpoint as a model bundle for `mpunet segment`")
    export.add_argument("run_dir", type=Path, help="a run folder")
    export.add_argument("--output", type=Path, help="card path (default: RUN/export/<name>.json)")
    export.add_argument("--name", help="model name in the card (default: experiment.name)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    export.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="best (by train.best_metric on validation) or last (the end of the schedule)",
    )
    export.set_defaults(run=_export)

    report = sub.add_parser("report", help="figures and comparison tables of one or more runs")
    report.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN", help="run folders to compare")
    report.add_argument(
        "--output", type=Path, help="report folder (default: RUN/report for one run, else ./report)"
    )
    report.set_defaults(run=_report)
    return parser


def _train(args: argparse.Namespace) -> int:
    from .trainer import train

    if args.resume and args.run_dir is not None and (args.run_dir / "config.toml").exists():
        config = load_config(args.run_dir / "config.toml", args.overrides)
    elif args.config is None:
        raise ConfigError("give --config CONFIG (or --resume --run-dir RUN to continue a run)")
    else:
        config = load_config(args.config, args.overrides)
    run_dir = args.run_dir or Path(config.experiment.output_dir) / config.experiment.name
    train(config, run_dir, resume=args.resume, overwrite=args.overwrite, progress=args.progress)
    print(f"run folder: {run_dir}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_run

    table = evaluate_run(
        args.run_dir,
        split=args.split,
        checkpoint=args.checkpoint,
        device=args.device,
        overrides=args.overrides,
        progress=args.progress,
    )
    print(table)
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import export_run

    path = export_run(
        args.run_dir, output=args.output, name=args.name, overwrite=args.overwrite, checkpoint=args.checkpoint
    )
    print(f"model bundle: {path}  (use: mpunet segment --model {path} INPUT OUTPUT)")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .report import make_report

    output = args.output or (args.run_dirs[0] / "report" if len(args.run_dirs) == 1 else Path("report"))
    path = make_report(args.run_dirs, output)
    print(f"report: {path}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; user errors end in one line on stderr and exit code 2."""
    if argv is None:  # a process of its own: run with the allocator set-up (once; see MPUNetCore.allocator)
        reexec_with_tuned_allocator()
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("mpunet-train: interrupted (checkpoints are atomic: continue with --resume)", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        if not getattr(error, "said_by_rank_zero", False):  # under torchrun, rank 0 speaks for all
            print(f"mpunet-train {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as error:  # torch.OutOfMemoryError is a RuntimeError
        from MPUNetCore.memory import is_out_of_memory

        if not is_out_of_memory(error):
            raise
        print(
            f"mpunet-train {args.command}: error: ran out of memory; use a smaller --set train.batch_size "
            "or train.patch (or --set train.device=cpu when the GPU is too small), then continue with "
            "--resume (the last complete checkpoint is kept).",
            file=sys.stderr,
        )
        return 1
