"""Training checkpoints: one safetensors file, written atomically, nothing pickled.

Tensors (model, optimizer moments, torch RNG) are safetensors entries; everything else (the plan
position, optimizer hyper-parameters, scheduler, Python/NumPy RNG, push provenance, metrics) is
JSON in the file's metadata. A killed run loses at most the step it was in.
"""

from __future__ import annotations

import json
import os
import random
import socket
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from torch import Tensor

from protozoo.serialization import WeightFileError, write_state_dict

CHECKPOINT_NAME = "checkpoint.safetensors"
LOCK_NAME = ".protozoo-train.lock"


class RunLockedError(RuntimeError):
    """Another live process trains into the same run folder."""


class RunDefinitionError(ValueError):
    """``resume`` was asked of a checkpoint that belongs to another run (model, data or recipe)."""


class RunLock:
    """An exclusive lock on a run folder, held while one ``fit`` writes into it.

    ``flock`` on ``LOCK_NAME`` in the folder: the kernel releases it when the process dies (even by
    SIGKILL), so a lock is never stale; the file keeps the holder's pid and host so that a refused
    run can name it, and a file left by a killed run is reported when the next run takes it over.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        self.took_over: str | None = None  # the holder a killed run left in the file, if any

    def acquire(self) -> RunLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # not POSIX (Windows): no lock; runs into one folder are the user's to keep apart
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise RunLockedError(
                    f"run folder {str(self.folder)!r} is in use by {holder}; wait for that run to end, or "
                    "choose another output folder (two runs into one folder would interleave their checkpoints)"
                ) from None
            try:  # the holder before us may have unlinked the file as we opened it: lock the file at the path
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        left = os.pread(fd, 200, 0).decode(errors="replace").strip()
        self.took_over = left or None
        me = f"process {os.getpid()} on {socket.gethostname()}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def read_checkpoint_state(path: Path) -> dict[str, Any]:
    """The JSON ``state`` a checkpoint holds (plan position, history, run definition), without its tensors."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return json.loads(handle.metadata()["protozoo"])["state"]
    except Exception as err:  # safetensors raises several types for a damaged file
        raise WeightFileError(f"checkpoint {str(path)!r} is unreadable ({err}); delete it to restart the run") from err


def check_run_definition(saved: dict[str, Any] | None, current: dict[str, Any], folder: Path) -> None:
    """Refuse to resume a run with another definition than the one its checkpoint stored.

    Raises:
        RunDefinitionError: Saying what differs (another model first: its weights would not fit).
    """
    if saved is None:  # checkpoints from before run definitions were stored
        return
    if saved.get("model") != current.get("model"):
        was, now = saved.get("model") or {}, current.get("model") or {}
        args_was, args_now = was.get("model_args", {}), now.get("model_args", {})
        changed = sorted(k for k in set(args_was) | set(args_now) if args_was.get(k) != args_now.get(k))
        raise RunDefinitionError(
            f"the checkpoint in {str(folder)!r} belongs to another model ({was.get('architecture')}; "
            f"this run builds {now.get('architecture')}"
            + (
                f"; differing arguments: {', '.join(f'{k}: {args_was.get(k)!r} -> {args_now.get(k)!r}' for k in changed)}"
                if changed
                else ""
            )
            + "); resume with the model the run started with, or choose another output folder"
        )
    diffs = []
    for key in sorted(set(saved) | set(current)):
        if key == "model" or saved.get(key) == current.get(key):
            continue
        was, now = saved.get(key), current.get(key)
        if isinstance(was, dict) and isinstance(now, dict):
            for field in sorted(set(was) | set(now)):
                if was.get(field) != now.get(field):
                    diffs.append(f"{key}.{field}: {was.get(field)!r} -> {now.get(field)!r}")
        else:
            diffs.append(f"{key}: {was!r} -> {now!r}")
    if diffs:
        raise RunDefinitionError(
            f"--resume: the run in {str(folder)!r} was started with another definition; differs (saved -> now): "
            + "; ".join(diffs)
            + ". Resume with the same model, data, options, image size and recipe, or choose another output folder"
        )


def flatten_optimizer(name: str, state_dict: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (keyed ``optim/name/param/key``) and JSON."""
    tensors, scalars = {}, {}
    for param, entries in state_dict["state"].items():
        for key, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"optim/{name}/{param}/{key}"] = value
            else:
                scalars[f"{param}/{key}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer(name: str, tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    prefix = f"optim/{name}/"
    for key, value in tensors.items():
        if key.startswith(prefix):
            param, entry = key[len(prefix) :].split("/", 1)
            state.setdefault(int(param), {})[entry] = value
    for key, value in meta["scalars"].items():
        param, entry = key.split("/", 1)
        state.setdefault(int(param), {})[entry] = value
    groups = [
        g | {"betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]
    ]  # JSON made it a list
    return {"state": state, "param_groups": groups}


def rng_state() -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Every RNG the training loop draws from."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    tensors = {"rng/torch": torch.get_rng_state(), "rng/numpy": torch.from_numpy(keys.astype(np.int64))}
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(cached)], "python": [version, list(py_state), gauss]}
    return tensors, meta


def set_rng_state(tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng/torch"])
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["rng/numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, py_state, gauss = meta["python"]
    random.setstate((version, tuple(py_state), gauss))


def save_checkpoint(path: Path, *, model, optimizers: dict, schedulers: dict, state: dict[str, Any]) -> None:
    """Write model, optimizers, schedulers, RNGs and ``state`` (JSON-able) to one file atomically."""
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    optim_meta = {}
    for name, optimizer in optimizers.items():
        t, optim_meta[name] = flatten_optimizer(name, optimizer.state_dict())
        tensors.update(t)
    rng_tensors, rng_meta = rng_state()
    tensors.update(rng_tensors)
    meta = {
        "state": state,
        "optimizers": optim_meta,
        "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
        "rng": rng_meta,
        "provenance": model.provenance,
    }
    write_state_dict(tensors, path, metadata={"protozoo": json.dumps(meta)})


def load_checkpoint(path: Path, *, model, optimizers: dict, schedulers: dict) -> dict[str, Any]:
    """Restore everything :func:`save_checkpoint` wrote; returns the saved ``state``."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads(handle.metadata()["protozoo"])
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as err:  # safetensors raises several types for a damaged file
        raise WeightFileError(f"checkpoint {str(path)!r} is unreadable ({err}); delete it to restart the run") from err
    from protozoo.serialization import load_strict

    load_strict(
        model,
        {k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")},
        f"checkpoint {str(path)!r}",
    )
    model.provenance = meta["provenance"]
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(unflatten_optimizer(name, tensors, meta["optimizers"][name]))
    for name, scheduler in schedulers.items():
        scheduler.load_state_dict(meta["schedulers"][name])
    set_rng_state(tensors, meta["rng"])
    return meta["state"]
