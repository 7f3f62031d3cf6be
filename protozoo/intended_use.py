"""What a model may be used for, in one line: the banner on every picture and report of it.

:func:`intended_use` reads, first found wins:

1. ``model.pretrained_cfg.extra["intended_use"]``: a line set by whoever trained the model.
2. The model card (``README.md`` of a zoo model's ``weights/<arch.tag>/`` folder, or beside
   ``pretrained_cfg.file``): the first paragraph of its ``## Intended use`` section, else its
   sentence saying *not a clinical model* / *not for clinical use*. (A model loaded from a folder of
   one's own carries its intended use in ``extra["intended_use"]``, saved in its ``config.json``.)
3. ``pretrained_cfg.description`` when it says *not for clinical use*.
4. The training data recorded by ``prepare_run`` (``extra["train_data"]["spec"]``): a built-in
   ``synthetic-*`` data set gives "Trained on synthetic data (<spec>) only; not for clinical use."

The training data recorded by ``prepare_run`` is named after the line found in 1-3 ("Trained on:
synthetic-mammo."). None when nothing is known (a model a user built on own data): the pictures
carry no banner then.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

__all__ = ["INTENDED_USE_KEY", "intended_use"]

INTENDED_USE_KEY = "intended_use"  # model.pretrained_cfg.extra[INTENDED_USE_KEY]
CARD_NAME = "README.md"
_NOT_CLINICAL = re.compile(r"not (?:a clinical model|for clinical use)", re.IGNORECASE)


def intended_use(model: Any) -> str | None:
    """The model's intended-use line (see the module docstring), or None."""
    cfg = model.pretrained_cfg
    spec = str((cfg.extra.get("train_data") or {}).get("spec") or "")
    line = _declared(cfg)
    if line is None:
        return (
            f"Trained on synthetic data ({spec}) only; not for clinical use." if spec.startswith("synthetic") else None
        )
    return f"{line.rstrip().rstrip('.')}. Trained on: {spec}." if spec and spec not in line else line


def _declared(cfg: Any) -> str | None:
    """The line of rules 1-3: recorded, from the card, or the description's."""
    recorded = cfg.extra.get(INTENDED_USE_KEY)
    if recorded:
        return str(recorded).strip()
    card = _card_text(cfg)
    line = _card_line(card) if card else None
    if line:
        return line
    if cfg.description and _NOT_CLINICAL.search(cfg.description):
        return cfg.description.strip()
    return None


def _card_text(cfg: Any) -> str | None:
    """The model card's text: beside a zoo model's weights, or in the folder it was loaded from."""
    folders = []
    if cfg.weights_dir:
        from protozoo.hub import weights_root

        folders.append(weights_root() / cfg.weights_dir)
    if cfg.file:
        path = Path(cfg.file)
        folders.append(path if path.is_dir() else path.parent)
    for folder in folders:
        card = folder / CARD_NAME
        if card.is_file():
            return card.read_text(encoding="utf-8", errors="replace")
    return None


def _card_line(card: str) -> str | None:
    """The first paragraph of ``## Intended use``, else the sentence that says the model is not clinical."""
    body = re.sub(r"\A---\n.*?\n---\n", "", card, flags=re.DOTALL)  # YAML metadata of a Hub card
    section = re.search(
        r"^##+\s*intended use\s*\n+(.+?)(?:\n\s*\n|\n#|\Z)", body, re.IGNORECASE | re.MULTILINE | re.DOTALL
    )
    if section:
        return _plain(section.group(1))
    for paragraph in re.split(r"\n\s*\n", body):
        if _NOT_CLINICAL.search(paragraph) and not paragraph.lstrip().startswith(("|", "#", "```")):
            sentences = re.split(r"(?<=[.!?])\s+", _plain(paragraph))
            hits = [s for s in sentences if _NOT_CLINICAL.search(s)]
            return " ".join(hits)
    return None


def _plain(markdown: str) -> str:
    """Markdown emphasis, code and links stripped; whitespace on one line."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
    text = re.sub(r"[*_`]+", "", text)
    return " ".join(text.split())
