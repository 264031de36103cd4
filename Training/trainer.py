"""The training loop: patches, hybrid deep-supervision loss, validation, best model, exact resume, DDP.

Exact resume: every epoch starts by seeding python/numpy/torch from `(seed, epoch, rank)`, and
patches are drawn from generators seeded per sample (see `sampling`). A checkpoint written after
epoch e (model, optimiser, scheduler, best score, history, RNG states) is therefore all a killed run
needs: `--resume` repeats nothing and skips nothing, and on CPU reaches the same weights bit for
bit as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from MPUNetCore.cli.progress import ProgressBar

from . import distributed
from .checkpoints import load_checkpoint, previous_path, save_checkpoint
from .config import Config, classes_of, save_config
from .metric_keys import BEST_EPOCH, EPOCH, EPOCH_TIME, TRAIN_TIME, VAL_TIME, metric_key, val_key
from .models import (
    architecture,
    count_parameters,
    make_loss,
    make_network,
    make_optimizer,
    make_scheduler,
    memory_format,
    predicted_by,
)
from .prepare import check_data_source, prepare_data
from .rng import rng_states, seed_epoch, set_rng_states
from .runfolder import RunFolder, TensorBoard, write_csv, write_json
from .sampling import EpochPatches, PatchSampler, epoch_plan
from .validation import PatchConfusion, best_value, validate

__all__ = ["load_checkpoint", "save_checkpoint", "start_run", "train"]


def _amp_dtype(config: Config, device: torch.device) -> Optional[torch.dtype]:
    amp = config.train.amp
    if amp == "float32" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return getattr(torch, amp)


def unused_parameters(model: torch.nn.Module, device: torch.device) -> List[str]:
    """Names of parameters that a training forward pass never uses (DDP must be told about them).

    Probed on a copy (the model's batch-norm statistics stay untouched) with a small input.
    """
    probe = copy.deepcopy(model).train()
    size = 2 * int(getattr(model, "input_multiple", 8))
    channels = int(getattr(model, "in_channels", 1))
    outputs = probe(torch.zeros(2, channels, size, size, size, device=device))
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    sum(o.float().sum() for o in outputs).backward()
    return [name for name, p in probe.named_parameters() if p.requires_grad and p.grad is None]


def start_run(config: Config, run: RunFolder, resume: bool, overwrite: bool) -> None:
    """Create (or check) the run folder and save the resolved config (rank 0 only).

    Refuses, before writing anything, a ``resume`` with no checkpoint and a ``data.root`` that is missing.
    """
    if resume and not run.last.exists():
        prev = previous_path(run.last)
        hint = (
            f" {prev} is there: rename it to {run.last.name} to resume from it."
            if prev.exists()
            else " Start a new run without --resume (or check --run-dir)."
        )
        raise FileNotFoundError(f"nothing to resume in {run.root}: it has no {run.last}.{hint}")
    check_data_source(config)
    if run.last.exists() and not resume:
        if not overwrite:
            raise FileExistsError(
                f"{run.root} already holds a run; pass --resume to continue it or --overwrite"
            )
        shutil.rmtree(run.root)
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    save_config(config, run.config)


def train(
    config: Config, run_dir: Path, resume: bool = False, overwrite: bool = False, progress: str = "bar"
) -> Path:
    """Train the model a config describes; returns the run folder.

    Launched as one process, or by `torchrun --nproc_per_node=N` (DDP: the epoch's patches are
    sharded over the processes, and so are the validation cases; rank 0 writes every file).
    """
    ctx = distributed.setup(config.train.device)
    threads = torch.get_num_threads()
    try:
        return _train(config, RunFolder(run_dir), ctx, resume, overwrite, progress if ctx.main else "none")
    finally:
        torch.set_num_threads(threads)  # train.threads applies to this run only
        distributed.cleanup(ctx)


@dataclass
class _Session:
    """What one training run holds between its steps."""

    model: torch.nn.Module
    net: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    loss_fn: Any
    amp: Optional[torch.dtype]
    sampler: PatchSampler
    board: TensorBoard
    parameters: int
    start_epoch: int = 0
    best: Dict[str, Any] = field(default_factory=lambda: {"value": -float("inf"), "epoch": 0})
    history: List[Dict[str, Any]] = field(default_factory=list)


def _train(
    config: Config, run: RunFolder, ctx: distributed.Context, resume: bool, overwrite: bool, progress: str
) -> Path:
    state = _on_train_start(config, run, ctx, resume, overwrite)
    data = prepare_data(config, run, ctx, progress)
    session = _build_session(config, run, ctx, data, state)
    epochs = config.train.epochs
    for epoch in range(session.start_epoch, epochs):
        t0 = time.perf_counter()
        row = _train_step(session, config, ctx, epoch, progress)
        if (epoch + 1) % config.train.val_every == 0 or epoch + 1 == epochs:
            row.update(_validation_step(session, data, config, run, ctx, epoch, progress))
        row[EPOCH_TIME] = time.perf_counter() - t0
        if ctx.main:
            _on_epoch_end(session, config, run, row, epochs)
        distributed.barrier(ctx)
    session.board.close()
    return run.root


def _on_train_start(
    config: Config, run: RunFolder, ctx: distributed.Context, resume: bool, overwrite: bool
) -> Optional[Dict[str, Any]]:
    """Prepare the run folder and torch; returns the checkpoint to resume from (None: a new run)."""
    distributed.on_main(ctx, lambda: start_run(config, run, resume, overwrite))  # refusals reach every rank
    state = load_checkpoint(run.last) if resume else None  # a damaged checkpoint fails before any work
    train_cfg = config.train
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = not train_cfg.deterministic
        torch.backends.cudnn.deterministic = train_cfg.deterministic
    return state


def _build_session(
    config: Config, run: RunFolder, ctx: distributed.Context, data: Any, state: Optional[Dict[str, Any]]
) -> _Session:
    """Network, optimiser, schedule, loss and patch sampler, restored from ``state`` when resuming."""
    model = make_network(config).to(ctx.device, memory_format=memory_format(config))
    optimizer = make_optimizer(config, model)
    amp = _amp_dtype(config, ctx.device)
    prep, train_cfg = config.preprocessing, config.train
    sampler = PatchSampler(
        data.parts["train"],
        train_cfg.patch,
        config.data.task,
        config.augment,
        train_cfg.foreground_prob,
        prep.hu_window[0] / prep.scale,
        config.experiment.seed,
        tumor_prob=train_cfg.tumor_prob,
    )
    session = _Session(
        model=model,
        net=model,
        optimizer=optimizer,
        scheduler=make_scheduler(config, optimizer),
        scaler=torch.amp.GradScaler("cuda", enabled=amp == torch.float16),
        loss_fn=make_loss(config),
        amp=amp,
        sampler=sampler,
        board=TensorBoard(run.tensorboard, enabled=ctx.main),
        parameters=count_parameters(model),
    )
    if state is not None:
        _restore(session, state)
        if ctx.main:
            print(f"resuming {run.root} after epoch {session.start_epoch}", file=sys.stderr)
    if ctx.main:
        write_json(
            run.info,
            {
                "architecture": architecture(config),
                "parameters": session.parameters,
                "device": str(ctx.device),
                "world_size": ctx.world,
                "torch": torch.__version__,
                "cases": {k: len(v) for k, v in data.parts.items()},
            },
        )
    if ctx.enabled:
        unused = unused_parameters(model, ctx.device)
        session.net = DistributedDataParallel(
            model,
            device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
            find_unused_parameters=bool(unused),
        )
    return session


def _restore(session: _Session, state: Dict[str, Any]) -> None:
    """Load a `last` checkpoint into the session: weights, optimiser, schedule, scaler, history, RNG."""
    session.model.load_state_dict(state["model"])
    session.optimizer.load_state_dict(state["optimizer"])
    session.scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        session.scaler.load_state_dict(state["scaler"])
    session.start_epoch, session.best, session.history = state["epoch"], state["best"], state["history"]
    set_rng_states(state["rng"])


def _train_step(
    session: _Session, config: Config, ctx: distributed.Context, epoch: int, progress: str
) -> Dict[str, Any]:
    """One epoch of training and the schedule's step; the start of the epoch's metrics row."""
    seed_epoch(config.experiment.seed, epoch, ctx.rank)
    t0, cpu0 = time.perf_counter(), time.process_time()
    row: Dict[str, Any] = {EPOCH: epoch + 1, "lr": session.optimizer.param_groups[0]["lr"]}
    row.update(
        _train_epoch(
            session.net,
            session.loss_fn,
            session.optimizer,
            session.scaler,
            session.sampler,
            config,
            ctx,
            epoch,
            session.amp,
            progress,
        )
    )
    session.scheduler.step()
    row[TRAIN_TIME] = time.perf_counter() - t0
    row["train_cpu_s"] = time.process_time() - cpu0  # CPU seconds: shows how busy the machine was
    return row


def _validation_step(
    session: _Session,
    data: Any,
    config: Config,
    run: RunFolder,
    ctx: distributed.Context,
    epoch: int,
    progress: str,
) -> Dict[str, Any]:
    """Validate on whole volumes; every process segments its share, rank 0 writes the case scores."""
    t1 = time.perf_counter()
    metrics, case_rows = validate(
        session.model,
        data.parts["val"],
        config,
        ctx.device,
        progress=ProgressBar(f"validation {epoch + 1}", progress),
        shard=(ctx.rank, ctx.world),
        gather=lambda scores: distributed.gather_all(ctx, scores),
    )
    if ctx.main:
        write_csv(run.val_cases, [{EPOCH: epoch + 1, **r} for r in case_rows])
    return {**metrics, VAL_TIME: time.perf_counter() - t1}


def _on_epoch_end(
    session: _Session, config: Config, run: RunFolder, row: Dict[str, Any], epochs: int
) -> None:
    """Rank 0: keep the best model, log the row, write the `last` checkpoint, print the epoch."""
    metric, epoch = config.train.best_metric, row[EPOCH]
    value = best_value(row, metric)
    if value == value and value > session.best["value"]:  # NaN never wins
        session.best = {"value": value, "epoch": epoch}
        save_checkpoint(
            run.best,
            {
                "model": session.model.state_dict(),
                "epoch": epoch,
                "metrics": row,
                "architecture": architecture(config),
            },
        )
    row[BEST_EPOCH] = session.best["epoch"]
    session.history.append(row)
    write_csv(run.metrics, session.history)
    session.board.log(row, epoch)
    save_checkpoint(
        run.last,
        {
            "model": session.model.state_dict(),
            "optimizer": session.optimizer.state_dict(),
            "scheduler": session.scheduler.state_dict(),
            "scaler": session.scaler.state_dict(),
            "epoch": epoch,
            "best": session.best,
            "history": session.history,
            "rng": rng_states(),
            "parameters": session.parameters,
        },
    )
    _report_epoch(row, epochs, session.best, metric)


def _train_epoch(
    net,
    loss_fn,
    optimizer,
    scaler,
    sampler: PatchSampler,
    config: Config,
    ctx: distributed.Context,
    epoch: int,
    amp: Optional[torch.dtype],
    progress: str,
) -> Dict[str, float]:
    """One epoch over this process's share of the patches; returns the epoch's training metrics."""
    train_cfg = config.train
    plan = epoch_plan(
        len(sampler.cases),
        train_cfg.samples_per_epoch,
        sampler.seed,
        epoch,
        multiple=ctx.world * train_cfg.batch_size,
    )
    patches = EpochPatches(sampler, epoch, plan, ctx.rank, ctx.world)
    loader = DataLoader(
        patches,
        batch_size=train_cfg.batch_size,
        shuffle=False,
        num_workers=train_cfg.workers,
        pin_memory=ctx.device.type == "cuda",
    )
    net.train()
    confusion = PatchConfusion(classes_of(config), fuse=predicted_by(config))
    sums = [0.0, 0.0, 0.0, 0.0]  # loss, tversky, ce, steps
    bar = ProgressBar(f"epoch {epoch + 1}/{train_cfg.epochs}", progress)
    autocast = torch.autocast(ctx.device.type, dtype=amp) if amp is not None else contextlib.nullcontext()
    layout = memory_format(config)
    for step, (x, y) in enumerate(loader, 1):
        x = x.to(ctx.device, non_blocking=True).contiguous(memory_format=layout)
        y = y.to(ctx.device, non_blocking=True)
        with autocast:
            outputs = net(x)
        outputs = [o.float() for o in outputs] if isinstance(outputs, (list, tuple)) else outputs.float()
        parts = loss_fn.components(outputs, y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(parts["loss"]).backward()
        if train_cfg.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(net.parameters(), train_cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        for i, key in enumerate(("loss", "tversky", "ce")):
            sums[i] += float(parts[key].detach())
        sums[3] += 1
        confusion.add([o.detach() for o in outputs] if isinstance(outputs, list) else outputs.detach(), y)
        bar(step, len(loader))
    names = list(confusion.counts)
    flat = distributed.sum_values(ctx, sums + [float(v) for n in names for v in confusion.counts[n]])
    confusion.counts = {n: [int(v) for v in flat[4 + 4 * i : 8 + 4 * i]] for i, n in enumerate(names)}
    steps = max(flat[3], 1.0)
    row = {"train_loss": flat[0] / steps, "train_tversky": flat[1] / steps, "train_ce": flat[2] / steps}
    row.update(confusion.metrics())
    return row


def _report_epoch(row: Dict[str, Any], epochs: int, best: Dict[str, Any], metric: str) -> None:
    val = row.get(val_key(metric))
    text = f"epoch {row['epoch']}/{epochs}: loss {row['train_loss']:.4f}"
    text += f", train liver dice {row.get(metric_key('train', 'liver', 'dice'), float('nan')):.4f}"
    if val is not None:
        text += f", val {metric} {val:.4f} (best {best['value']:.4f} at epoch {best['epoch']})"
    text += f", {row['epoch_time_s']:.1f} s"
    print(text, file=sys.stderr, flush=True)
