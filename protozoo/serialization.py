"""Reading and writing files: safetensors for the weights we write, ``weights_only`` for pickles,
and the one atomic-write helper (:func:`atomic_path`) every file a user keeps is written through.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn


class WeightFileError(ValueError):
    """A weight file is unreadable, or does not fit the model."""


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """Read a ``.safetensors`` file, or a pickled checkpoint with ``weights_only=True``.

    Raises:
        WeightFileError: Naming the file when it is truncated, corrupt or not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weight file {str(path)!r} does not exist")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, RuntimeError, OSError, EOFError, ValueError) as err:
        raise WeightFileError(
            f"weight file {str(path)!r} is truncated or corrupt ({err}); re-save or re-download it"
        ) from err
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    if not isinstance(checkpoint, dict) or not all(isinstance(v, Tensor) for v in checkpoint.values()):
        raise WeightFileError(f"weight file {str(path)!r} does not hold a state dict of tensors")
    return checkpoint


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; it replaces ``path`` in one rename on success.

    Readers (and a run killed mid-write) see the old file or the new one, never half of one. The
    temporary file is hidden (``.name.<random>.tmp<suffix>``, same folder, so the rename stays on
    one file system; same suffix, so writers that read the format from it still can) and removed
    when the write fails. The new file gets the mode a plain ``open(path, "w")`` would give it,
    ``0o666`` less the user's umask (some writers, safetensors among them, create their file
    ``0o600``: colleagues could not read the weights beside a readable ``config.json``).

    Example::

        with atomic_path(out / "gallery.png") as tmp:
            fig.savefig(tmp)
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except OSError as err:
        if err.errno == errno.ENOSPC:  # name the file we were writing, not the hidden temporary one
            raise OSError(errno.ENOSPC, f"no space left on device writing {path.name}", str(path)) from err
        raise
    except SafetensorError as err:  # safetensors reports a full disk as its own error
        if "code: 28" in str(err) or "StorageFull" in str(err) or "No space left" in str(err):
            raise OSError(errno.ENOSPC, f"no space left on device writing {path.name}", str(path)) from err
        raise
    finally:
        tmp.unlink(missing_ok=True)


def current_umask() -> int:
    """The process's umask (read from ``/proc`` where it can be, else set and restored at once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(text: str, path: str | os.PathLike, *, encoding: str = "utf-8") -> None:
    """Write a text file atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)


def write_state_dict(state_dict: dict[str, Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file atomically (:func:`atomic_path`)."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def write_json(data: Any, path: Path) -> None:
    """Write JSON atomically, indented for people to read."""
    write_text(json.dumps(data, indent=2) + "\n", path)


def load_strict(model: nn.Module, state_dict: dict[str, Tensor], source: str) -> None:
    """Load a state dict with every key and shape checked.

    Raises:
        WeightFileError: Listing the missing, unexpected and shape-mismatched keys, so a file of
            another architecture is recognisable at once.
    """
    from protozoo.backbones import pruned_state_keys

    # Files saved before backbones stopped at their stage hold the layers past it: not an error.
    pruned = pruned_state_keys(model)
    state_dict = {k: v for k, v in state_dict.items() if k not in pruned}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and state_dict[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                parts.append(f"{title}: {shown}")
        raise WeightFileError(
            f"weights in {source} do not fit this model (another architecture or config?); " + "; ".join(parts)
        )
    model.load_state_dict(state_dict, strict=True)
