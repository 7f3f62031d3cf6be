"""Training checkpoints: one safetensors file, written atomically, nothing pickled.

Tensors (model, optimizer moments, torch RNG) are safetensors entries; everything else (the plan
position, optimizer hyper-parameters, scheduler, Python/NumPy RNG, push provenance, metrics) is
JSON in the file's metadata. A killed run loses at most the step it was in.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from torch import Tensor

from protozoo.serialization import WeightFileError, write_state_dict

CHECKPOINT_NAME = "checkpoint.safetensors"


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
            param, entry = key[len(prefix):].split("/", 1)
            state.setdefault(int(param), {})[entry] = value
    for key, value in meta["scalars"].items():
        param, entry = key.split("/", 1)
        state.setdefault(int(param), {})[entry] = value
    groups = [g | {"betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]]  # JSON made it a list
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
    model.load_state_dict({k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")})
    model.provenance = meta["provenance"]
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(unflatten_optimizer(name, tensors, meta["optimizers"][name]))
    for name, scheduler in schedulers.items():
        scheduler.load_state_dict(meta["schedulers"][name])
    set_rng_state(tensors, meta["rng"])
    return meta["state"]
