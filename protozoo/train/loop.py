"""``fit``: run a recipe's plan (warm, joint, push, last layer), checkpointing after every step."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from protozoo.data.collate import collate_items, to_device
from protozoo.serialization import write_json
from protozoo.train.alignment import tap_for, with_alignment
from protozoo.train.checkpoint import (
    CHECKPOINT_NAME,
    RunDefinitionError,
    RunLock,
    check_run_definition,
    load_checkpoint,
    read_checkpoint_state,
    save_checkpoint,
)
from protozoo.train.distributed import DistContext
from protozoo.train.noise_consistency import with_noise_consistency
from protozoo.train.schedule import PHASES, Recipe
from protozoo.train.tasks import Task, task_for
from protozoo.train.unique_peak import with_unique_peak


@dataclass
class FitResult:
    """What :func:`fit` returns: the trained model and one metrics row per plan step."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    out_dir: Path | None = None


def make_optimizers(model, recipe: Recipe) -> dict[str, torch.optim.Optimizer]:
    """One Adam per phase over its named parameter groups, as in the reference implementation."""
    groups = model.parameter_groups()
    optimizers = {}
    for name, phase in PHASES.items():
        lrs = recipe.warm_lr if name == "warm" else recipe.lr
        if name == "global" and "global_head" not in groups:
            continue
        param_groups = [
            {"params": groups[g], "lr": lrs[g], "weight_decay": recipe.weight_decay.get(g, 0.0), "name": g}
            for g in phase.trainable
            if g in groups and groups[g]
        ]
        optimizers[name] = torch.optim.Adam(param_groups)
    return optimizers


def joint_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe) -> torch.optim.lr_scheduler.StepLR:
    """The joint phase's step decay, stepped ``recipe.lr_step_offset`` times before any training
    (1: the reference code's order, which steps it before each joint epoch; see :class:`Recipe`)."""
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, recipe.lr_step, recipe.lr_gamma)
    with warnings.catch_warnings():  # stepping before optimizer.step() is the point here
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
        for _ in range(recipe.lr_step_offset):
            scheduler.step()
    return scheduler


def set_trainable(model, phase_name: str) -> None:
    """Freeze every parameter group the phase does not train."""
    trainable = PHASES[phase_name].trainable
    for name, params in model.parameter_groups().items():
        for param in params:
            param.requires_grad_(name in trainable)


def freeze_frozen_norms(model: nn.Module) -> None:
    """Put normalisation layers whose parameters are frozen in eval mode.

    Frozen parts then keep their running statistics too, so a phase that freezes the backbone
    (warm, last layer) cannot move the latent space under the prototypes: a pushed prototype stays
    exactly a latent patch of its source image through the last-layer epochs.
    """
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._NormBase):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()


def make_loader(
    dataset: Dataset, ctx: DistContext, *, batch_size: int, shuffle: bool, seed: int, epoch: int, num_workers: int
) -> DataLoader:
    """A loader whose order depends only on (seed, epoch): resumed runs see the same batches."""
    sampler = ctx.sampler(dataset, shuffle=shuffle, seed=seed)
    if sampler is not None:
        sampler.set_epoch(epoch)
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        generator=generator,
        num_workers=num_workers,
        collate_fn=collate_items,
        persistent_workers=False,
    )


def fit(
    model,
    train_data: Dataset,
    *,
    recipe: Recipe | None = None,
    val_data: Dataset | None = None,
    push_data: Dataset | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    device: str | None = None,
    num_workers: int = 0,
    progress: bool = True,
    task: Task | None = None,
    log: Callable[[str], None] = print,
) -> FitResult:
    """Train a prototype model by its recipe's plan.

    Args:
        model: A protozoo model (``parameter_groups()``, ``head.prototype_identity``...).
        train_data: Training items (with augmentation).
        recipe: The schedule and hyper-parameters (default :class:`Recipe`).
        val_data: Evaluated (accuracy, loss) after every training epoch when given.
        push_data: Items to push prototypes onto, without augmentation (default ``train_data``).
        out_dir: Where ``recipe.json``, ``checkpoint.safetensors``, ``metrics.jsonl``/``.csv`` and the
            final ``model/`` go. A checkpoint is written atomically after every step.
        resume: Continue from ``out_dir``'s checkpoint exactly (model, optimizers, scheduler, RNG,
            plan position, push provenance).
        device: ``cpu``, ``cuda``... (default: the GPU of this rank if any, else the CPU).
        num_workers: DataLoader workers.
        progress: Show tqdm progress bars (main process only).
        task: How to feed the model and score it (default: its family's, :func:`protozoo.train.tasks.task_for`).
        log: Where status lines go.

    Returns:
        The trained model and the per-step metrics.
    """
    task = task or task_for(model)
    recipe = recipe or task.recipe()
    run = _Run(
        model=model,
        recipe=recipe,
        task=task,
        ctx=DistContext.from_env(),
        log=log,
        progress=progress,
        num_workers=num_workers,
        out=Path(out_dir) if out_dir is not None else None,
    )
    run.device = run.ctx.device(device)
    model.to(run.device)
    run.definition = run_definition(model, recipe, train_data)
    start, history = _start(run, resume)
    try:
        wrapped, wrapped_phase = model, None
        for index in range(start, len(run.plan)):
            step = run.plan[index]
            started = time.perf_counter()
            if step.kind == "push":
                row = _push_step(run, push_data or train_data, index, step)
            else:
                if step.phase != wrapped_phase:  # DDP wraps the parameters that train: re-wrap when the phase changes
                    set_trainable(model, step.phase)
                    wrapped, wrapped_phase = run.ctx.wrap(model), step.phase
                row = _train_step(run, wrapped, train_data, val_data, index, step)
            row["seconds"] = round(time.perf_counter() - started, 3)
            history.append(row)
            _record(run, history, index, step)
        return _finish(run, history)
    finally:
        if run.lock is not None:
            run.lock.release()


def run_definition(model, recipe: Recipe, train_data: Dataset) -> dict[str, Any]:
    """What makes a run this run: the model, its training data (spec, options, input size, size) and
    the recipe. Stored in the checkpoint; a resume with another definition is refused."""
    cfg = model.pretrained_cfg
    definition = {
        "model": {"architecture": model.config.arch, "model_args": model.model_args()},
        "data": cfg.extra.get("train_data"),  # prepare_run records --data, --data-option, --num-samples
        "input_size": list(cfg.input_size),
        "train_items": len(train_data) if hasattr(train_data, "__len__") else None,
        "recipe": recipe.to_dict(),
    }
    return json.loads(json.dumps(definition))  # as it reads back from the checkpoint (tuples become lists)


@dataclass
class _Run:
    """What the steps of one :func:`fit` share."""

    model: Any
    recipe: Recipe
    task: Task
    ctx: DistContext
    log: Callable[[str], None]
    progress: bool
    num_workers: int
    out: Path | None
    device: Any = None
    optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    schedulers: dict[str, Any] = field(default_factory=dict)
    plan: list = field(default_factory=list)
    writer: Any = None
    lock: RunLock | None = None
    definition: dict[str, Any] = field(default_factory=dict)

    @property
    def checkpoint(self) -> Path | None:
        return self.out / CHECKPOINT_NAME if self.out is not None else None

    def loader(self, dataset: Dataset, *, shuffle: bool, epoch: int) -> DataLoader:
        return make_loader(
            dataset,
            self.ctx,
            batch_size=self.recipe.batch_size,
            shuffle=shuffle,
            seed=self.recipe.seed,
            epoch=epoch,
            num_workers=self.num_workers,
        )


def _start(run: _Run, resume: bool) -> tuple[int, list[dict[str, Any]]]:
    """Start or resume: optimizers, scheduler and plan; the checkpoint's position and history on resume."""
    out = run.out
    if out is not None and run.ctx.is_main:  # one run per folder: a second refuses, naming the first's pid
        run.lock = RunLock(out).acquire()
        if run.lock.took_over:
            run.log(f"took over the lock of {out} left by {run.lock.took_over}, which is no longer running")
    try:
        return _start_locked(run, resume)
    except BaseException:
        if run.lock is not None:
            run.lock.release()
        raise


def _start_locked(run: _Run, resume: bool) -> tuple[int, list[dict[str, Any]]]:
    recipe, ctx, out = run.recipe, run.ctx, run.out
    run.optimizers = make_optimizers(run.model, recipe)
    run.schedulers = {"joint": joint_scheduler(run.optimizers["joint"], recipe)}
    run.plan = recipe.plan()
    start, history = 0, []
    if run.checkpoint is not None and run.checkpoint.exists():
        if not resume:
            raise FileExistsError(
                f"{str(out)!r} already holds a run's checkpoint; pass resume=True (--resume) to continue it, "
                "or choose another output folder"
            )
        saved = read_checkpoint_state(run.checkpoint).get("definition")
        recipe_file = out / "recipe.json"
        if not recipe_file.is_file():
            raise RunDefinitionError(
                f"{str(recipe_file)!r} is missing: a resumed run must be checked against the "
                "recipe it started with; restore the file, or start the run in another folder"
            )
        # Checkpoints from before run definitions were stored: only the recipe is checked.
        saved_recipe = json.loads(json.dumps(Recipe.load(recipe_file).to_dict()))
        check_run_definition({**(saved or run.definition), "recipe": saved_recipe}, run.definition, out)
        state = load_checkpoint(run.checkpoint, model=run.model, optimizers=run.optimizers, schedulers=run.schedulers)
        start, history = state["next_step"], state["history"]
        if ctx.is_main:
            run.log(
                f"resuming {out} at step {start}/{len(run.plan)} (epoch {run.plan[min(start, len(run.plan) - 1)].epoch})"
            )
    else:
        torch.manual_seed(recipe.seed)
        if ctx.is_main:
            if resume:
                run.log(f"no checkpoint in {out}; starting a new run")
            run.log("recipe:\n" + recipe.describe())
    if out is not None and ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(recipe.to_dict(), out / "recipe.json")
        run.writer = _tensorboard(out)
    return start, history


def _push_step(run: _Run, push_data: Dataset, index: int, step) -> dict[str, Any]:
    """Push every prototype onto its nearest training patch (the family's views and labels)."""
    from protozoo.push import push_prototypes

    result = push_prototypes(
        run.model,
        run.loader(push_data, shuffle=False, epoch=0),
        class_specific=True,
        unique_source=run.recipe.unique_source,
        progress=run.progress and run.ctx.is_main,
        foreground=run.recipe.push_foreground,
        lesions=run.recipe.push_lesions,
    )
    return {
        "step": index,
        "kind": "push",
        "epoch": step.epoch,
        "mean_push_distance": float(result.distances.float().mean()),
    }


def _train_step(run: _Run, wrapped, train_data: Dataset, val_data: Dataset | None, index: int, step) -> dict[str, Any]:
    """One training epoch of the step's phase, the joint decay, and the validation pass."""
    optimizer = run.optimizers[step.phase]
    row = {
        "step": index,
        "kind": "train",
        "phase": step.phase,
        "epoch": step.epoch,
        "lr": max(g["lr"] for g in optimizer.param_groups),
    }
    row |= train_epoch(
        run.model,
        wrapped,
        run.loader(train_data, shuffle=True, epoch=step.epoch),
        optimizer,
        run.recipe,
        run.task,
        step.phase,
        run.device,
        run.ctx,
        progress=run.progress and run.ctx.is_main,
        desc=f"epoch {step.epoch} {step.phase}",
        perturb=_input_noise(run, step.epoch),
    )
    if step.phase == "joint":
        run.schedulers["joint"].step()
    if val_data is not None:
        val = evaluate_loss(
            run.model,
            run.loader(val_data, shuffle=False, epoch=0),
            run.recipe,
            run.task,
            step.phase,
            run.device,
            run.ctx,
        )
        row |= {f"val_{k}": v for k, v in val.items()}
    return row


def _record(run: _Run, history: list[dict[str, Any]], index: int, step) -> None:
    """Log the step's row; write the metrics and the checkpoint (atomically) so a kill resumes here."""
    row = history[-1]
    if run.ctx.is_main:
        run.log(_format_row(row, len(run.plan)))
        if run.out is not None:
            _write_metrics(history, run.out)
            save_checkpoint(
                run.checkpoint,
                model=run.model,
                optimizers=run.optimizers,
                schedulers=run.schedulers,
                state={
                    "next_step": index + 1,
                    "history": history,
                    "epoch": step.epoch,
                    "phase": step.phase,
                    "definition": run.definition,
                },
            )
            if run.writer is not None:
                for key, value in row.items():
                    if isinstance(value, float):
                        run.writer.add_scalar(f"{row.get('phase', 'push')}/{key}", value, index)
    run.ctx.barrier()


def _finish(run: _Run, history: list[dict[str, Any]]) -> FitResult:
    """Unfreeze, save the trained model, close the writer."""
    for param in run.model.parameters():
        param.requires_grad_(True)
    if run.out is not None and run.ctx.is_main:
        run.model.save_pretrained(run.out / "model")
        run.log(f"saved the trained model to {run.out / 'model'}")
    if run.writer is not None:
        run.writer.close()
    return FitResult(model=run.model, history=history, out_dir=run.out)


def train_epoch(
    model,
    wrapped,
    loader,
    optimizer,
    recipe: Recipe,
    task: Task,
    phase: str,
    device,
    ctx: DistContext,
    *,
    progress: bool,
    desc: str,
    perturb=None,
) -> dict[str, float]:
    """One pass over the loader; returns the epoch's mean loss terms and accuracy (over all ranks).
    ``perturb``: ``x -> x'`` applied to every image input of the model (the recipe's input noise)."""
    model.train()
    if recipe.freeze_norm_stats:  # else every norm layer updates its statistics, as the reference's model.train()
        freeze_frozen_norms(model)
    batches = tqdm(loader, desc=desc, disable=not progress, leave=False)
    return _pass(model, wrapped, batches, recipe, task, phase, device, ctx, optimizer=optimizer, perturb=perturb)


def _input_noise(run: _Run, epoch: int):
    """The recipe's training-input noise for one epoch (None when off): a generator seeded by the
    run's seed, the epoch and the rank, so a resumed run draws the same noise."""
    std = run.recipe.input_noise
    if not std:
        return None
    from protozoo.evaluate.stability import gaussian_noise

    return gaussian_noise(std=std, clip=1.25 * std, seed=run.recipe.seed * 100_003 + epoch * 101 + run.ctx.rank)


@torch.no_grad()
def evaluate_loss(model, loader, recipe: Recipe, task: Task, phase: str, device, ctx: DistContext) -> dict[str, float]:
    """Mean loss terms and accuracy of a model on a loader, in eval mode."""
    was_training = model.training
    model.eval()
    metrics = _pass(model, model, loader, recipe, task, phase, device, ctx)
    model.train(was_training)
    return metrics


def _pass(
    model,
    wrapped,
    batches,
    recipe: Recipe,
    task: Task,
    phase: str,
    device,
    ctx: DistContext,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    perturb=None,
) -> dict[str, float]:
    """Run ``wrapped`` over the batches, stepping ``optimizer`` when given; mean terms and accuracy."""
    sums: dict[str, float] = {}
    correct = seen = 0
    tap = tap_for(model, recipe.loss, phase)  # SDFA's feature maps, read during each forward
    shapes_prototypes = phase in PHASES and "prototypes" in PHASES[phase].trainable  # the unique-peak term's phases
    for batch in batches:
        batch = to_device(batch, device)
        with tap or contextlib.nullcontext():
            output = task.forward(wrapped, batch, perturb)
        loss, terms = task.loss(model, output, batch, recipe.loss, phase)
        if tap is not None:
            loss = with_alignment(model, output, batch, recipe.loss, loss, terms, tap)
        if optimizer is not None and perturb is not None and recipe.loss.noise_consistency:
            loss = with_noise_consistency(model, task, wrapped, batch, output, recipe.loss, loss, terms)
        if recipe.loss.unique_peak and shapes_prototypes:
            loss = with_unique_peak(model, output, batch, recipe.loss, loss, terms)
        labels = task.targets(batch)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        n = len(labels)
        for key, value in (terms | {"loss": loss.item()}).items():
            sums[key] = sums.get(key, 0.0) + value * n
        correct += (output.logits.argmax(dim=1) == labels).sum().item()
        seen += n
    return _reduce(sums, correct, seen, ctx)


def _reduce(sums: dict[str, float], correct: int, seen: int, ctx: DistContext) -> dict[str, float]:
    keys = sorted(sums)
    totals = ctx.all_reduce_sum(torch.tensor([sums[k] for k in keys] + [correct, seen], dtype=torch.float64))
    seen_all = max(totals[-1].item(), 1.0)
    metrics = {k: round(totals[i].item() / seen_all, 6) for i, k in enumerate(keys)}
    metrics["accuracy"] = round(totals[-2].item() / seen_all, 6)
    return metrics


def _format_row(row: dict[str, Any], total: int) -> str:
    head = f"[{row['step'] + 1}/{total}] "
    if row["kind"] == "push":
        return head + f"push: mean distance of the pushed prototypes {row['mean_push_distance']:.4f}"
    parts = [f"epoch {row['epoch']} {row['phase']}", f"loss {row['loss']:.4f}", f"acc {row['accuracy']:.3f}"]
    if "val_accuracy" in row:
        parts.append(f"val acc {row['val_accuracy']:.3f}")
    return head + ", ".join(parts) + f" ({row['seconds']:.1f}s)"


def _write_metrics(history: list[dict[str, Any]], out: Path) -> None:
    """Rewrite ``metrics.jsonl`` and ``metrics.csv`` from the checkpointed history (consistent on resume)."""
    (out / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in history))
    columns = list(dict.fromkeys(key for row in history for key in row))
    buffer = io.StringIO()
    csv_writer = csv.DictWriter(buffer, fieldnames=columns)
    csv_writer.writeheader()
    csv_writer.writerows(history)
    (out / "metrics.csv").write_text(buffer.getvalue())


def _tensorboard(out: Path):
    """A TensorBoard writer when tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tensorboard"))
